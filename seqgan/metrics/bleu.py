"""Exact, fast BLEU and Self-BLEU under the text-GAN evaluation protocol.

Protocol
--------
Text-GAN papers (SeqGAN, LeakGAN, RelGAN, Texygen, ...) report

* **BLEU-n** of a set of generated hypotheses against a reference corpus: the mean, over hypotheses, of
  ``nltk.translate.bleu_score.sentence_bleu(references, hyp, weights=(1/n,)*n,
  smoothing_function=SmoothingFunction().method1)``, where *every* hypothesis is scored against the
  *whole* reference list;
* **Self-BLEU-n** of a sample set: the same mean where sample ``i`` is scored against all the *other*
  samples (leave-one-out by index: the sample itself never counts as its own reference, but an
  identical duplicate at another index does). This is the correct variant; Texygen's original code
  scores each sample against a list that still contains the sample, which pushes Self-BLEU to 1.0.

The per-sentence score replicates nltk (checked against nltk 3.10.4 on CPython 3.11) bit for bit:

* modified precision ``p_k = clip_k / max(1, len(hyp) - k + 1)`` for ``k = 1..n``, where ``clip_k`` sums,
  over distinct hypothesis k-grams, ``min(count in hyp, max count in any single reference)``;
* if the clipped unigram count is 0 (in particular for an empty hypothesis) the score is ``0.0``;
* method1 smoothing: a precision with a zero numerator becomes ``(0 + 0.1) / denominator`` (so a
  hypothesis shorter than ``k`` gets ``p_k = 0.1``);
* closest reference length ``r = min(ref_lens, key=lambda r: (abs(r - len(hyp)), r))`` (ties go to the
  shorter reference), brevity penalty ``1`` if ``len(hyp) > r`` else ``exp(1 - r / len(hyp))``;
* ``score = bp * exp(fsum(w * log(p_k) for k in 1..n))`` with ``w = 1/n``; integer precisions are
  converted with ``num / den`` exactly as ``float(Fraction(num, den))`` does, so every floating-point
  operation is the one nltk performs and results are identical (not merely close).

An empty reference list (or fewer than two samples for Self-BLEU) raises ``ValueError``: nltk itself
crashes with an opaque ``ValueError``/``KeyError`` there.

Algorithm
---------
nltk recomputes the n-gram counts of every reference for every hypothesis (``O(H * R)`` per order). Here
all n-gram statistics are computed once, with a few vectorised numpy sorts per order:

* tokens are mapped to integer ids and the corpus is flattened; a k-gram starting at position ``i`` gets
  the integer code ``rank_{k-1}(i) * V + token[i + k - 1]`` where ``rank_{k-1}`` is the dense rank of the
  (k-1)-gram at ``i`` (so codes stay small and identify k-grams exactly, with no hashing collisions);
* ``np.unique`` over ``(k-gram rank, sentence)`` pairs gives the count of every k-gram in every sentence;
* BLEU: per k-gram the maximum count in a single reference (nltk's clipping count); a hypothesis k-gram
  is looked up with ``searchsorted`` (a hypothesis k-gram whose (k-1)-prefix is absent from the
  references is absent too) and contributes ``min(count, max reference count)``;
* Self-BLEU (leave-one-out): per k-gram the largest per-sample count, how many samples reach it and the
  largest count below it. Removing sample ``i`` is then O(1): the largest count among the *other*
  samples is the second-largest overall if sample ``i`` is the unique maximum, else the maximum;
* the closest reference length is a bisection over the sorted distinct lengths (leave-one-out: a length
  is removed only if sample ``i`` is its sole owner), cached per hypothesis length;
* the final per-sentence formula (logs, ``fsum``, ``exp``) runs in plain Python with ``math`` so every
  float operation is nltk's. Several orders share all the work (``bleu_multi``/``self_bleu_multi``), so
  BLEU-2..5 costs about as much as BLEU-5 alone. The clipped counts are exact integers, hence results
  are identical to nltk's, not merely close. Cost is ``O(T log T)`` for ``T`` tokens; no ``num_workers``
  is offered because a full 10k x 10k BLEU-2..5 plus Self-BLEU-2..5 already takes well under a second.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from itertools import chain, repeat
from numbers import Integral

import numpy as np

__all__ = [
    "NLTK_EPSILON",
    "ReferenceBleu",
    "bleu",
    "bleu_multi",
    "bleu_per_hypothesis",
    "bleu_per_hypothesis_multi",
    "self_bleu",
    "self_bleu_multi",
    "self_bleu_per_sample",
    "self_bleu_per_sample_multi",
]

Sentence = Sequence[Hashable]

NLTK_EPSILON = 0.1
"""Epsilon of ``nltk.translate.bleu_score.SmoothingFunction().method1`` (added to zero numerators)."""


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------
def _as_sentences(sentences: Iterable[Sentence], name: str) -> list[Sequence[Hashable]]:
    """Materialise ``sentences`` as a list of sliceable token sequences (lists/tuples kept as they are)."""
    if isinstance(sentences, (str, bytes)):
        raise TypeError(f"{name} must be a list of token lists, got a string; tokenize it first")
    out: list[Sequence[Hashable]] = []
    for sent in sentences:
        if isinstance(sent, (str, bytes)):
            raise TypeError(f"{name} must be a list of token lists, got a string element {sent!r:.40}")
        out.append(sent if isinstance(sent, (list, tuple)) else list(sent))
    return out


def _check_orders(orders: int | Iterable[int]) -> tuple[int, ...]:
    """Validate BLEU orders and return them as a tuple of distinct ints in the given order."""
    if isinstance(orders, Integral):
        orders = (orders,)
    result: list[int] = []
    for n in orders:
        if isinstance(n, bool) or not isinstance(n, Integral) or n < 1:
            raise ValueError(f"BLEU order must be a positive int, got {n!r}")
        n = int(n)
        if n not in result:
            result.append(n)
    if not result:
        raise ValueError("at least one BLEU order is required")
    return tuple(result)


def _encode(
    sents: list[Sequence[Hashable]], vocab: dict[Hashable, int] | None = None
) -> tuple[dict[Hashable, int], np.ndarray, np.ndarray]:
    """Flatten sentences to integer token ids.

    Args:
        sents: token sequences.
        vocab: token -> id map to use (tokens missing from it get id ``-1``); built from ``sents`` if None.

    Returns:
        ``(vocab, ids, lens)``: the vocabulary, the concatenated ids (int64) and the sentence lengths.
    """
    flat = list(chain.from_iterable(sents))
    if vocab is None:
        vocab = {tok: i for i, tok in enumerate(dict.fromkeys(flat))}
        ids = np.fromiter(map(vocab.__getitem__, flat), dtype=np.int64, count=len(flat))
    else:
        ids = np.fromiter(map(vocab.get, flat, repeat(-1)), dtype=np.int64, count=len(flat))
    lens = np.fromiter(map(len, sents), dtype=np.int64, count=len(sents))
    return vocab, ids, lens


def _layout(lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sentence index of every flat position and the number of tokens from it to its sentence end."""
    sid = np.repeat(np.arange(len(lens), dtype=np.int64), lens)
    starts = np.cumsum(lens) - lens
    remaining = lens[sid] - (np.arange(len(sid), dtype=np.int64) - starts[sid])
    return sid, remaining


