"""Tests for seqgan.metrics.diversity (hand-computed values)."""

from __future__ import annotations

import pytest

from seqgan.metrics.diversity import average_length, distinct_n, generic_reply_share

SENTS = [
    "the cat sat".split(),  # unigrams: the cat sat
    "the cat ran".split(),  # the cat ran
    "a dog".split(),  # a dog
]


def test_distinct_1() -> None:
    # 8 unigrams in total; distinct {the, cat, sat, ran, a, dog} = 6.
    assert distinct_n(SENTS, 1) == pytest.approx(6 / 8)


def test_distinct_2() -> None:
    # Bigrams: (the cat) (cat sat) | (the cat) (cat ran) | (a dog) -> 5 total, 4 distinct.
    assert distinct_n(SENTS, 2) == pytest.approx(4 / 5)


def test_distinct_3_skips_short_sentences_and_does_not_cross_boundaries() -> None:
    # Trigrams: (the cat sat), (the cat ran); "a dog" has none. A cross-boundary n-gram would add more.
    assert distinct_n(SENTS, 3) == pytest.approx(2 / 2)
    assert distinct_n([["a", "b"], ["a", "b"]], 3) == 0.0
    assert distinct_n([["x", "x", "x", "x"]], 2) == pytest.approx(1 / 3)


def test_distinct_edge_cases() -> None:
    assert distinct_n([], 1) == 0.0
    assert distinct_n([[]], 1) == 0.0
    with pytest.raises(ValueError):
        distinct_n(SENTS, 0)


def test_average_length() -> None:
    assert average_length(SENTS) == pytest.approx(8 / 3)
    assert average_length([[], ["a"]]) == pytest.approx(0.5)
    assert average_length([]) == 0.0


def test_generic_reply_share() -> None:
    replies = [["i", "don't", "know"]] * 5 + [["yes"]] * 3 + [["ok"]] * 2 + [[f"r{i}"] for i in range(10)]
    # 20 replies; most frequent: "i don't know" (5), "yes" (3), "ok" (2), then singletons.
    assert generic_reply_share(replies, top_k=1) == pytest.approx(5 / 20)
    assert generic_reply_share(replies, top_k=2) == pytest.approx(8 / 20)
    assert generic_reply_share(replies, top_k=4) == pytest.approx(11 / 20)
    assert generic_reply_share(replies, top_k=100) == 1.0
    strings = [" ".join(r) for r in replies]
    assert generic_reply_share(strings, top_k=2) == pytest.approx(8 / 20)
    assert generic_reply_share([], top_k=3) == 0.0
    with pytest.raises(ValueError):
        generic_reply_share(replies, top_k=0)


def test_generic_reply_share_all_distinct() -> None:
    replies = [[str(i)] for i in range(50)]
    assert generic_reply_share(replies, top_k=10) == pytest.approx(10 / 50)
