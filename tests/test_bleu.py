"""Tests for seqgan.metrics.bleu: exact parity with nltk's sentence_bleu (method1 smoothing)."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from seqgan.metrics.bleu import (
    ReferenceBleu,
    bleu,
    bleu_multi,
    bleu_per_hypothesis,
    bleu_per_hypothesis_multi,
    self_bleu,
    self_bleu_multi,
    self_bleu_per_sample,
    self_bleu_per_sample_multi,
)

SMOOTH = SmoothingFunction().method1
TOL = 1e-12  # the implementation is bit-exact in practice; 1e-9 is the contract


def nltk_scores(hyps, refs, n):
    return [float(sentence_bleu(refs, h, weights=(1 / n,) * n, smoothing_function=SMOOTH)) for h in hyps]


def nltk_self_scores(samples, n):
    return [nltk_scores([s], samples[:i] + samples[i + 1 :], n)[0] for i, s in enumerate(samples)]


def assert_close(ours, theirs, tol=TOL):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert abs(a - b) <= tol, (a, b)


def random_corpus(rng, n_sents, vocab, max_len):
    return [[rng.randrange(vocab) for _ in range(rng.randint(0, max_len))] for _ in range(n_sents)]


# ---------------------------------------------------------------------------------------------------
# hand-computed cases
# ---------------------------------------------------------------------------------------------------
def test_hand_computed_brevity_penalty():
    hyp = ["the", "cat", "sat"]
    refs = [["the", "cat", "sat", "down"]]
    # p1 = 3/3, p2 = 2/2, r = 4 > h = 3: bp = exp(1 - 4/3)
    expected = math.exp(1 - 4 / 3)
    assert bleu_per_hypothesis([hyp], refs, 2)[0] == pytest.approx(expected, abs=1e-15)
    assert bleu([hyp], refs, 2) == pytest.approx(expected, abs=1e-15)


def test_hand_computed_smoothing_and_clipping():
    hyp = ["a", "a", "b", "c"]
    refs = [["a", "x", "c", "b"], ["b", "a", "z", "z"]]
    # unigrams: a x2 clipped to 1 (max count of "a" in one reference), b 1, c 1 -> 3/4
    # bigrams (a a), (a b), (b c): none in any reference -> method1: 0.1 / 3
    # r = 4 = h -> bp = exp(0) = 1
    expected = math.exp(0.5 * math.log(3 / 4) + 0.5 * math.log(0.1 / 3))
    assert bleu_per_hypothesis([hyp], refs, 2)[0] == pytest.approx(expected, abs=1e-15)
    assert_close(bleu_per_hypothesis([hyp], refs, 2), nltk_scores([hyp], refs, 2))


def test_hand_computed_self_bleu():
    samples = [["a", "b"], ["a", "c"], ["d", "e"]]
    # sample 0 vs {1, 2}: p1 = 1/2, p2 = 0.1/1, r = 2 = h -> sqrt(0.05); same for sample 1; sample 2: 0
    s = math.exp(0.5 * math.log(1 / 2) + 0.5 * math.log(0.1))
    assert self_bleu_per_sample(samples, 2) == pytest.approx([s, s, 0.0], abs=1e-15)
    assert self_bleu(samples, 2) == pytest.approx(2 * s / 3, abs=1e-15)


# ---------------------------------------------------------------------------------------------------
# nltk edge cases
# ---------------------------------------------------------------------------------------------------
REFS = [["a", "b", "c", "d"], ["a", "b", "e"], ["b", "c", "d", "d", "a", "b"]]
EDGE_HYPS = [
    [],  # empty hypothesis -> 0
    ["a"],  # length 1
    ["b", "c"],  # shorter than n
    ["q", "r", "s"],  # no unigram match -> nltk returns 0
    ["q", "b", "q", "q"],  # one unigram match only
    ["d", "d", "d", "d", "d"],  # clipping by max count in a single reference (2)
    ["a", "b", "c", "d"],  # exact match of a reference
    ["b", "c", "d", "d", "a", "b", "c", "d", "a"],  # longer than every reference
]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7])
def test_edge_cases_match_nltk(n):
    assert_close(bleu_per_hypothesis(EDGE_HYPS, REFS, n), nltk_scores(EDGE_HYPS, REFS, n))


def test_empty_and_unmatched_hypotheses_score_zero():
    assert bleu_per_hypothesis([[], ["zz", "yy"]], REFS, 4) == [0.0, 0.0]


def test_length_tie_picks_shorter_reference():
    refs = [["x", "y"], ["x", "y", "z", "w"]]  # lengths 2 and 4, hypothesis length 3: tie
    hyp = ["x", "y", "z"]
    ours = bleu_per_hypothesis([hyp], refs, 2)[0]
    # r = 2 < h = 3 -> bp = 1 (choosing 4 would give exp(1 - 4/3) < 1)
    assert ours == pytest.approx(1.0, abs=1e-15)
    assert_close([ours], nltk_scores([hyp], refs, 2))
    # the same with the leave-one-out reference set of self-BLEU
    samples = [hyp, ["x", "y"], ["x", "y", "z", "w"]]
    assert_close(self_bleu_per_sample(samples, 2), nltk_self_scores(samples, 2))


def test_duplicate_references_do_not_add_up_clipping():
    refs = [["a", "b"], ["a", "b"], ["a", "b"]]
    hyp = ["a", "a", "a", "b"]  # "a" clipped to 1, not to 3
    assert_close(bleu_per_hypothesis([hyp], refs, 2), nltk_scores([hyp], refs, 2))
    assert bleu_per_hypothesis([hyp], refs, 1)[0] == pytest.approx(2 / 4, abs=1e-15)


def test_generic_hashable_tokens_and_tuple_sentences():
    refs = [(1, 2, 3), (2, 3, 4, 5)]
    hyps = [(1, 2, 3, 4), [2, 3, 4, 5, 6]]
    assert_close(bleu_per_hypothesis(hyps, refs, 3), nltk_scores(hyps, refs, 3))
    str_hyps = [["1", "2", "3"]]  # "1" != 1
    assert bleu_per_hypothesis(str_hyps, refs, 2) == [0.0]


# ---------------------------------------------------------------------------------------------------
# random parity (small vocabularies so n-grams collide)
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_random_bleu_matches_nltk(seed):
    rng = random.Random(seed)
    vocab = rng.choice([2, 3, 5, 8])
    refs = random_corpus(rng, rng.randint(1, 12), vocab, 10)
    hyps = random_corpus(rng, 25, vocab + 2, 10)  # some tokens never occur in the references
    for n in (1, 2, 3, 4, 5):
        assert_close(bleu_per_hypothesis(hyps, refs, n), nltk_scores(hyps, refs, n))


@pytest.mark.parametrize("seed", range(6))
def test_random_self_bleu_matches_nltk(seed):
    rng = random.Random(100 + seed)
    vocab = rng.choice([2, 3, 5])
    samples = random_corpus(rng, 20, vocab, 9)
    samples += [list(samples[0]), list(samples[1])]  # duplicates at other indices count
    rng.shuffle(samples)
    for n in (1, 2, 3, 4, 5):
        assert_close(self_bleu_per_sample(samples, n), nltk_self_scores(samples, n))


# ---------------------------------------------------------------------------------------------------
# property-based tests
# ---------------------------------------------------------------------------------------------------
sentence = st.lists(st.integers(0, 3), max_size=8)


@settings(max_examples=60, deadline=None)
@given(
    hyps=st.lists(sentence, min_size=1, max_size=6),
    refs=st.lists(sentence, min_size=1, max_size=6),
    n=st.integers(1, 6),
)
def test_property_bleu_equals_nltk(hyps, refs, n):
    ours = bleu_per_hypothesis(hyps, refs, n)
    assert_close(ours, nltk_scores(hyps, refs, n))
    assert all(0.0 <= s <= 1.0 for s in ours)
    assert bleu(hyps, refs, n) == pytest.approx(sum(ours) / len(ours), abs=1e-15)


@settings(max_examples=60, deadline=None)
@given(samples=st.lists(sentence, min_size=2, max_size=7), n=st.integers(1, 6))
def test_property_self_bleu_equals_nltk(samples, n):
    assert_close(self_bleu_per_sample(samples, n), nltk_self_scores(samples, n))


@settings(max_examples=40, deadline=None)
@given(
    hyps=st.lists(sentence, min_size=1, max_size=6),
    refs=st.lists(sentence, min_size=1, max_size=6),
    orders=st.lists(st.integers(1, 6), min_size=1, max_size=4),
)
def test_property_multi_equals_single(hyps, refs, orders):
    multi = bleu_per_hypothesis_multi(hyps, refs, orders)
    assert sorted(multi) == sorted(set(orders))
    for n in orders:
        assert multi[n] == bleu_per_hypothesis(hyps, refs, n)
    samples = hyps + refs
    self_multi = self_bleu_per_sample_multi(samples, orders)
    for n in orders:
        assert self_multi[n] == self_bleu_per_sample(samples, n)


def test_multi_means_equal_single_means():
    rng = random.Random(7)
    refs = random_corpus(rng, 30, 6, 12)
    hyps = random_corpus(rng, 30, 6, 12)
    multi = bleu_multi(hyps, refs, (2, 3, 4, 5))
    smulti = self_bleu_multi(hyps, (2, 3, 4, 5))
    for n in (2, 3, 4, 5):
        assert multi[n] == bleu(hyps, refs, n)
        assert smulti[n] == self_bleu(hyps, n)
        assert multi[n] == pytest.approx(sum(nltk_scores(hyps, refs, n)) / len(hyps), abs=1e-12)


# ---------------------------------------------------------------------------------------------------
# Self-BLEU never counts the sample itself
# ---------------------------------------------------------------------------------------------------
def test_self_bleu_two_distinct_samples():
    samples = [["a", "b", "c", "d"], ["a", "b", "x", "y"]]
    ours = self_bleu_per_sample(samples, 2)
    assert_close(
        ours, [nltk_scores([samples[0]], [samples[1]], 2)[0], nltk_scores([samples[1]], [samples[0]], 2)[0]]
    )
    assert all(s < 1.0 for s in ours)


def test_self_bleu_unique_samples_below_one_unlike_texygen():
    samples = [
        ["the", "cat", "sat"],
        ["a", "dog", "ran", "far"],
        ["the", "dog", "sat", "down"],
        ["birds", "fly", "south"],
    ]
    # Texygen's buggy variant scores every sample against a list that still contains it -> exactly 1.0
    buggy = sum(nltk_scores([s], samples, 3)[0] for s in samples) / len(samples)
    assert buggy == pytest.approx(1.0)
    ours = self_bleu(samples, 3)
    assert ours < 0.9
    assert ours == pytest.approx(sum(nltk_self_scores(samples, 3)) / len(samples), abs=1e-12)


def test_self_bleu_duplicate_at_other_index_counts():
    a = ["x", "y", "z", "w"]
    samples = [a, list(a), ["p", "q"]]
    scores = self_bleu_per_sample(samples, 4)
    assert scores[0] == pytest.approx(1.0) and scores[1] == pytest.approx(1.0)
    assert scores[2] == 0.0
    assert_close(scores, nltk_self_scores(samples, 4))


def test_self_bleu_repeated_ngram_leave_one_out():
    # "a" occurs 3x in sample 0 (unique maximum) and 2x in sample 1: clipping for sample 0 must use 2
    samples = [["a", "a", "a", "b"], ["a", "a", "c"], ["a", "d"]]
    assert_close(self_bleu_per_sample(samples, 1), nltk_self_scores(samples, 1))
    # a: min(3, 2) = 2, b: 0 -> p1 = 2/4; closest other length 3 < 4 -> bp = 1
    assert self_bleu_per_sample(samples, 1)[0] == pytest.approx(2 / 4, abs=1e-15)


# ---------------------------------------------------------------------------------------------------
# API behaviour and errors
# ---------------------------------------------------------------------------------------------------
def test_reference_bleu_reusable():
    rng = random.Random(3)
    refs = random_corpus(rng, 15, 4, 8)
    scorer = ReferenceBleu(refs, max_order=4)
    for _ in range(3):
        hyps = random_corpus(rng, 10, 5, 8)
        res = scorer.score(hyps, (2, 4))
        assert res[2] == bleu_per_hypothesis(hyps, refs, 2)
        assert_close(res[4], nltk_scores(hyps, refs, 4))
    with pytest.raises(ValueError):
        scorer.score([["a"]], (5,))


def test_errors():
    with pytest.raises(ValueError):
        bleu([["a"]], [], 2)
    with pytest.raises(ValueError):
        bleu_per_hypothesis([["a"]], [], 2)
    with pytest.raises(ValueError):
        bleu([], [["a"]], 2)
    with pytest.raises(ValueError):
        self_bleu([["a", "b"]], 2)
    with pytest.raises(ValueError):
        bleu([["a"]], [["a"]], 0)
    with pytest.raises(ValueError):
        bleu_multi([["a"]], [["a"]], ())
    with pytest.raises(TypeError):
        bleu(["a b c"], [["a"]], 2)
    assert bleu_per_hypothesis([], [["a"]], 2) == []


def test_generators_are_accepted():
    refs = [["a", "b", "c"], ["b", "c"]]
    hyps = [["a", "b"], ["c"]]
    assert bleu_per_hypothesis((iter(h) for h in hyps), iter(refs), 2) == bleu_per_hypothesis(hyps, refs, 2)