def _check_size(num_tokens: int, vocab_size: int, num_sents: int) -> None:
    """Integer codes are ``< num_tokens * max(vocab_size, num_sents)``; refuse inputs that overflow int64."""
    if num_tokens * max(vocab_size, num_sents, 1) >= 2**62:
        raise ValueError("corpus too large for int64 n-gram codes")


def _pair_counts(ranks: np.ndarray, sid: np.ndarray, num_sents: int) -> tuple[np.ndarray, ...]:
    """Count every (k-gram, sentence) pair.

    Returns:
        ``(gram, sent, count, group_starts)`` sorted by gram then sentence, where ``group_starts`` are the
        indices where a new gram begins.
    """
    pairs, counts = np.unique(ranks * num_sents + sid, return_counts=True)
    gram = pairs // num_sents
    sent = pairs - gram * num_sents
    group_starts = np.flatnonzero(np.concatenate(([True], gram[1:] != gram[:-1])))
    return gram, sent, counts, group_starts


def _closest_length(sorted_lens: Sequence[int], hyp_len: int) -> int:
    """nltk's ``closest_ref_length`` on the sorted distinct lengths: nearest, ties to the shorter one."""
    i = bisect_left(sorted_lens, hyp_len)
    if i == len(sorted_lens):
        return sorted_lens[-1]
    hi = sorted_lens[i]
    if i == 0 or hi - hyp_len < hyp_len - sorted_lens[i - 1]:
        return hi
    return sorted_lens[i - 1]


