"""One self-describing checkpoint format.

A checkpoint is a dict of plain values and tensors (config, tokenizer state, model specs and weights, optimizer
states, RNG states, step). This module guarantees:

* **Atomic writes.** :func:`save_checkpoint` writes a temporary file ``.<name>.<random>.tmp`` in the target
  folder, fsyncs it, renames it over the target and fsyncs the folder: a crash or a kill at any point leaves
  either the previous checkpoint or the new one, whole. A killed writer may leave its temporary file behind;
  :func:`remove_stale_temporaries` removes such leftovers (call it when a stage starts).
* **Ordinary permissions.** The temporary file is created with mode ``0o666`` minus the process umask, like any
  file opened with ``open(path, "w")`` (``0o644`` under the usual umask), never the ``0o600`` of
  ``tempfile.mkstemp``. The umask is read by the kernel, never changed.
* **Failed writes lose nothing.** A failed write (disk full, read-only or missing folder, a file where a folder
  should be) raises :class:`CheckpointError` with one line naming the path and the reason, removes the
  temporary file and leaves the previous checkpoint byte-identical. :func:`check_writable` lets a stage test its
  output folder before any long computation.
* **Loading never runs code from the file.** :func:`load_checkpoint` reads with ``torch.load(weights_only=True)``
  and tells apart a missing file, a damaged or foreign file, a file holding objects ``weights_only`` refuses, and
  a PyTorch file that is not a seqgan checkpoint.
* **Hostile or edited specs allocate nothing.** :func:`build_checked` builds a model from its spec on the
  ``meta`` device first and compares every tensor name and shape with the stored weights before building it for
  real, so a spec asking for enormous sizes is refused with one line before any memory is allocated.

:func:`save_numbered` keeps the last K checkpoints of a run as numbered files (``adversarial_0007.pt``) next to
the stable name (``adversarial.pt``, a hard link to the newest). :func:`check_compatible` refuses a checkpoint
whose tokenizer or model shape differs from what it is loaded into, naming every difference.
"""

from __future__ import annotations

import errno
import inspect
import os
import random
import re
import secrets
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

FORMAT_VERSION = 1

ModuleT = TypeVar("ModuleT", bound=nn.Module)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, cannot be written, or does not fit what it is loaded into.

    The message is always one line that names the file.
    """


# ---------------------------------------------------------------------------------------------------------
# writing


def _reason(e: OSError) -> str:
    """``"No space left on device (errno 28)"`` for an ``OSError`` (its text when it has no errno)."""
    if e.errno is not None:
        return f"{e.strerror or os.strerror(e.errno)} (errno {e.errno})"
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _os_error_in(e: BaseException, outer: BaseException | None) -> OSError | None:
    """The first ``OSError`` in ``e`` and its causes / contexts (torch reports a failed write to a Python file
    object as a ``RuntimeError`` raised while handling the ``OSError``), not looking past ``outer`` (the
    exception the caller was already handling, which has nothing to do with this write)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [e]
    while todo:
        cur = todo.pop(0)
        if cur is None or cur is outer or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, OSError):
            return cur
        todo += [cur.__cause__, cur.__context__]
    return None


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _not_a_folder(folder: Path) -> Path | None:
    """The first existing component of ``folder`` (itself included) that is not a folder, if any."""
    for p in [*reversed(folder.parents), folder]:
        if p.exists() and not p.is_dir():
            return p
    return None


def _make_folder(folder: Path) -> str | None:
    """Creates ``folder`` (and its parents) if missing; returns why that failed, or None."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return None
    except OSError as e:
        blocker = _not_a_folder(folder)
        if blocker is not None:
            return f"{blocker} is a file, not a folder (errno {errno.ENOTDIR})"
        return f"the folder {folder} cannot be created: {_reason(e)}"


def _create_temporary(folder: Path, name: str) -> tuple[int, Path]:
    """Creates ``folder/.<name>.<random>.tmp`` exclusively with mode ``0o666`` (minus the umask).

    Returns:
        The open file descriptor (write-only) and the file's path.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = folder / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary file name", str(folder))


