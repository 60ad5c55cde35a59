"""Updates shared by pretraining and the adversarial trainers: the MLE step, the discriminator's BCE step and
its epochs over length-bucketed batches, and held-out discriminator accuracy; the language-model discriminator's
epochs under any of its objectives (:func:`lm_epochs`); RankGAN's ranker update and epochs (:func:`ranker_step`,
:func:`ranker_epochs`); and the discriminator objectives pretraining can run (:data:`PRETRAIN_OBJECTIVES`, named
by each method's :class:`~seqgan.config.Method` entry).

Every update goes through :func:`~seqgan.trainers.base.guarded_update` (NaN/inf never applied; the guard's
policy stops or skips).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from seqgan.losses import (
    discriminator_bce,
    log_rank_scores,
    mediator_loss,
    ranker_loss,
    sentence_cross_entropy,
    sequence_nll,
)
from seqgan.models.base import Generator
from seqgan.trainers.base import NonFiniteGuard, guarded_update

__all__ = [
    "PRETRAIN_OBJECTIVES",
    "PretrainObjective",
    "discriminator_accuracy",
    "discriminator_epochs",
    "discriminator_step",
    "length_batches",
    "lm_epochs",
    "lm_heldout",
    "lm_mixture_objective",
    "lm_real_objective",
    "mle_step",
    "ranker_epochs",
    "ranker_heldout",
    "ranker_step",
]


def mle_step(
    generator: Generator,
    optimizer: torch.optim.Optimizer,
    tokens: torch.Tensor,
    grad_clip: float = 0.0,
    guard: NonFiniteGuard | None = None,
) -> float:
    """One teacher-forced maximum-likelihood update on ``(B, T)`` target sequences (train mode: dropout on).

    The loss is the mean NLL per real token plus the generator's own extra term when it has one
    (``Generator.mle_extra_loss``: LeakGAN's Manager objective on the real sentences).

    Returns:
        The mean NLL per real token, or NaN when the update was skipped (``guard`` with policy ``skip``).
    Raises:
        NonFiniteLossError: a NaN/inf loss or gradient and the guard's policy is ``stop`` (the default).
    """
    guard = guard or NonFiniteGuard("stop")
    generator.train()
    total, count = sequence_nll(generator, tokens)
    nll = total / max(count, 1)  # mean NLL per real token
    extra_loss = getattr(getattr(generator, "module", generator), "mle_extra_loss", None)
    extra = extra_loss(tokens) if extra_loss is not None else None
    loss = nll if extra is None else nll + extra
    stepped, _ = guarded_update(
        loss,
        optimizer,
        generator.parameters(),
        guard,
        "MLE",
        grad_clip,
        what="MLE loss / gradient norm; lower pretrain.lr or check the data",
    )
    return nll.item() if stepped else float("nan")


def discriminator_step(
    discriminator: nn.Module,
    optimizer: torch.optim.Optimizer,
    real: torch.Tensor,
    fake: torch.Tensor,
    guard: NonFiniteGuard | None = None,
) -> dict[str, float]:
    """One binary cross-entropy update on a batch of real and a batch of generated ``(B, T)`` sequences.

    A NaN/inf loss or gradient skips the update, or raises, as ``guard`` says (default: raise).

    Returns:
        ``discriminator/loss``, ``discriminator/acc_real`` and ``discriminator/acc_fake``.
    """
    guard = guard or NonFiniteGuard("stop")
    discriminator.train()
    if real.shape[1:] == fake.shape[1:]:  # one call: larger matrix products, half the per-call work
        logits_real, logits_fake = discriminator(torch.cat([real, fake])).split(
            [real.shape[0], fake.shape[0]]
        )
    else:
        logits_real, logits_fake = discriminator(real), discriminator(fake)
    loss = discriminator_bce(logits_real, logits_fake)
    guarded_update(
        loss,
        optimizer,
        discriminator.parameters(),
        guard,
        "discriminator",
        what="discriminator loss / gradient; lower the discriminator's learning rate",
    )
    return {
        "discriminator/loss": loss.item(),
        "discriminator/acc_real": float((logits_real > 0).float().mean()),
        "discriminator/acc_fake": float((logits_fake < 0).float().mean()),
    }


def length_batches(
    tokens: torch.Tensor | tuple[torch.Tensor, ...],
    num: int,
    batch_size: int,
    rng: torch.Generator,
    lengths_of=None,
    pool_batches: int = 50,
) -> list:
    """Index batches over ``num`` rows of ``tokens`` ``(N, T)`` drawn in a seeded random order.

    With ``lengths_of`` (``tokens -> (N,)`` lengths), rows are bucketed: the random order is cut into pools of
    ``pool_batches`` batches, each pool is sorted by length (stable) and cut into batches, and the batches are
    shuffled. Every row is still used once per call and each batch is a random draw from its pool's lengths,
    but a batch's longest row is close to its shortest. Without it, plain consecutive slices of the order.

    ``tokens`` may be a tuple of tensors (real and generated sentences): each gets its own random order, and the
    result is a list of tuples of index batches, one per tensor; bucketed, the i-th shortest batches of each
    tensor's pool go together, so the batches of a tuple have similar lengths too.
    """
    parts = tokens if isinstance(tokens, tuple) else (tokens,)
    orders = [torch.randperm(t.shape[0], generator=rng)[:num] for t in parts]
    lengths = None if lengths_of is None else [lengths_of(t) for t in parts]
    if lengths is None or any(x is None for x in lengths):
        groups = list(zip(*(order.split(batch_size) for order in orders), strict=True))
    else:
        groups = []
        for pools in zip(*(order.split(batch_size * pool_batches) for order in orders), strict=True):
            ranked = [
                p[torch.argsort(x[p], stable=True)].split(batch_size)
                for p, x in zip(pools, lengths, strict=True)
            ]
            groups.extend(zip(*ranked, strict=True))
        groups = [groups[i] for i in torch.randperm(len(groups), generator=rng).tolist()]
    return groups if isinstance(tokens, tuple) else [g[0] for g in groups]


def discriminator_epochs(
    discriminator: nn.Module,
    optimizer: torch.optim.Optimizer,
    real: torch.Tensor,
    fake: torch.Tensor,
    epochs: int,
    batch_size: int,
    rng: torch.Generator,
    guard: NonFiniteGuard | None = None,
    by_length: bool = False,
) -> dict[str, float]:
    """``epochs`` passes over (real, fake) pairs of batches in a seeded order; returns the mean metrics
    (skipped non-finite steps, see ``guard``, count in the loss mean as NaN).

    ``by_length``: batches of similar lengths (see :func:`length_batches`), so that the discriminator, which
    skips the all-padding columns of a batch, computes fewer padded windows; the real and the generated batches
    are drawn independently either way.
    """
    n = min(real.shape[0], fake.shape[0])
    lengths = getattr(getattr(discriminator, "module", discriminator), "lengths", None)  # DDP wraps it
    sums: dict[str, float] = {}
    count = 0
    for _ in range(epochs):
        for real_idx, fake_idx in length_batches(
            (real, fake), n, batch_size, rng, lengths if by_length else None
        ):
            r, f = real[real_idx], fake[fake_idx]
            for k, v in discriminator_step(discriminator, optimizer, r, f, guard).items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
    return {k: v / max(count, 1) for k, v in sums.items()}


@torch.no_grad()
def discriminator_accuracy(
    discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor, batch_size: int = 512
) -> dict[str, float]:
    """Eval-mode accuracy on real and on generated sequences (``discriminator/eval_acc_real`` / ``_fake``)."""
    was_training = discriminator.training
    discriminator.eval()
    try:
        acc_real = torch.cat(
            [discriminator(real[i : i + batch_size]) > 0 for i in range(0, len(real), batch_size)]
        )
        acc_fake = torch.cat(
            [discriminator(fake[i : i + batch_size]) < 0 for i in range(0, len(fake), batch_size)]
        )
    finally:
        discriminator.train(was_training)
    return {
        "discriminator/eval_acc_real": float(acc_real.float().mean()),
        "discriminator/eval_acc_fake": float(acc_fake.float().mean()),
    }


# ---------------------------------------------------------------------------------------------------------
# The language-model discriminator (discriminator.kind=lm): objectives and epochs

LMObjective = Callable[[nn.Module, torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, dict[str, float]]]
"""``(lm, real (B, T), fake (B', T) or None) -> (scalar loss with gradient, metrics)``."""


def lm_real_objective(lm: nn.Module, real: torch.Tensor, fake: torch.Tensor | None = None):
    """Maximum likelihood on real sentences (DPGAN's pretraining): the mean NLL per real token."""
    mask = lm.mask(real)
    nll = -lm.token_log_probs(real, mask)[mask].mean()
    return nll, {"discriminator/nll_real": nll.item()}


def lm_mixture_objective(lm: nn.Module, real: torch.Tensor, fake: torch.Tensor):
    """CoT's mediator loss on the balanced mixture of real and generated sentences
    (:func:`~seqgan.losses.mediator_loss`), with the per-token NLL of each half as metrics."""
    mask_r, mask_f = lm.mask(real), lm.mask(fake)
    lp_r, lp_f = lm.token_log_probs(real, mask_r), lm.token_log_probs(fake, mask_f)
    loss = mediator_loss(lp_r, mask_r, lp_f, mask_f)
    return loss, {
        "discriminator/loss": loss.item(),
        "discriminator/nll_real": float(-lp_r.detach()[mask_r].mean()),
        "discriminator/nll_fake": float(-lp_f.detach()[mask_f].mean()),
    }


def lm_epochs(
    lm: nn.Module,
    optimizer: torch.optim.Optimizer,
    real: torch.Tensor,
    fake: torch.Tensor | None,
    epochs: int,
    batch_size: int,
    rng: torch.Generator,
    guard: NonFiniteGuard | None,
    objective: LMObjective,
    grad_clip: float = 0.0,
) -> dict[str, float]:
    """``epochs`` passes of ``objective`` over batches of ``real`` ``(N, T)`` (and, when given, as many rows of
    ``fake`` ``(M, T)``, drawn independently) in ``rng``'s order, in train mode; returns the mean metrics.

    Each batch is one guarded update (``guard``: NaN/inf never applied) clipped to ``grad_clip`` (0: none).
    """
    guard = guard or NonFiniteGuard("stop")
    lm.train()
    n = real.shape[0] if fake is None else min(real.shape[0], fake.shape[0])
    sums: dict[str, float] = {}
    count = 0
    for _ in range(epochs):
        groups = length_batches(real if fake is None else (real, fake), n, batch_size, rng)
        for group in groups:
            r, f = (real[group], None) if fake is None else (real[group[0]], fake[group[1]])
            loss, metrics = objective(lm, r, f)
            guarded_update(
                loss, optimizer, lm.parameters(), guard, "discriminator", grad_clip,
                what="language-model discriminator loss / gradient; lower the discriminator's learning rate",
            )  # fmt: skip
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
    return {k: v / max(count, 1) for k, v in sums.items()}


@torch.no_grad()
def lm_heldout(
    lm: nn.Module, real: torch.Tensor, fake: torch.Tensor, batch_size: int = 512
) -> dict[str, float]:
    """Eval-mode mean cross-entropy per sentence (its mean per-token NLL) of held-out real and of generated
    sentences: ``discriminator/eval_nll_real``, ``discriminator/eval_nll_fake``."""
    was_training = lm.training
    lm.eval()
    try:
        out = {}
        for name, rows in (("real", real), ("fake", fake)):
            ce = [
                sentence_cross_entropy(
                    lm.token_log_probs(rows[i : i + batch_size]), lm.mask(rows[i : i + batch_size])
                )
                for i in range(0, len(rows), batch_size)
            ]
            out[f"discriminator/eval_nll_{name}"] = float(torch.cat(ce).mean())
    finally:
        lm.train(was_training)
    return out


# ---------------------------------------------------------------------------------------------------------
# RankGAN's ranker (discriminator.kind=ranker): its update, epochs and held-out rank scores


def ranker_step(
    ranker: nn.Module,
    optimizer: torch.optim.Optimizer,
    real: torch.Tensor,
    fake: torch.Tensor,
    references: torch.Tensor,
    gamma: float,
    guard: NonFiniteGuard | None = None,
    grad_clip: float = 0.0,
) -> dict[str, float]:
    """One update of RankGAN's ranker on :func:`~seqgan.losses.ranker_loss` (train mode): each real row ranked
    among the generated rows, each generated row among the real rows, against the reference set.

    Args:
        ranker: :class:`~seqgan.models.ranker.Ranker` (or its DDP wrapper): ``(N, T)`` ids -> ``(N, F)``.
        optimizer: the ranker's optimizer.
        real: ``(B, T)`` real sentences; fake: ``(B', T)`` generated ones.
        references: ``(U, T)`` real reference sentences (not among ``real``).
        gamma: inverse temperature of the rank softmax.
        guard: what a NaN/inf loss or gradient does (default: stop).
        grad_clip: clip the gradient norm to this (0: no clipping).
    Returns:
        ``discriminator/loss``, ``discriminator/log_rank_real`` and ``discriminator/log_rank_fake`` (mean log rank
        scores of the real and generated rows).
    """
    guard = guard or NonFiniteGuard("stop")
    ranker.train()
    feats = ranker(torch.cat([real, fake, references]))  # one call: (B + B' + U, F)
    f_real, f_fake, f_ref = feats.split([real.shape[0], fake.shape[0], references.shape[0]])
    loss, log_r_real, log_r_fake = ranker_loss(f_real, f_fake, f_ref, gamma)
    guarded_update(
        loss, optimizer, ranker.parameters(), guard, "discriminator", grad_clip,
        what="ranker loss / gradient; lower the discriminator's learning rate or rankgan.gamma",
    )  # fmt: skip
    return {
        "discriminator/loss": loss.item(),
        "discriminator/log_rank_real": float(log_r_real.detach().mean()),
        "discriminator/log_rank_fake": float(log_r_fake.detach().mean()),
    }


def draw_references(num_rows: int, exclude: torch.Tensor, num: int, rng: torch.Generator) -> torch.Tensor:
    """``num`` row indices drawn without replacement from ``range(num_rows)`` minus ``exclude``, in ``rng``'s
    order (a reference set apart from the rows being ranked).

    Raises:
        ValueError: fewer than ``num`` rows remain.
    """
    free = torch.ones(num_rows, dtype=torch.bool)
    free[exclude.cpu()] = False
    candidates = free.nonzero().squeeze(1)
    if candidates.numel() < num:
        raise ValueError(
            f"a reference set of {num} real sentences apart from the {exclude.numel()} ranked ones needs at least "
            f"{num + exclude.numel()} real rows, got {num_rows}: lower rankgan.num_references or the batch size, "
            "or draw more real sentences per round"
        )
    return candidates[torch.randperm(candidates.numel(), generator=rng)[:num]]


def ranker_epochs(
    ranker: nn.Module,
    optimizer: torch.optim.Optimizer,
    real: torch.Tensor,
    fake: torch.Tensor,
    epochs: int,
    batch_size: int,
    rng: torch.Generator,
    guard: NonFiniteGuard | None = None,
    by_length: bool = False,
    *,
    num_references: int,
    gamma: float,
) -> dict[str, float]:
    """``epochs`` passes of :func:`ranker_step` over (real, generated) pairs of batches in ``rng``'s order; each
    batch's reference set is ``num_references`` other rows of ``real`` (:func:`draw_references`). Returns the mean
    metrics. ``by_length``: batches of similar lengths (:func:`length_batches`)."""
    n = min(real.shape[0], fake.shape[0])
    lengths = getattr(getattr(ranker, "module", ranker), "lengths", None)  # DDP wraps it
    sums: dict[str, float] = {}
    count = 0
    for _ in range(epochs):
        for real_idx, fake_idx in length_batches(
            (real, fake), n, batch_size, rng, lengths if by_length else None
        ):
            refs = draw_references(real.shape[0], real_idx, num_references, rng).to(real.device)
            metrics = ranker_step(ranker, optimizer, real[real_idx], fake[fake_idx], real[refs], gamma, guard)
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
    return {k: v / max(count, 1) for k, v in sums.items()}


@torch.no_grad()
def ranker_heldout(
    ranker: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    batch_size: int = 512,
    *,
    num_references: int,
    gamma: float,
) -> dict[str, float]:
    """Eval-mode rank scores on held-out sentences: the first ``num_references`` rows of ``real`` are the
    reference set, the other real rows are ranked among ``fake`` and ``fake`` among them.

    Returns:
        ``discriminator/eval_log_rank_real``, ``discriminator/eval_log_rank_fake`` (mean log rank scores) and
        ``discriminator/eval_rank_acc``: the share of (real, generated) pairs whose real sentence has the higher
        mean cosine similarity to the references.
    """
    if real.shape[0] <= num_references:
        return {}
    was_training = ranker.training
    ranker.eval()
    try:
        feats = torch.cat(
            [ranker(x[i : i + batch_size]) for x in (real, fake) for i in range(0, len(x), batch_size)]
        )
    finally:
        ranker.train(was_training)
    f_ref, f_real, f_fake = feats.float().split(
        [num_references, real.shape[0] - num_references, fake.shape[0]]
    )
    refs = torch.nn.functional.normalize(f_ref, dim=-1)
    rel_real = (torch.nn.functional.normalize(f_real, dim=-1) @ refs.t()).mean(dim=1)  # (B,)
    rel_fake = (torch.nn.functional.normalize(f_fake, dim=-1) @ refs.t()).mean(dim=1)  # (B',)
    return {
        "discriminator/eval_log_rank_real": float(log_rank_scores(f_real, f_ref, f_fake, gamma).mean()),
        "discriminator/eval_log_rank_fake": float(log_rank_scores(f_fake, f_ref, f_real, gamma).mean()),
        "discriminator/eval_rank_acc": float((rel_real[:, None] > rel_fake[None, :]).float().mean()),
    }


@dataclass(frozen=True)
class PretrainObjective:
    """How the pretraining stage trains the discriminator of a method (``Method.d_pretrain`` names one)."""

    train: Callable[..., dict[str, float]]
    """``(discriminator, optimizer, real, fake or None, epochs, batch_size, rng, guard, by_length) -> metrics``."""
    needs_samples: bool
    """Whether a round draws fresh generated sentences (``fake`` is None otherwise)."""
    heldout: Callable[..., dict[str, float]]
    """``(discriminator, held-out real rows, fresh samples) -> metrics`` after each round."""
    settings: Callable[[Any], dict] = lambda cfg: {}
    """``config -> keyword arguments`` that ``train`` and ``heldout`` also take (the method's own settings)."""


def _lm_round(objective: LMObjective) -> Callable[..., dict[str, float]]:
    def train(disc, optimizer, real, fake, epochs, batch_size, rng, guard, by_length=False):
        return lm_epochs(disc, optimizer, real, fake, epochs, batch_size, rng, guard, objective)

    return train


PRETRAIN_OBJECTIVES: dict[str, PretrainObjective] = {
    "bce": PretrainObjective(discriminator_epochs, True, discriminator_accuracy),
    "lm_real": PretrainObjective(_lm_round(lm_real_objective), False, lm_heldout),
    "lm_mix": PretrainObjective(_lm_round(lm_mixture_objective), True, lm_heldout),
    "rank": PretrainObjective(
        ranker_epochs,
        True,
        ranker_heldout,
        lambda cfg: {"num_references": cfg.rankgan.num_references, "gamma": cfg.rankgan.gamma},
    ),
}
"""The discriminator objectives of pretraining: ``bce`` (real against generated, a classifier), ``lm_real``
(a language model by maximum likelihood on real sentences: DPGAN), ``lm_mix`` (a language model on the balanced
mixture of real and generated sentences: CoT's mediator), ``rank`` (RankGAN's ranker: real sentences ranked high
among generated ones, generated ones low among real ones)."""
