"""One self-describing checkpoint format.

A checkpoint is a dict of plain values and tensors (config, tokenizer state, model specs and weights, optimizer
states, RNG states, step), written atomically (temporary file in the same folder, fsync, rename) and read with
``torch.load(weights_only=True)``, so loading never executes code from the file.

:func:`save_numbered` keeps the last K checkpoints of a run as numbered files (``adversarial_0007.pt``) next to
the stable name (``adversarial.pt``, a hard link to the newest). :func:`check_compatible` refuses a checkpoint
whose tokenizer or model shape differs from what it is loaded into, naming every difference.
"""

from __future__ import annotations

import os
import random
import re
import tempfile
from pathlib import Path

import numpy as np
import torch

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or does not fit what it is loaded into."""


def save_checkpoint(payload: dict, path: str | Path) -> Path:
    """Writes ``payload`` to ``path`` atomically: a crash mid-write leaves any previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format_version": FORMAT_VERSION, **payload}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def save_numbered(payload: dict, path: str | Path, number: int, keep_last: int = 0) -> Path:
    """Writes ``payload`` to ``path`` atomically and, with ``keep_last > 0``, also as ``<stem>_<number>.pt``,
    keeping only the ``keep_last`` highest-numbered of those files.

    The numbered file is written first (atomically) and ``path`` then becomes a hard link to it (atomically
    replaced; a copy where the file system has no hard links), so both names always hold a complete
    checkpoint. Numbered files above ``number`` (left by an earlier run that went further) are removed too.
    """
    path = Path(path)
    if keep_last <= 0:
        return save_checkpoint(payload, path)
    numbered = path.with_name(f"{path.stem}_{number:04d}{path.suffix}")
    save_checkpoint(payload, numbered)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(numbered, tmp)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        save_checkpoint(payload, path)
    for n, old in numbered_checkpoints(path):
        if n > number or n <= number - keep_last:
            old.unlink(missing_ok=True)
    return path


def numbered_checkpoints(path: str | Path) -> list[tuple[int, Path]]:
    """``(number, file)`` of the numbered checkpoints :func:`save_numbered` kept next to ``path``, in order."""
    path = Path(path)
    pattern = re.compile(rf"{re.escape(path.stem)}_(\d+){re.escape(path.suffix)}")
    found = [(int(m.group(1)), p) for p in path.parent.iterdir() if (m := pattern.fullmatch(p.name))]
    return sorted(found)


MODEL_KEYS = (
    "data.max_len",
    "data.lowercase",
    "data.synthetic",
    "tokenizer.",
    "generator.",
    "discriminator.",
)
"""Config keys (or section prefixes) that fix the vocabulary and the tensor shapes of a run."""
IGNORED_KEYS = ("generator.dropout", "discriminator.dropout", "generator.pretrained_path")
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
    """``"generator.hidden_dim 32 in checkpoint vs 64 in config"`` for every model/tokenizer key that differs
    (keys missing on one side, e.g. from an older version, are not compared); ``against`` names ``config``."""
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
    """What differs between two tokenizer states (kind, vocabulary size, then the vocabulary itself)."""
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
    """Raises :class:`CheckpointError` naming every difference in vocabulary or model shape between a
    checkpoint (its config and tokenizer state) and the run it is loaded into (``config``, ``tokenizer``; named
    ``against`` in the message)."""
    diffs = model_differences(saved_config, config, against)
    if saved_tokenizer is not None and tokenizer is not None:
        diffs += tokenizer_differences(saved_tokenizer, tokenizer, against)
    if diffs:
        raise CheckpointError(
            f"{path} does not fit this run (different tokenizer or model shape): " + "; ".join(diffs)
        )


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Reads a checkpoint with ``weights_only=True``; clear errors for missing or damaged files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, wrong format, disallowed globals
        first = (str(e).strip().splitlines() or [""])[0].split(". ")[0][:200]  # torch's first sentence
        raise CheckpointError(
            f"cannot read checkpoint {path}: it is damaged (cut short?) or not a PyTorch checkpoint "
            f"({type(e).__name__}: {first})"
        ) from e
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise CheckpointError(f"{path} is not a seqgan checkpoint (no format_version)")
    if ckpt["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format {ckpt['format_version']}; this seqgan reads <= {FORMAT_VERSION}"
        )
    return ckpt


def rng_state() -> dict:
    """Python, NumPy and torch (CPU and CUDA) RNG states as checkpoint-safe values."""
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
    """Restores what :func:`rng_state` captured."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), int(n[2]), int(n[3]), float(n[4])))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def run_rng_state(data_rng: torch.Generator, sample_rng: torch.Generator) -> dict:
    """Every random stream of one process of a run: global (Python, NumPy, torch: dropout), data order, sampling."""
    return {"global": rng_state(), "data": data_rng.get_state(), "sample": sample_rng.get_state()}


def set_run_rng_state(
    payload: dict, rank: int, world_size: int, data_rng: torch.Generator, sample_rng: torch.Generator
) -> None:
    """Restores this rank's streams from a checkpoint's ``rank_rng`` list (one entry per process)."""
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
    run resumes from, so the resumed run's records replace them)."""
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