def _sync_folder(folder: Path, path: Path) -> None:
    """fsyncs ``folder`` so that the rename of ``path`` survives a power loss (skipped where folders cannot be
    synced)."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        if e.errno in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EISDIR, errno.EACCES):
            return  # no directory fsync on this platform / file system
        raise CheckpointError(
            f"wrote {path} but cannot sync its folder: {_reason(e)}; the new checkpoint may not survive a crash "
            "of the machine"
        ) from e


def _write_atomically(payload: dict, path: Path, kept: str) -> None:
    """Writes ``payload`` to ``path`` through a temporary file; on an ``OSError`` removes the temporary file and
    raises ``CheckpointError("cannot write <path>: <reason>; <kept>")``."""
    outer = sys.exc_info()[1]
    folder = path.parent
    problem = _make_folder(folder)
    if problem is not None:
        raise CheckpointError(f"cannot write {path}: {problem}; {kept}")
    tmp: Path | None = None
    try:
        fd, tmp = _create_temporary(folder, path.name)
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except BaseException as e:
        if tmp is not None:
            _unlink_quietly(tmp)
        cause = _os_error_in(e, outer) if isinstance(e, Exception) else None
        if cause is None:
            raise  # an interrupt, or a payload that cannot be serialized: not a write failure
        raise CheckpointError(f"cannot write {path}: {_reason(cause)}; {kept}") from e
    _sync_folder(folder, path)


def _kept(path: Path, name: str | None = None) -> str:
    """The end of a write-failure message: what is left as it was."""
    if not path.is_file():
        return "no checkpoint was written"
    return (
        f"the previous checkpoint, {name}, is left as it was"
        if name
        else "the previous checkpoint is left as it was"
    )


def save_checkpoint(payload: dict, path: str | Path) -> Path:
    """Writes ``payload`` (plus ``format_version``) to ``path`` atomically.

    The folder is created if missing. The data goes to ``.<name>.<random>.tmp`` in the same folder (mode
    ``0o666`` minus the umask), is fsynced, renamed over ``path``, and the folder is fsynced: a crash mid-write
    leaves any previous file intact.

    Args:
        payload: plain values and tensors only (what ``torch.load(weights_only=True)`` reads back).
        path: the checkpoint file.
    Returns:
        ``path`` as a ``Path``.
    Raises:
        CheckpointError: the file cannot be written (disk full, read-only or uncreatable folder, a file where a
            folder should be): one line, ``cannot write <path>: <reason> (errno N); the previous checkpoint is
            left as it was`` (``no checkpoint was written`` when there was none). The temporary file is removed
            and a previous checkpoint at ``path`` is left byte-identical.
    """
    path = Path(path)
    kept = _kept(path)
    _write_atomically({"format_version": FORMAT_VERSION, **payload}, path, kept)
    return path


def save_numbered(payload: dict, path: str | Path, number: int, keep_last: int = 0) -> Path:
    """Writes ``payload`` to ``path`` atomically and, with ``keep_last > 0``, also as ``<stem>_<number>.pt``,
    keeping only the ``keep_last`` highest-numbered of those files.

    The numbered file is written first (atomically) and ``path`` then becomes a hard link to it (through
    ``.<name>.<pid>.link``, atomically renamed; a copy where the file system has no hard links), so both names
    always hold a complete checkpoint. Numbered files above ``number`` (left by an earlier run that went further)
    are removed too, but only once both names hold the new checkpoint.

    Args:
        payload: plain values and tensors.
        path: the stable name (``adversarial.pt``).
        number: the number of this checkpoint (epoch, step).
        keep_last: how many numbered files to keep; 0 writes only ``path``.
    Returns:
        ``path`` as a ``Path``.
    Raises:
        CheckpointError: a write failed (one line naming the file and the reason). ``path`` and the older
            numbered files are then left as they were (a complete new numbered file may remain when only the
            stable name could not be written).
    """
    path = Path(path)
    if keep_last <= 0:
        return save_checkpoint(payload, path)
    numbered = path.with_name(f"{path.stem}_{number:04d}{path.suffix}")
    _write_atomically({"format_version": FORMAT_VERSION, **payload}, numbered, _kept(path, path.name))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.link")
    try:
        tmp.unlink(missing_ok=True)
        os.link(numbered, tmp)
        os.replace(tmp, path)
    except OSError:
        _unlink_quietly(tmp)
        save_checkpoint(payload, path)
    for n, old in numbered_checkpoints(path):
        if n > number or n <= number - keep_last:
            old.unlink(missing_ok=True)
    return path


def numbered_checkpoints(path: str | Path) -> list[tuple[int, Path]]:
    """The numbered checkpoints :func:`save_numbered` kept next to ``path``.

    Args:
        path: the stable name.
    Returns:
        ``(number, file)`` pairs, by number (empty when the folder does not exist).
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = re.compile(rf"{re.escape(path.stem)}_(\d+){re.escape(path.suffix)}")
    found = [(int(m.group(1)), p) for p in path.parent.iterdir() if (m := pattern.fullmatch(p.name))]
    return sorted(found)


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Removes what killed writers of ``path`` left behind: ``.<name>.<random>.tmp`` (from
    :func:`save_checkpoint`) and ``.<name>.<pid>.link`` (from :func:`save_numbered`), for ``path`` and its
    numbered siblings ``<stem>_NNNN<suffix>``, in ``path``'s folder. Nothing else is touched.

    Call it before anything writes ``path`` (the run stages clear their own leftovers the same way when they
    claim their folder): a temporary file of a writer that is still running would be removed too.

    Args:
        path: the stable checkpoint name (``runs/a/pretrain.pt``).
    Returns:
        The removed files, sorted (empty when the folder does not exist).
    Raises:
        CheckpointError: a leftover cannot be removed (one line).
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        return []
    pattern = re.compile(
        rf"\.{re.escape(path.stem)}(?:_\d+)?{re.escape(path.suffix)}\.(?:[A-Za-z0-9_]+\.tmp|\d+\.link)"
    )
    removed = []
    for p in sorted(folder.iterdir()):
        if not pattern.fullmatch(p.name) or p.is_dir():
            continue
        try:
            p.unlink()
        except FileNotFoundError:
            continue
        except OSError as e:
            raise CheckpointError(f"cannot remove the leftover temporary file {p}: {_reason(e)}") from e
        removed.append(p)
    return removed