def _scores(
    numerators: list[list[int]],
    hyp_lens: list[int],
    ref_lens: list[int],
    orders: tuple[int, ...],
) -> dict[int, list[float]]:
    """Turn clipped counts into nltk's smoothed sentence BLEU for every requested order.

    Args:
        numerators: ``numerators[k - 1][j]`` is the clipped k-gram count of hypothesis ``j`` for
            ``k = 1..max(orders)``.
        hyp_lens: hypothesis lengths.
        ref_lens: closest reference length of each hypothesis.
        orders: BLEU orders to return.

    Returns:
        ``{n: [score of hypothesis j for j in range(len(hyp_lens))]}``.
    """
    log, exp, fsum = math.log, math.exp, math.fsum
    max_order = max(orders)
    plan = [(n, 1 / n, []) for n in orders]  # same weight value nltk gets from (1 / n,) * n
    unigram = numerators[0]
    for j, hyp_len in enumerate(hyp_lens):
        if unigram[j] == 0:  # nltk: "no matching n-grams" -> 0 (covers the empty hypothesis)
            for _, _, out in plan:
                out.append(0.0)
            continue
        logs = []
        for k in range(1, max_order + 1):
            num = numerators[k - 1][j]
            den = hyp_len - k + 1
            if den < 1:
                den = 1
            # float(Fraction(num, den)) == num / den; method1: (0 + epsilon) / den
            logs.append(log(num / den if num else NLTK_EPSILON / den))
        ref_len = ref_lens[j]
        bp = 1.0 if hyp_len > ref_len else exp(1 - ref_len / hyp_len)
        for n, w, out in plan:
            out.append(bp * exp(fsum([w * lp for lp in logs[:n]])))
    return {n: out for n, _, out in plan}


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


