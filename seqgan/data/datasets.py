"""Sentence datasets: one sentence per line from local files (through ``datasets``' ``text`` builder) or a
Hugging Face dataset by name, split into train/valid/test and encoded into padded id tensors.

Encoding convention (see :mod:`seqgan.models.base`): a sentence of n tokens becomes ``y_1 .. y_n EOS PAD ..``
of length ``max_len``; a sentence of exactly ``max_len`` tokens is stored without EOS (generation also stops
at max_len); longer sentences are truncated to ``max_len`` tokens or dropped (``overlong``), and counted.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

from seqgan.data.tokenizers import Tokenizer

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class DataError(ValueError):
    """A corpus file is missing, empty or not valid UTF-8."""


def resolve_path(path: str | Path) -> Path:
    """Relative paths are looked up from the working directory, then from the project root."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    alt = PROJECT_ROOT / p
    return alt if alt.exists() else p


def check_text_file(path: str | Path) -> Path:
    """Raises :class:`DataError` naming the file (and line) if it is missing, empty or not UTF-8."""
    p = resolve_path(path)
    if not p.is_file():
        raise DataError(f"corpus file not found: {path} (looked in {Path.cwd()} and {PROJECT_ROOT})")
    raw = p.read_bytes()
    for lineno, line in enumerate(raw.split(b"\n"), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(
                f"{p}: line {lineno} is not valid UTF-8 (byte {line[e.start]:#04x} at column {e.start + 1}); "
                "re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`"
            ) from None
    if not raw.strip():
        raise DataError(f"{p}: the file is empty (no non-blank lines)")
    return p


def load_text_splits(data_cfg, seed: int = 0) -> dict[str, list[str]]:
    """Raw sentences per split: ``{"train": [...], "valid": [...], "test": [...]}`` (missing splits omitted).

    Local files go through ``datasets.load_dataset("text", data_files=...)``; ``data_cfg.hf_dataset`` loads a hub
    dataset instead (needs network). Blank lines are skipped. When no validation data is given and
    ``valid_fraction > 0``, a seeded random subset of train is held out.
    """
    import datasets

    if data_cfg.hf_dataset:
        ds = datasets.load_dataset(data_cfg.hf_dataset, data_cfg.hf_config_name)
        column = data_cfg.hf_text_column
        names = {"train": "train", "valid": "validation", "test": "test"}
        splits = {}
        for ours, theirs in names.items():
            if theirs in ds:
                if column not in ds[theirs].column_names:
                    raise DataError(
                        f"dataset {data_cfg.hf_dataset!r} has no column {column!r} "
                        f"(columns: {ds[theirs].column_names}); set data.hf_text_column"
                    )
                splits[ours] = [s for s in ds[theirs][column] if isinstance(s, str) and s.strip()]
    else:
        files = {"train": data_cfg.train, "valid": data_cfg.valid, "test": data_cfg.test}
        files = {k: str(check_text_file(v)) for k, v in files.items() if v}
        ds = datasets.load_dataset("text", data_files=files)
        splits = {k: [s for s in ds[k]["text"] if s.strip()] for k in files}
    if "train" not in splits or not splits["train"]:
        raise DataError("the training split is empty")
    if "valid" not in splits and data_cfg.valid_fraction > 0:
        lines = splits["train"]
        order = list(range(len(lines)))
        random.Random(seed).shuffle(order)
        n_valid = max(1, int(round(len(lines) * data_cfg.valid_fraction)))
        held = set(order[:n_valid])
        splits["valid"] = [lines[i] for i in sorted(held)]
        splits["train"] = [s for i, s in enumerate(lines) if i not in held]
    return splits


@dataclass
class EncodeReport:
    """What happened to a split's sentences during encoding."""

    total: int = 0
    kept: int = 0
    truncated: int = 0
    dropped: int = 0
    unk_tokens: int = 0
    tokens: int = 0
    examples: list[int] = field(default_factory=list)

    def summary(self, name: str) -> str:
        s = f"{name}: {self.kept}/{self.total} sentences, {self.tokens} tokens"
        if self.truncated:
            s += f", {self.truncated} truncated to max_len"
        if self.dropped:
            s += f", {self.dropped} over max_len dropped"
        if self.unk_tokens:
            s += f", {self.unk_tokens} unknown tokens ({100.0 * self.unk_tokens / max(1, self.tokens):.2f}%)"
        return s


def fit_length(
    ids: list[int], max_len: int, overlong: str = "truncate", keep: str = "head"
) -> list[int] | None:
    """The one truncation rule of every encoder: ``ids`` cut to at most ``max_len`` tokens.

    Args:
        ids: token ids of one text.
        max_len: most tokens kept.
        overlong: ``"truncate"`` keeps ``max_len`` tokens, ``"drop"`` returns None for a longer text.
        keep: which end a truncated text keeps: ``"head"`` (its first tokens: sentences, responses) or
            ``"tail"`` (its last tokens: a dialogue context, whose end is what a response answers).
    Returns:
        The kept ids, or None when the text is dropped.
    """
    if len(ids) <= max_len:
        return ids
    if overlong == "drop":
        return None
    return ids[-max_len:] if keep == "tail" else ids[:max_len]


def pad_row(ids: list[int], max_len: int, tokenizer: Tokenizer) -> list[int]:
    """``y_1 .. y_n EOS PAD ..`` of length ``max_len`` (no EOS when ``n == max_len``); ``ids`` fit already."""
    if len(ids) < max_len:
        ids = ids + [tokenizer.eos_id]
    return ids + [tokenizer.pad_id] * (max_len - len(ids))


def count_unknown(ids: list[int], tokenizer: Tokenizer) -> int:
    """How many of ``ids`` are the unknown token (0 when UNK doubles as EOS, as for some HF tokenizers)."""
    if tokenizer.unk_id == tokenizer.eos_id:
        return 0
    return sum(1 for t in ids if t == tokenizer.unk_id)


def encode_sentences(
    lines: list[str], tokenizer: Tokenizer, max_len: int, overlong: str = "truncate"
) -> tuple[torch.Tensor, EncodeReport]:
    """Encodes sentences into a ``(N, max_len)`` long tensor of ``y_1 .. y_n EOS PAD ..``.

    Args:
        lines: raw sentences.
        tokenizer: any :class:`Tokenizer`.
        max_len: sequence length, EOS included when it fits.
        overlong: ``"truncate"`` keeps the first max_len tokens, ``"drop"`` removes the sentence
            (:func:`fit_length`).
    Returns:
        ``(tokens, report)``; sentences that encode to no token at all are dropped and counted.
    """
    if max_len < 2:
        raise ValueError(f"max_len must be at least 2, got {max_len}")
    if overlong not in ("truncate", "drop"):
        raise ValueError(f"overlong must be 'truncate' or 'drop', got {overlong!r}")
    rows: list[list[int]] = []
    rep = EncodeReport(total=len(lines))
    for i, line in enumerate(lines):
        ids = tokenizer.encode(line)
        kept = fit_length(ids, max_len, overlong) if ids else None
        if kept is None:
            rep.dropped += 1
            if ids and len(rep.examples) < 5:
                rep.examples.append(i)
            continue
        rep.truncated += len(kept) < len(ids)
        rep.unk_tokens += count_unknown(kept, tokenizer)
        row = pad_row(kept, max_len, tokenizer)
        rep.tokens += min(len(kept) + 1, max_len)
        rows.append(row)
    rep.kept = len(rows)
    if not rows:
        raise DataError(
            f"no sentence left after encoding {len(lines)} lines with max_len={max_len} and "
            f"overlong={overlong!r}; raise data.max_len or use data.overlong=truncate"
        )
    return torch.tensor(rows, dtype=torch.long), rep


def sequence_mask(tokens: torch.Tensor, eos_id: int | None) -> torch.Tensor:
    """``(B, T)`` bool mask, True for real tokens: everything up to and including the first EOS.

    Computed from EOS rather than PAD so that it also holds when PAD and EOS share an id (GPT-2 style
    tokenizers). With ``eos_id=None`` (fixed-length data such as the synthetic oracle) every position is real.
    """
    if eos_id is None:
        return torch.ones_like(tokens, dtype=torch.bool)
    is_eos = (tokens == eos_id).long()
    before = is_eos.cumsum(dim=1) - is_eos  # EOS seen strictly before this position
    return before == 0


def batches(num: int, batch_size: int, shuffle: bool, generator: torch.Generator | None = None):
    """Yields index tensors covering ``range(num)`` in batches (seeded shuffle)."""
    order = torch.randperm(num, generator=generator) if shuffle else torch.arange(num)
    for start in range(0, num, batch_size):
        yield order[start : start + batch_size]