def check_writable(folder: str | Path) -> None:
    """Checks, before any long computation, that checkpoints can be written into ``folder``.

    Creates the folder (and its parents) if missing, then creates, writes, fsyncs and removes a probe file
    ``.seqgan-write-probe.<random>.tmp``. Nothing is left behind but the created folder.

    Args:
        folder: the output folder.
    Raises:
        CheckpointError: one line, ``cannot write to <folder>: <reason>``.
    """
    folder = Path(folder)
    problem = _make_folder(folder)
    if problem is not None:
        raise CheckpointError(f"cannot write to {folder}: {problem}")
    tmp: Path | None = None
    try:
        fd, tmp = _create_temporary(folder, "seqgan-write-probe")
        with os.fdopen(fd, "wb") as f:
            f.write(b"seqgan")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise CheckpointError(f"cannot write to {folder}: {_reason(e)}") from e
    finally:
        if tmp is not None:
            _unlink_quietly(tmp)


# ---------------------------------------------------------------------------------------------------------
# compatibility of a checkpoint with the run it is loaded into


MODEL_KEYS = (
    "data.max_len",
    "data.lowercase",
    "data.synthetic",
    "tokenizer.",
    "generator.",
    "discriminator.",
)
"""Config keys (or section prefixes) that fix the vocabulary and the tensor shapes of a run."""
IGNORED_KEYS = (
    "generator.dropout",
    "discriminator.dropout",
    "generator.pretrained_path",
    "generator.init_std",
    "discriminator.batch_by_length",
)
"""Keys under :data:`MODEL_KEYS` that change no shape."""


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def model_differences(saved_config: dict, config: dict, against: str = "config") -> list[str]:
    """The model / tokenizer config keys that differ between a checkpoint's config and ``config``.

    Keys missing on one side (e.g. from an older version) and keys that change no shape (:data:`IGNORED_KEYS`)
    are not compared.

    Args:
        saved_config: the checkpoint's config (nested dict).
        config: the config it is compared with (nested dict).
        against: how ``config`` is named in the messages.
    Returns:
        ``"generator.hidden_dim 32 in checkpoint vs 64 in config"`` for every differing key, sorted by key.
    """
    a, b = _flat(saved_config), _flat(config)
    diffs = []
    for key in sorted(set(a) & set(b)):
        if key in IGNORED_KEYS or not any(
            key.startswith(k) if k.endswith(".") else key == k for k in MODEL_KEYS
        ):
            continue
        if a[key] != b[key]:
            diffs.append(f"{key} {a[key]!r} in checkpoint vs {b[key]!r} in {against}")
    return diffs