# ----------------------------------------------------------------------------------------------------
# BLEU against a fixed reference corpus
# ----------------------------------------------------------------------------------------------------
class ReferenceBleu:
    """Reference-corpus statistics computed once, reusable for many hypothesis sets.

    Useful in a training loop that evaluates fresh samples against the same test set every epoch.

    Args:
        references: the reference corpus, a non-empty list of token lists (tokens must be hashable).
        max_order: the largest BLEU order that will be requested (statistics are built for
            orders ``1..max_order``; a larger order raises ``ValueError`` in :meth:`score`).

    Raises:
        ValueError: if ``references`` is empty or ``max_order < 1``.
    """

    def __init__(self, references: Iterable[Sentence], max_order: int = 5) -> None:
        refs = _as_sentences(references, "references")
        if not refs:
            raise ValueError("references must contain at least one sentence (nltk fails on an empty list)")
        (self.max_order,) = _check_orders(max_order)
        self.num_references = len(refs)
        self._vocab, tok, lens = _encode(refs)
        self._base = len(self._vocab) + 1  # V in the k-gram codes
        _check_size(len(tok), self._base, len(refs))
        self._sorted_lens = sorted(set(lens.tolist()))
        # per order k: sorted distinct k-gram codes of the references and the max count in one reference
        self._codes: list[np.ndarray] = []
        self._max_counts: list[np.ndarray] = []
        sid, remaining = _layout(lens)
        pos = np.arange(len(tok), dtype=np.int64)  # start positions of the current k-grams
        codes = tok
        ranks = tok
        for k in range(1, self.max_order + 1):
            if k > 1:
                keep = remaining[pos] >= k
                pos = pos[keep]
                codes = ranks[keep] * self._base + tok[pos + k - 1]
            uniq, ranks = np.unique(codes, return_inverse=True)
            ranks = ranks.reshape(-1)
            max_counts = np.zeros(len(uniq), dtype=np.int64)
            if len(uniq):
                _, _, counts, starts = _pair_counts(ranks, sid[pos], len(refs))
                max_counts = np.maximum.reduceat(counts, starts)
            self._codes.append(uniq)
            self._max_counts.append(max_counts)

    def _clipped(self, hyps: list[Sequence[Hashable]], top: int) -> list[list[int]]:
        """Clipped k-gram counts ``out[k - 1][j]`` of every hypothesis for ``k = 1..top``."""
        _, tok, lens = _encode(hyps, self._vocab)
        num_hyps = len(hyps)
        _check_size(len(tok), self._base, num_hyps)
        sid, remaining = _layout(lens)
        pos = np.arange(len(tok), dtype=np.int64)
        ranks = tok  # rank of the k-gram at each position among the reference k-grams, -1 if absent
        out = []
        for k in range(1, top + 1):
            uniq, max_counts = self._codes[k - 1], self._max_counts[k - 1]
            if k == 1:
                codes = tok
            else:
                keep = remaining[pos] >= k
                pos = pos[keep]
                prev, last = ranks[keep], tok[pos + k - 1]
                codes = np.where((prev >= 0) & (last >= 0), prev * self._base + last, -1)
            if len(uniq) == 0 or len(codes) == 0:
                ranks = np.full(len(codes), -1, dtype=np.int64)
                out.append([0] * num_hyps)
                continue
            idx = np.minimum(np.searchsorted(uniq, codes), len(uniq) - 1)
            found = (uniq[idx] == codes) & (codes >= 0)
            ranks = np.where(found, idx, -1)
            hit = np.flatnonzero(found)
            if len(hit) == 0:
                out.append([0] * num_hyps)
                continue
            gram, sent, counts, _ = _pair_counts(ranks[hit], sid[pos[hit]], num_hyps)
            clipped = np.minimum(counts, max_counts[gram])
            out.append(np.bincount(sent, weights=clipped, minlength=num_hyps).astype(np.int64).tolist())
        return out

    def score(
        self, hypotheses: Iterable[Sentence], orders: int | Iterable[int] = (2, 3, 4, 5)
    ) -> dict[int, list[float]]:
        """Per-hypothesis BLEU for several orders at once.

        Args:
            hypotheses: list of token lists (may be empty; an empty hypothesis scores 0.0).
            orders: BLEU order(s) ``n``, each ``1 <= n <= max_order``.

        Returns:
            ``{n: scores}`` where ``scores[j]`` equals nltk's ``sentence_bleu(references, hypotheses[j],
            weights=(1/n,)*n, smoothing_function=SmoothingFunction().method1)``.
        """
        orders = _check_orders(orders)
        if max(orders) > self.max_order:
            raise ValueError(f"order {max(orders)} > max_order={self.max_order} of this ReferenceBleu")
        hyps = _as_sentences(hypotheses, "hypotheses")
        top = max(orders)
        numerators = self._clipped(hyps, top)
        hyp_lens = [len(h) for h in hyps]
        cache: dict[int, int] = {}
        ref_lens = []
        for h in hyp_lens:
            r = cache.get(h)
            if r is None:
                r = cache[h] = _closest_length(self._sorted_lens, h)
            ref_lens.append(r)
        return _scores(numerators, hyp_lens, ref_lens, orders)


def bleu_per_hypothesis_multi(
    hypotheses: Iterable[Sentence],
    references: Iterable[Sentence],
    orders: int | Iterable[int] = (2, 3, 4, 5),
) -> dict[int, list[float]]:
    """Per-hypothesis BLEU-n for several orders, sharing all n-gram work.

    Args:
        hypotheses: list of token lists.
        references: non-empty list of token lists; every hypothesis is scored against all of them.
        orders: BLEU order(s).

    Returns:
        ``{n: [sentence_bleu(references, hyp, weights=(1/n,)*n, smoothing_function=method1) for hyp]}``.

    Raises:
        ValueError: if ``references`` is empty or an order is not a positive int.
    """
    orders = _check_orders(orders)
    return ReferenceBleu(references, max_order=max(orders)).score(hypotheses, orders)


