"""Corpus-level diversity statistics for generated text.

* ``distinct_n`` is the Distinct-n ratio of Li et al., "A Diversity-Promoting Objective Function for Neural
  Conversation Models" (NAACL 2016, arXiv:1510.03055): number of distinct n-grams divided by the total number
  of n-grams in all generated sentences.
* ``average_length`` is the mean sentence length in tokens.
* ``generic_reply_share`` measures how much of the output is taken by the few most frequent replies (the
  "I don't know" problem of neural chatbots, also discussed by Li et al. 2016).

All functions take pre-tokenised sentences (``list[list[str]]``); tokenisation is the caller's choice and must
be the same for the systems being compared.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence

__all__ = ["distinct_n", "average_length", "generic_reply_share"]


def distinct_n(sentences: Sequence[Sequence[str]], n: int) -> float:
    """Distinct-n: distinct n-grams / total n-grams, pooled over all sentences.

    n-grams are taken within each sentence (never across sentence boundaries); a sentence shorter than ``n``
    contributes none.

    Args:
        sentences: tokenised sentences, length N.
        n: n-gram order (>= 1).

    Returns:
        A ratio in ``(0, 1]``, or ``0.0`` when there are no n-grams at all (empty input or all sentences
        shorter than ``n``).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    distinct: set[tuple[str, ...]] = set()
    total = 0
    for sent in sentences:
        toks = tuple(sent)
        count = len(toks) - n + 1
        if count <= 0:
            continue
        total += count
        distinct.update(toks[i : i + n] for i in range(count))
    return len(distinct) / total if total else 0.0


def average_length(sentences: Sequence[Sequence[str]]) -> float:
    """Mean number of tokens per sentence.

    Args:
        sentences: tokenised sentences, length N.

    Returns:
        ``sum(len(s)) / N``, or ``0.0`` for an empty list.
    """
    if len(sentences) == 0:
        return 0.0
    return sum(len(s) for s in sentences) / len(sentences)


def _key(sentence: Sequence[str] | str) -> Hashable:
    return sentence if isinstance(sentence, str) else tuple(sentence)


def generic_reply_share(sentences: Sequence[Sequence[str]] | Sequence[str], top_k: int = 10) -> float:
    """Share of sentences equal to one of the ``top_k`` most frequent sentences.

    Sentences are compared exactly (as token tuples, or as strings if plain strings are given). A high value means
    the model collapses onto a few generic replies. Ties for the last of the ``top_k`` places are broken by first
    occurrence, so the value is deterministic. Note the value is 1.0 whenever there are at most ``top_k``
    distinct sentences, so use it on sets much larger than ``top_k`` (e.g. hundreds of replies).

    Args:
        sentences: tokenised sentences (or strings), length N.
        top_k: how many of the most frequent distinct sentences count as "generic" (>= 1).

    Returns:
        ``(number of sentences among the top_k most frequent) / N`` in ``[0, 1]``, ``0.0`` for an empty list.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if len(sentences) == 0:
        return 0.0
    counts = Counter(_key(s) for s in sentences)  # insertion order = first occurrence; most_common is stable
    covered = sum(c for _, c in counts.most_common(top_k))
    return covered / len(sentences)