def tokenizer_differences(saved: dict, current: dict, against: str = "this run") -> list[str]:
    """What differs between two tokenizer states (kind, vocabulary size, then the vocabulary itself).

    Args:
        saved: the checkpoint's tokenizer state.
        current: the tokenizer state it is compared with.
        against: how ``current`` is named in the messages.
    Returns:
        At most one message (the first kind of difference found); empty when they agree.
    """
    from seqgan.data.tokenizers import tokenizer_from_state

    if saved.get("kind") != current.get("kind"):
        return [f"tokenizer kind {saved.get('kind')!r} in checkpoint vs {current.get('kind')!r} in {against}"]
    a, b = tokenizer_from_state(saved), tokenizer_from_state(current)
    if a.vocab_size != b.vocab_size:
        return [f"vocabulary size {a.vocab_size} in checkpoint vs {b.vocab_size} in {against}"]
    words_a = [a.decode([i]) for i in range(a.vocab_size)] if a.vocab_size <= 200_000 else []
    words_b = [b.decode([i]) for i in range(b.vocab_size)] if b.vocab_size <= 200_000 else []
    changed = [i for i, (x, y) in enumerate(zip(words_a, words_b, strict=True)) if x != y]
    if changed:
        i = changed[0]
        return [
            f"vocabulary differs at {len(changed)} ids (id {i}: {words_a[i]!r} in checkpoint vs {words_b[i]!r} in "
            f"{against})"
        ]
    return []


def check_compatible(
    path: str | Path,
    saved_config: dict,
    config: dict,
    saved_tokenizer: dict | None = None,
    tokenizer: dict | None = None,
    against: str = "config",
) -> None:
    """Refuses a checkpoint whose vocabulary or model shape differs from the run it is loaded into.

    Args:
        path: the checkpoint file, for the message.
        saved_config: the checkpoint's config.
        config: the run's config.
        saved_tokenizer: the checkpoint's tokenizer state (tokenizers are compared only when both are given).
        tokenizer: the run's tokenizer state.
        against: how the run is named in the message.
    Raises:
        CheckpointError: ``<path> does not fit this run (different tokenizer or model shape): <differences>``.
    """
    diffs = model_differences(saved_config, config, against)
    if saved_tokenizer is not None and tokenizer is not None:
        diffs += tokenizer_differences(saved_tokenizer, tokenizer, against)
    if diffs:
        raise CheckpointError(
            f"{path} does not fit this run (different tokenizer or model shape): " + "; ".join(diffs)
        )


# ---------------------------------------------------------------------------------------------------------
# reading