def bleu_per_hypothesis(
    hypotheses: Iterable[Sentence], references: Iterable[Sentence], n: int = 4
) -> list[float]:
    """Per-hypothesis BLEU-n, each hypothesis against the whole reference list.

    Args:
        hypotheses: list of token lists.
        references: non-empty list of token lists.
        n: BLEU order (uniform weights ``(1/n,)*n``).

    Returns:
        ``scores[j] == nltk.translate.bleu_score.sentence_bleu(references, hypotheses[j],
        weights=(1/n,)*n, smoothing_function=SmoothingFunction().method1)`` (as a float; nltk's
        integer ``0`` is returned as ``0.0``).

    Raises:
        ValueError: if ``references`` is empty or ``n < 1``.
    """
    return bleu_per_hypothesis_multi(hypotheses, references, (n,))[n]


def bleu_multi(
    hypotheses: Iterable[Sentence],
    references: Iterable[Sentence],
    orders: int | Iterable[int] = (2, 3, 4, 5),
) -> dict[int, float]:
    """Text-GAN BLEU for several orders at once (e.g. BLEU-2..5).

    Args:
        hypotheses: non-empty list of token lists.
        references: non-empty list of token lists.
        orders: BLEU order(s).

    Returns:
        ``{n: mean over hypotheses of sentence_bleu(references, hyp, weights=(1/n,)*n,
        smoothing_function=SmoothingFunction().method1)}`` (mean computed with ``math.fsum``).

    Raises:
        ValueError: if ``hypotheses`` or ``references`` is empty or an order is invalid.
    """
    per = bleu_per_hypothesis_multi(hypotheses, references, orders)
    if not next(iter(per.values())):
        raise ValueError("hypotheses must contain at least one sentence")
    return {n: _mean(v) for n, v in per.items()}


def bleu(hypotheses: Iterable[Sentence], references: Iterable[Sentence], n: int = 4) -> float:
    """Text-GAN BLEU-n: mean sentence BLEU of the hypotheses, each against the whole reference list.

    Args:
        hypotheses: non-empty list of token lists.
        references: non-empty list of token lists.
        n: BLEU order (uniform weights ``(1/n,)*n``).

    Returns:
        Mean over hypotheses of nltk's ``sentence_bleu(references, hyp, weights=(1/n,)*n,
        smoothing_function=SmoothingFunction().method1)``.

    Raises:
        ValueError: if ``hypotheses`` or ``references`` is empty or ``n < 1``.
    """
    return bleu_multi(hypotheses, references, (n,))[n]


# ----------------------------------------------------------------------------------------------------
# Self-BLEU (leave-one-out)
# ----------------------------------------------------------------------------------------------------
def _self_clipped(samples: list[Sequence[Hashable]], top: int) -> list[list[int]]:
    """Clipped k-gram counts ``out[k - 1][i]`` of each sample against all the other samples, k = 1..top."""
    vocab, tok, lens = _encode(samples)
    num = len(samples)
    base = len(vocab) + 1
    _check_size(len(tok), base, num)
    sid, remaining = _layout(lens)
    pos = np.arange(len(tok), dtype=np.int64)
    codes = ranks = tok
    out = []
    for k in range(1, top + 1):
        if k > 1:
            keep = remaining[pos] >= k
            pos = pos[keep]
            codes = ranks[keep] * base + tok[pos + k - 1]
        if len(codes) == 0:
            ranks = codes
            out.append([0] * num)
            continue
        _, ranks = np.unique(codes, return_inverse=True)
        ranks = ranks.reshape(-1)
        _, sent, counts, starts = _pair_counts(ranks, sid[pos], num)
        sizes = np.diff(np.append(starts, len(counts)))
        first = np.maximum.reduceat(counts, starts)  # largest per-sample count of each k-gram
        first_rep = np.repeat(first, sizes)
        is_first = counts == first_rep
        n_first = np.add.reduceat(is_first.astype(np.int64), starts)
        below = np.maximum.reduceat(np.where(is_first, 0, counts), starts)  # largest count below it
        second = np.where(n_first > 1, first, below)  # second largest, counting ties
        # largest count among the other samples: drop one copy of the maximum if this sample holds it
        others_max = np.where(is_first, np.repeat(second, sizes), first_rep)
        clipped = np.minimum(counts, others_max)
        out.append(np.bincount(sent, weights=clipped, minlength=num).astype(np.int64).tolist())
    return out


