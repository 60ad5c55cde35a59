"""Response metrics for conditional generation (a chatbot answering held-out contexts).

Protocol (every test pair counts; one generated response per test context):

* ``bleu1`` / ``bleu2`` / ``bleu4``: the mean over test pairs of the sentence BLEU-n of the generated response
  against that context's single reference response (nltk's ``sentence_bleu`` with uniform weights and
  ``SmoothingFunction().method1``, computed exactly by :mod:`seqgan.metrics.bleu`). Single-reference BLEU of
  open-domain replies is low for every model (Liu et al. 2016); read it relative to the other rows.
* ``distinct1`` / ``distinct2``: distinct n-grams / all n-grams over the generated responses (Li et al. 2016).
* ``generic_share``: share of responses equal to one of the ``top_k`` (10) most frequent responses.
* ``avg_len``: mean tokens per response.
* ``nll_test``: mean per-token NLL of the reference responses given their contexts (nats, EOS included).
* ``adversarial_success`` (Li et al. 2017, "AdverSuc"): a separately trained *evaluator* discriminator
  (:func:`train_evaluator`, a fresh :class:`~seqgan.models.pair_discriminator.PairDiscriminator` trained on
  training contexts with their human response vs the model's response) is run on the test contexts; the value is
  its error rate on the generated responses (the share it takes for human). ``evaluator_acc_human`` is its
  accuracy on the human test responses, ``evaluator_error`` the mean error over both (0.5 = indistinguishable).

Tokens: the run's tokenizer's tokens for both sides (``<unk>`` in a response never matches a reference word).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from seqgan.metrics.bleu import bleu_per_hypothesis_multi
from seqgan.metrics.diversity import average_length, distinct_n, generic_reply_share
from seqgan.models.pair_discriminator import PairDiscriminator
from seqgan.trainers.conditional import pair_discriminator_step

__all__ = ["response_metrics", "pair_bleu", "train_evaluator", "evaluator_scores", "RESPONSE_KEYS"]

RESPONSE_KEYS = [
    "bleu1",
    "bleu2",
    "bleu4",
    "distinct1",
    "distinct2",
    "generic_share",
    "avg_len",
    "nll_test",
    "adversarial_success",
]


def pair_bleu(
    hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[str]], orders=(1, 2, 4)
) -> dict[int, float]:
    """Mean sentence BLEU-n of ``hypotheses[i]`` against the single reference ``references[i]``.

    An empty reference scores 0 for its pair (BLEU is undefined there; nltk would fail).
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    if not hypotheses:
        raise ValueError("pair_bleu needs at least one pair")
    sums = {n: [] for n in orders}
    for hyp, ref in zip(hypotheses, references, strict=True):
        if not ref:
            for n in orders:
                sums[n].append(0.0)
            continue
        per = bleu_per_hypothesis_multi([list(hyp)], [list(ref)], orders)
        for n in orders:
            sums[n].append(per[n][0])
    return {n: math.fsum(v) / len(v) for n, v in sums.items()}


def response_metrics(
    hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[str]], top_k: int = 10
) -> dict[str, float]:
    """BLEU-1/2/4 against each pair's reference, distinct-1/2, generic share, average length."""
    b = pair_bleu(hypotheses, references)
    return {
        "bleu1": b[1],
        "bleu2": b[2],
        "bleu4": b[4],
        "distinct1": distinct_n(hypotheses, 1),
        "distinct2": distinct_n(hypotheses, 2),
        "generic_share": generic_reply_share(hypotheses, top_k),
        "avg_len": average_length(hypotheses),
    }


def train_evaluator(
    evaluator: PairDiscriminator,
    contexts: torch.Tensor,
    human: torch.Tensor,
    generated: torch.Tensor,
    epochs: int,
    batch_size: int,
    lr: float,
    rng: torch.Generator,
) -> dict[str, float]:
    """Trains a fresh evaluator on ``(contexts, human)`` vs ``(contexts, generated)`` (same contexts both sides);
    returns the last epoch's mean metrics."""
    opt = torch.optim.Adam(evaluator.parameters(), lr=lr)
    n = contexts.shape[0]
    last: dict[str, float] = {}
    for _ in range(epochs):
        sums: dict[str, float] = {}
        steps = 0
        order = torch.randperm(n, generator=rng)
        for start in range(0, n, batch_size):
            i = order[start : start + batch_size]
            m = pair_discriminator_step(evaluator, opt, contexts[i], human[i], contexts[i], generated[i])
            for k, v in m.items():
                sums[k] = sums.get(k, 0.0) + v
            steps += 1
        last = {k: v / max(steps, 1) for k, v in sums.items()}
    return last


@torch.no_grad()
def evaluator_scores(
    evaluator: PairDiscriminator,
    contexts: torch.Tensor,
    human: torch.Tensor,
    generated: torch.Tensor,
    batch_size: int = 512,
) -> dict[str, float]:
    """``adversarial_success`` (share of generated responses the evaluator calls human), ``evaluator_acc_human``
    and ``evaluator_error`` (mean of the two error rates) on held-out pairs."""
    evaluator.eval()
    fooled, right_human = [], []
    for s in range(0, contexts.shape[0], batch_size):
        c = contexts[s : s + batch_size]
        fooled.append(evaluator(c, generated[s : s + batch_size]) > 0)
        right_human.append(evaluator(c, human[s : s + batch_size]) > 0)
    success = float(torch.cat(fooled).float().mean())
    acc_human = float(torch.cat(right_human).float().mean())
    return {
        "adversarial_success": success,
        "evaluator_acc_human": acc_human,
        "evaluator_error": 0.5 * (success + (1.0 - acc_human)),
    }
