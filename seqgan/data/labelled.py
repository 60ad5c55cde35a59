"""Labelled sentences for category-conditional generation: ``label<TAB>sentence`` files, encoding, per-class
counts and class-balanced batches.

Format: one example per line, ``label<TAB>sentence`` (UTF-8, no header, any number of classes). Blank lines are
skipped. A line without a TAB, with an empty label or an empty sentence, or (when the classes are fixed, e.g.
for a test file read against the training file's classes) with a label outside them stops the run with a
:class:`~seqgan.data.datasets.DataError` naming the file and the line. TABs after the first belong to the
sentence and are read as spaces.

Classes are numbered in the order given (``category.labels``) or, by default, in sorted order of the training
file's labels, so that every stage and every checkpoint of a run numbers them alike.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from seqgan.data.datasets import DataError, check_text_file, count_unknown, fit_length, pad_row
from seqgan.data.tokenizers import Tokenizer

__all__ = [
    "EncodedLabelled",
    "Labelled",
    "LabelledLines",
    "balanced_batches",
    "encode_labelled",
    "load_labelled",
]


@dataclass
class Labelled:
    """Encoded labelled examples: ``labels`` ``(N,)`` class ids and ``tokens`` ``(N, T)`` ids."""

    labels: torch.Tensor
    tokens: torch.Tensor

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def __getitem__(self, index) -> Labelled:
        return Labelled(self.labels[index], self.tokens[index])

    def to(self, device) -> Labelled:
        return Labelled(self.labels.to(device), self.tokens.to(device))

    def of_class(self, label: int) -> torch.Tensor:
        """The ``(n_c, T)`` rows of class ``label``."""
        return self.tokens[self.labels == label]


@dataclass
class LabelledLines:
    """Raw labelled sentences: ``sentences[i]`` has class name ``labels[i]``; ``line_numbers[i]`` is its line in
    ``path`` (for messages)."""

    labels: list[str]
    sentences: list[str]
    path: str = ""
    line_numbers: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sentences)

    def classes(self) -> list[str]:
        """The distinct labels, sorted (the default class order)."""
        return sorted(set(self.labels))

    def per_class(self, limit: int = 0) -> LabelledLines:
        """The first ``limit`` sentences of every class, in file order (all when ``limit`` is 0)."""
        if not limit:
            return self
        seen: dict[str, int] = {}
        keep = []
        for i, label in enumerate(self.labels):
            seen[label] = seen.get(label, 0) + 1
            if seen[label] <= limit:
                keep.append(i)
        return self.subset(keep)

    def subset(self, index: Sequence[int]) -> LabelledLines:
        lines = [self.line_numbers[i] for i in index] if self.line_numbers else []
        return LabelledLines(
            [self.labels[i] for i in index], [self.sentences[i] for i in index], self.path, lines
        )

    def of_class(self, label: str) -> list[str]:
        """The sentences of one class, in order."""
        return [s for s, lab in zip(self.sentences, self.labels, strict=True) if lab == label]


def load_labelled(path: str | Path, classes: Sequence[str] | None = None) -> LabelledLines:
    """Reads ``label<TAB>sentence`` lines.

    Args:
        path: the file.
        classes: the allowed labels (None: any label).
    Raises:
        DataError: the file is missing, empty or not UTF-8, or a line has no TAB, an empty label or sentence,
            or a label outside ``classes``; one line naming the file and the line number.
    """
    p = check_text_file(path)
    allowed = None if classes is None else set(classes)
    labels, sentences, numbers = [], [], []
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise DataError(f"{p}: line {lineno} has no TAB; expected 'label<TAB>sentence'")
        label, text = line.split("\t", 1)
        label, text = label.strip(), " ".join(text.replace("\t", " ").split())
        if not label or not text:
            raise DataError(f"{p}: line {lineno} has an empty {'label' if not label else 'sentence'}")
        if allowed is not None and label not in allowed:
            raise DataError(
                f"{p}: line {lineno} has the unknown label {label!r} (the run's classes: {', '.join(classes)})"
            )
        labels.append(label)
        sentences.append(text)
        numbers.append(lineno)
    if not sentences:
        raise DataError(f"{p}: no labelled sentences")
    return LabelledLines(labels, sentences, str(p), numbers)


@dataclass
class EncodedLabelled:
    """Encoded labelled sentences: ``labels`` ``(N,)`` class ids and ``tokens`` ``(N, T)`` ids
    (``y_1 .. y_n EOS PAD ..``); ``kept`` indexes the raw lines that were kept."""

    labels: torch.Tensor
    tokens: torch.Tensor
    kept: list[int]
    raw: LabelledLines
    classes: list[str]
    truncated: int = 0
    dropped: int = 0
    unk_tokens: int = 0
    num_tokens: int = 0

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @property
    def kept_raw(self) -> LabelledLines:
        return self.raw.subset(self.kept)

    def counts(self) -> list[int]:
        """Kept sentences per class, in class order."""
        return torch.bincount(self.labels, minlength=len(self.classes)).tolist()

    def summary(self, name: str) -> str:
        per = ", ".join(f"{c} {n}" for c, n in zip(self.classes, self.counts(), strict=True))
        s = f"{name}: {len(self)}/{len(self.raw)} sentences ({per}), {self.num_tokens} tokens"
        if self.truncated:
            s += f", {self.truncated} truncated to max_len"
        if self.dropped:
            s += f", {self.dropped} dropped"
        if self.unk_tokens:
            s += f", {self.unk_tokens} unknown tokens ({100.0 * self.unk_tokens / max(1, self.num_tokens):.2f}%)"
        return s


def encode_labelled(
    lines: LabelledLines,
    tokenizer: Tokenizer,
    classes: Sequence[str],
    max_len: int,
    overlong: str = "truncate",
) -> EncodedLabelled:
    """Encodes labelled sentences with the sentences' truncation rule (:func:`~seqgan.data.datasets.fit_length`).

    Args:
        lines: raw labelled sentences (every label in ``classes``).
        tokenizer: any tokenizer.
        classes: class names; a label's id is its index here.
        max_len: sequence length, EOS included when it fits.
        overlong: ``"truncate"`` or ``"drop"``.
    Raises:
        DataError: nothing is left, or a label is not in ``classes`` (naming the file and line).
    """
    index = {c: i for i, c in enumerate(classes)}
    rows, ids_of, kept = [], [], []
    out = EncodedLabelled(torch.empty(0), torch.empty(0), [], lines, list(classes))
    for i, (label, text) in enumerate(zip(lines.labels, lines.sentences, strict=True)):
        if label not in index:
            where = f"line {lines.line_numbers[i]}" if lines.line_numbers else f"example {i + 1}"
            raise DataError(
                f"{lines.path or 'labelled data'}: {where} has the unknown label {label!r} "
                f"(the run's classes: {', '.join(classes)})"
            )
        ids = tokenizer.encode(text)
        cut = fit_length(ids, max_len, overlong) if ids else None
        if cut is None:
            out.dropped += 1
            continue
        out.truncated += len(cut) < len(ids)
        out.unk_tokens += count_unknown(cut, tokenizer)
        out.num_tokens += min(len(cut) + 1, max_len)
        rows.append(pad_row(cut, max_len, tokenizer))
        ids_of.append(index[label])
        kept.append(i)
    if not rows:
        raise DataError(
            f"{lines.path or 'labelled data'}: no sentence left after encoding (max_len={max_len})"
        )
    out.tokens = torch.tensor(rows, dtype=torch.long)
    out.labels = torch.tensor(ids_of, dtype=torch.long)
    out.kept = kept
    return out


def balanced_batches(
    labels: torch.Tensor, batch_size: int, rng: torch.Generator | None = None
) -> Iterator[torch.Tensor]:
    """One epoch of class-balanced index batches over ``(N,)`` class ids.

    An epoch has ``ceil(N / batch_size)`` batches; every batch holds ``batch_size // k`` rows of each of the
    ``k`` classes present (the remainder of ``batch_size`` goes to classes in a random order). Each class is read
    in its own seeded random order, reshuffled whenever it runs out, so a small class is repeated rather than a
    large one starved; with equal class sizes every row is seen about once per epoch.
    """
    present = torch.unique(labels)
    members = [(labels == c).nonzero().squeeze(1) for c in present.tolist()]
    k = len(members)
    orders = [m[torch.randperm(m.numel(), generator=rng)] for m in members]
    pos = [0] * k
    n = labels.numel()
    for _ in range((n + batch_size - 1) // batch_size):
        share = [batch_size // k] * k
        for j in torch.randperm(k, generator=rng)[: batch_size % k].tolist():
            share[j] += 1
        parts = []
        for j in range(k):
            need = share[j]
            while need:
                if pos[j] == orders[j].numel():
                    orders[j] = members[j][torch.randperm(members[j].numel(), generator=rng)]
                    pos[j] = 0
                take = min(need, orders[j].numel() - pos[j])
                parts.append(orders[j][pos[j] : pos[j] + take])
                pos[j] += take
                need -= take
        yield torch.cat(parts)