def _self_closest_lengths(lens: list[int]) -> list[int]:
    """Leave-one-out closest reference length of each sample (nltk tie rule: the shorter one)."""
    multiplicity = Counter(lens)
    distinct = sorted(multiplicity)
    cache: dict[int, int] = {}
    out = []
    for h in lens:
        r = cache.get(h)
        if r is None:
            if multiplicity[h] > 1:
                r = h
            else:  # h occurs only in this sample: nearest among the other distinct lengths
                i = bisect_left(distinct, h)  # distinct[i] == h
                others = distinct[:i] + distinct[i + 1 :]
                r = _closest_length(others, h)
            cache[h] = r
        out.append(r)
    return out


def self_bleu_per_sample_multi(
    samples: Iterable[Sentence], orders: int | Iterable[int] = (2, 3, 4, 5)
) -> dict[int, list[float]]:
    """Per-sample Self-BLEU for several orders at once, sharing all n-gram work.

    Args:
        samples: list of at least two token lists.
        orders: BLEU order(s).

    Returns:
        ``{n: scores}`` with ``scores[i] == sentence_bleu(samples[:i] + samples[i + 1:], samples[i],
        weights=(1/n,)*n, smoothing_function=SmoothingFunction().method1)``.

    Raises:
        ValueError: if there are fewer than two samples or an order is invalid.
    """
    orders = _check_orders(orders)
    sents = _as_sentences(samples, "samples")
    if len(sents) < 2:
        raise ValueError("Self-BLEU needs at least two samples (each is scored against the others)")
    numerators = _self_clipped(sents, max(orders))
    lens = [len(s) for s in sents]
    return _scores(numerators, lens, _self_closest_lengths(lens), orders)


def self_bleu_per_sample(samples: Iterable[Sentence], n: int = 4) -> list[float]:
    """Per-sample Self-BLEU-n (each sample against all the other samples).

    Args:
        samples: list of at least two token lists.
        n: BLEU order.

    Returns:
        ``scores[i] == sentence_bleu(samples[:i] + samples[i + 1:], samples[i], weights=(1/n,)*n,
        smoothing_function=SmoothingFunction().method1)``.

    Raises:
        ValueError: if there are fewer than two samples or ``n < 1``.
    """
    return self_bleu_per_sample_multi(samples, (n,))[n]


def self_bleu_multi(
    samples: Iterable[Sentence], orders: int | Iterable[int] = (2, 3, 4, 5)
) -> dict[int, float]:
    """Self-BLEU for several orders at once (e.g. Self-BLEU-2..5).

    Args:
        samples: list of at least two token lists.
        orders: BLEU order(s).

    Returns:
        ``{n: mean over i of sentence_bleu(samples[:i] + samples[i + 1:], samples[i], weights=(1/n,)*n,
        smoothing_function=SmoothingFunction().method1)}``.

    Raises:
        ValueError: if there are fewer than two samples or an order is invalid.
    """
    return {n: _mean(v) for n, v in self_bleu_per_sample_multi(samples, orders).items()}


def self_bleu(samples: Iterable[Sentence], n: int = 4) -> float:
    """Self-BLEU-n: mean BLEU-n of each sample against all the other samples (leave-one-out).

    Args:
        samples: list of at least two token lists.
        n: BLEU order.

    Returns:
        Mean over ``i`` of ``sentence_bleu(samples[:i] + samples[i + 1:], samples[i], weights=(1/n,)*n,
        smoothing_function=SmoothingFunction().method1)``. The sample itself is never a reference;
        an identical duplicate at another index is.

    Raises:
        ValueError: if there are fewer than two samples or ``n < 1``.
    """
    return self_bleu_multi(samples, (n,))[n]
