"""The evaluation table: BLEU-2..5, Self-BLEU-2..5, distinct-n, length and FED for one set of sentences, the
real-data row computed the same way, and quality-diversity sweeps over sampling temperature.

Every number is documented in the returned ``protocol`` object (counts, n-gram weights, smoothing,
tokenization, library versions), so a table can be read without the code.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence

from seqgan.metrics.bleu import ReferenceBleu, self_bleu_multi
from seqgan.metrics.diversity import average_length, distinct_n

ORDERS = (2, 3, 4, 5)
METRIC_KEYS = [f"bleu{n}" for n in ORDERS] + [f"self_bleu{n}" for n in ORDERS]


def text_metrics(
    hypotheses: Sequence[Sequence[str]],
    references: Sequence[Sequence[str]] | ReferenceBleu,
    orders: Sequence[int] = ORDERS,
    self_bleu: bool = True,
) -> dict[str, float]:
    """BLEU-n against ``references``, Self-BLEU-n among ``hypotheses``, distinct-1/2 and average length.

    Args:
        hypotheses: tokenized generated (or real) sentences; each is scored against ALL references.
        references: tokenized reference sentences (or a prepared :class:`ReferenceBleu` to reuse).
        orders: BLEU orders (uniform weights ``(1/n,)*n``, nltk smoothing method1).
        self_bleu: also compute Self-BLEU (each hypothesis against all the others, never itself).
    Returns:
        ``{"bleu2": .., "self_bleu2": .., "distinct1": .., "distinct2": .., "avg_len": ..}``.
    """
    hyps = [list(h) for h in hypotheses]
    ref = references if isinstance(references, ReferenceBleu) else ReferenceBleu(references, max(orders))
    scores = ref.score(hyps, orders)
    out = {f"bleu{n}": sum(scores[n]) / len(scores[n]) for n in orders}
    if self_bleu and len(hyps) >= 2:
        out.update({f"self_bleu{n}": v for n, v in self_bleu_multi(hyps, orders).items()})
    out["distinct1"] = distinct_n(hyps, 1)
    out["distinct2"] = distinct_n(hyps, 2)
    out["avg_len"] = average_length(hyps)
    return out


def protocol(
    num_hypotheses: int, num_references: int, tokenization: str, orders: Sequence[int] = ORDERS, **extra
) -> dict:
    """The ``protocol`` object stored beside every table."""
    import nltk
    import numpy
    import torch

    return {
        "num_hypotheses": num_hypotheses,
        "num_references": num_references,
        "bleu": "mean over hypotheses of nltk sentence_bleu(all references, hyp), computed exactly by "
        "seqgan.metrics.bleu",
        "ngram_weights": {f"bleu{n}": [round(1.0 / n, 6)] * n for n in orders},
        "smoothing": "nltk SmoothingFunction().method1 (epsilon 0.1 added to zero-count precisions)",
        "self_bleu": "each hypothesis against all other hypotheses (leave-one-out, never itself)",
        "tokenization": tokenization,
        "versions": {
            "seqgan": _version(),
            "nltk": nltk.__version__,
            "torch": torch.__version__,
            "numpy": numpy.__version__,
            "python": platform.python_version(),
        },
        **extra,
    }


def _version() -> str:
    from seqgan import __version__

    return __version__


def format_table(rows: dict[str, dict], keys: Sequence[str] | None = None) -> str:
    """A fixed-width text table: one row per system (e.g. ``real data``, ``model``), one column per metric."""
    if keys is None:
        keys = []
        for r in rows.values():
            keys += [k for k, v in r.items() if isinstance(v, int | float) and k not in keys]
    width = max(10, *(len(n) for n in rows)) + 2
    header = "".ljust(width) + "".join(k.rjust(11) for k in keys)
    lines = [header]
    for name, r in rows.items():
        cells = []
        for k in keys:
            v = r.get(k)
            cells.append(("-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)).rjust(11))
        lines.append(name.ljust(width) + "".join(cells))
    return "\n".join(lines)