def _refused_global(e: Exception) -> tuple[bool, str | None]:
    """Whether ``torch.load(weights_only=True)`` refused the file's pickle payload, and the global it named."""
    msg = str(e)
    name = re.search(r"GLOBAL ([\w.]+)", msg)
    refused = "Weights only load failed" in msg and (
        name is not None
        or re.search(r"unsupported (?:global|class)|not an allowed global|blocked", msg, re.I)
    )
    return bool(refused), name.group(1) if name else None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Reads a checkpoint with ``torch.load(weights_only=True)``: no code from the file ever runs.

    Args:
        path: the checkpoint file.
        map_location: where the tensors go.
    Returns:
        The payload dict (with ``format_version``).
    Raises:
        CheckpointError: one line for each way a file can be unusable:
            ``checkpoint not found: <path>``;
            ``cannot read checkpoint <path>: it is damaged (cut short?) or not a PyTorch checkpoint (<torch's
            first sentence>)``;
            ``<path> contains objects that are not allowed in a checkpoint (<module.Name>); it was not loaded``;
            ``<path> is not a seqgan checkpoint (no format_version)``;
            ``<path> has format <n>; this seqgan reads <= 1``.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} is a folder, not a file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, wrong format, refused globals, I/O errors
        refused, name = _refused_global(e)
        if refused:
            named = f" ({name})" if name else ""
            raise CheckpointError(
                f"{path} contains objects that are not allowed in a checkpoint{named}; it was not loaded"
            ) from e
        if isinstance(e, OSError) and e.errno is not None:
            raise CheckpointError(f"cannot read checkpoint {path}: {_reason(e)}") from e
        first = (str(e).strip().splitlines() or [""])[0].split(". ")[0][:200]  # torch's first sentence
        raise CheckpointError(
            f"cannot read checkpoint {path}: it is damaged (cut short?) or not a PyTorch checkpoint "
            f"({type(e).__name__}: {first})"
        ) from e
    if not isinstance(ckpt, dict):
        raise CheckpointError(
            f"{path} is not a seqgan checkpoint (it holds a {type(ckpt).__name__}, not a dict)"
        )
    if "format_version" not in ckpt:
        raise CheckpointError(f"{path} is not a seqgan checkpoint (no format_version)")
    version = ckpt["format_version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path} is not a seqgan checkpoint (format_version {repr(version)[:40]})")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format {version}; this seqgan reads <= {FORMAT_VERSION}")
    return ckpt


# ---------------------------------------------------------------------------------------------------------
# rebuilding models from a checkpoint without trusting its spec

_LAYER_COUNT_KEYS = frozenset(
    {
        "num_layers",
        "n_layer",
        "n_layers",
        "num_hidden_layers",
        "num_encoder_layers",
        "num_decoder_layers",
        "encoder_layers",
        "decoder_layers",
    }
)
"""Spec keys (at any depth) that count layers: every layer stores at least one tensor."""
_LAYER_LIST_KEYS = frozenset({"filter_sizes", "num_filters"})
"""Spec keys whose list length counts layers (one convolution, weight and bias, per entry)."""


def _names(keys: list[str], most: int = 3) -> str:
    shown = ", ".join(repr(k) for k in keys[:most])
    return shown + (f" and {len(keys) - most} more" if len(keys) > most else "")


def _first_line(e: BaseException) -> str:
    text = (str(e).strip().splitlines() or [""])[0][:300]
    return text or type(e).__name__


def _too_many_layers(spec: Mapping, n_tensors: int) -> str | None:
    """Why ``spec`` asks for more layers than ``n_tensors`` stored tensors can hold, if it does: building that
    many (meta) modules alone would take unbounded time and memory."""
    todo: list[Mapping] = [spec]
    while todo:
        cur = todo.pop()
        for key, value in cur.items():
            if isinstance(value, Mapping):
                todo.append(value)
            elif key in _LAYER_COUNT_KEYS and isinstance(value, int) and not isinstance(value, bool):
                if value > n_tensors:
                    return f"{key}={value} but the file holds only {n_tensors} tensors"
            elif key in _LAYER_LIST_KEYS and isinstance(value, list | tuple) and len(value) > n_tensors:
                return f"{key} lists {len(value)} layers but the file holds only {n_tensors} tensors"
    return None


def _spec_problem(e: Exception) -> str:
    """What ``from_spec`` rejected, as the end of ``"<what> spec ..."``."""
    msg = _first_line(e)
    if isinstance(e, KeyError):
        return f"is missing {e.args[0]!r}" if e.args else "is missing a key"
    if isinstance(e, TypeError):
        if m := re.search(r"unexpected keyword argument '(\w+)'", msg):
            return f"has an unexpected key {m.group(1)!r}"
        if m := re.search(r"missing \d+ required (?:positional |keyword-only )?arguments?: (.*)", msg):
            return "is missing " + ", ".join(re.findall(r"'\w+'", m.group(1)))
    if isinstance(e, RuntimeError) and "overflow" in msg.lower():
        return f"asks for a tensor too large to exist ({msg})"
    return f"is invalid: {msg}"


def _unexpected_keys(spec: Mapping, model: nn.Module) -> list[str]:
    """Top-level spec keys that neither the rebuilt model's own spec nor its class's ``__init__`` knows (a
    ``from_spec`` that reads only the keys it needs would otherwise ignore them silently)."""
    try:
        known = set(model.spec()) if callable(getattr(model, "spec", None)) else None
        params = inspect.signature(type(model).__init__).parameters.values()
    except Exception:  # a model without a usable spec() or signature: nothing to compare with
        return []
    if known is None or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return []
    known |= {p.name for p in params}
    return [k for k in spec if k not in known]


def build_checked(
    from_spec: Callable[[dict], ModuleT],
    spec: Any,
    state_dict: Any,
    what: str,
    source: str | Path,
) -> ModuleT:
    """Rebuilds a model from a checkpoint's ``spec`` and weights without trusting either.

    1. ``from_spec(spec)`` runs under ``with torch.device("meta")``, so no real memory is allocated whatever
       sizes the spec asks for; its ``TypeError`` / ``KeyError`` / ``ValueError`` (and any other error) become
       one-line :class:`CheckpointError` s. A layer count (``num_layers``, ``n_layer``, ...) above the number of
       stored tensors is refused before that, since building that many modules, even on ``meta``, is unbounded
       work.
    2. The meta model's ``state_dict()`` names and shapes are compared with ``state_dict``: missing tensors,
       unexpected tensors and shape mismatches are refused, naming the first few.
    3. Only then the model is built for real and the weights are loaded with ``strict=True``.

    Every model kind of seqgan builds on the ``meta`` device (LSTM, CNN with and without spectral norm, RNN
    discriminators, the Hugging Face transformer generator, both conditional generators, the pair
    discriminator), so no parameter-count estimate is needed. Non-persistent buffers are not compared (none of
    these models has one whose size the spec sets independently of a stored tensor).

    Args:
        from_spec: the builder, e.g. ``LSTMGenerator.from_spec`` or ``generator_from_spec``.
        spec: the stored spec (a dict of plain values).
        state_dict: the stored weights (names -> tensors).
        what: what the model is, for messages (``"generator"``, ``"discriminator"``).
        source: the checkpoint file, for messages.
    Returns:
        The model with the stored weights, on the CPU (the default device), in training mode.
    Raises:
        CheckpointError: one line starting ``<source>: <what> ...``: ``spec has an unexpected key 'foo'``,
            ``spec is missing 'hidden_dim'``, ``spec is invalid: <message>``, ``spec asks for a tensor too large
            to exist (...)``, ``spec has n_layer=1000000 but the file holds only 12 tensors``,
            ``weights do not match its spec: missing 'proj.bias'; unexpected 'x'; 'lstm.weight_ih_l0' is
            (128, 16) in the file but (4000000, 16) by the spec``, ``weights are not a dict of tensors``.
    """
    head = f"{source}: {what}"
    if not isinstance(spec, Mapping):
        raise CheckpointError(f"{head} spec is not a dict (it is a {type(spec).__name__})")
    if not isinstance(state_dict, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()
    ):
        raise CheckpointError(f"{head} weights are not a dict of tensors")
    spec = dict(spec)
    if (problem := _too_many_layers(spec, len(state_dict))) is not None:
        raise CheckpointError(f"{head} spec has {problem}")
    try:
        with torch.device("meta"):
            meta = from_spec(spec)
    except Exception as e:
        raise CheckpointError(f"{head} spec {_spec_problem(e)}") from e
    if extra := _unexpected_keys(spec, meta):
        key = "key" if len(extra) == 1 else "keys"
        raise CheckpointError(f"{head} spec has an unexpected {key} {_names(extra)}")
    expected = {k: tuple(v.shape) for k, v in meta.state_dict().items()}
    del meta
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k!r} is {tuple(state_dict[k].shape)} in the file but {shape} by the spec"
        for k, shape in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected {_names(unexpected)}")
    if shapes:
        problems += shapes[:3] + ([f"{len(shapes) - 3} more shapes differ"] if len(shapes) > 3 else [])
    if problems:
        raise CheckpointError(f"{head} weights do not match its spec: " + "; ".join(problems))
    try:
        model = from_spec(spec)
    except Exception as e:
        raise CheckpointError(f"{head} spec {_spec_problem(e)}") from e
    try:
        model.load_state_dict(state_dict, strict=True)
    except Exception as e:
        raise CheckpointError(f"{head} weights cannot be loaded: {_first_line(e)}") from e
    return model


def rng_state() -> dict:
    """The global random states.

    Returns:
        Python, NumPy and torch (CPU and, where available, CUDA) RNG states as checkpoint-safe values
        (lists, numbers and tensors: ``weights_only`` loading reads them back).
    """
    py = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restores what :func:`rng_state` captured.

    Args:
        state: a :func:`rng_state` dict (the CUDA states are restored only where CUDA is available).
    """
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), int(n[2]), int(n[3]), float(n[4])))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def run_rng_state(data_rng: torch.Generator, sample_rng: torch.Generator) -> dict:
    """Every random stream of one process of a run.

    Args:
        data_rng: the generator of the data order.
        sample_rng: the generator of sampling.
    Returns:
        ``{"global": rng_state(), "data": ..., "sample": ...}`` (global: Python, NumPy, torch: dropout).
    """
    return {"global": rng_state(), "data": data_rng.get_state(), "sample": sample_rng.get_state()}


def set_run_rng_state(
    payload: dict, rank: int, world_size: int, data_rng: torch.Generator, sample_rng: torch.Generator
) -> None:
    """Restores this rank's streams from a checkpoint's ``rank_rng`` list (one entry per process).

    Args:
        payload: the checkpoint (``rank_rng``, or the older single-process ``rng`` / ``data_rng`` /
            ``sample_rng``).
        rank: this process's rank.
        world_size: the number of processes now.
        data_rng: the data-order generator to restore.
        sample_rng: the sampling generator to restore.
    Raises:
        CheckpointError: the checkpoint was written by a different number of processes.
    """
    states = payload.get("rank_rng")
    if states is None:  # written before per-rank states existed: one process
        states = [{"global": payload["rng"], "data": payload["data_rng"], "sample": payload["sample_rng"]}]
    if len(states) != world_size:
        raise CheckpointError(
            f"the checkpoint was written by {len(states)} process(es); resume with as many "
            f"(torchrun --nproc_per_node {len(states)}), not {world_size}, to continue the same random streams"
        )
    state = states[rank]
    set_rng_state(state["global"])
    data_rng.set_state(state["data"])
    sample_rng.set_state(state["sample"])


def drop_records_after(path: str | Path, key: str, last: int) -> None:
    """Removes the lines of a metrics.jsonl file whose ``key`` is above ``last`` (written after the checkpoint a
    run resumes from, so the resumed run's records replace them). Lines cut by a crash are dropped too.

    Args:
        path: the metrics file (nothing happens when it does not exist).
        key: the record field to compare (``"step"``, ``"epoch"``).
        last: the highest value to keep.
    """
    import json

    path = Path(path)
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut by the crash
            continue
        if not isinstance(record.get(key), int | float) or record[key] <= last:
            kept.append(line)
    path.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
