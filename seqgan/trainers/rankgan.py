"""RankGAN: adversarial ranking (Lin et al. 2017, "Adversarial Ranking for Language Generation", NIPS, arXiv
1705.11001).

The discriminator is a *ranker* R (:class:`~seqgan.models.ranker.Ranker`, ``discriminator.kind: ranker``): a CNN
sentence encoder ``s -> y_s``. Given a real reference sentence ``u``, the relevance of ``s`` is the cosine
similarity ``cos(y_s, y_u)``, and the rank score of ``s`` within a comparison set ``C`` (``s`` added to it) is

    P(s | u, C) = exp(gamma cos(y_s, y_u)) / sum_{s' in C + {s}} exp(gamma cos(y_s', y_u))        (paper, eq. 3)

averaged in log over a reference set ``U`` of real sentences: ``log R(s | U, C) = mean_{u in U} log P(s | u, C)``
(eq. 4; :func:`~seqgan.losses.log_rank_scores`). The ranker learns to rank real sentences high among generated
ones (``C-``) and generated ones low among real ones (``C+``); the generator learns to be ranked high among real
sentences.

One generator update (:meth:`RankGANTrainer.generator_step`, the policy-gradient update of
:class:`~seqgan.trainers.seqgan.PolicyGradientTrainer`):

1. ``real_batch`` holds ``num_references + comparison_size`` real sentences (:meth:`RankGANTrainer.train_epoch`
   draws them in the stage's seeded data order): the first ``num_references`` are the reference set ``U``, the
   rest the comparison set ``C+``; the ranker is bound to them (:class:`~seqgan.models.ranker.BoundRanker`: their
   features are taken once, in eval mode);
2. sample ``batch_size`` sequences; token ``y_t``'s reward is the mean log rank score ``log R(Y | U, C+)`` of
   ``num_rollouts`` Monte-Carlo completions ``Y`` of its prefix ``y_1..y_t`` by the rollout policy
   (:class:`~seqgan.rollout.MonteCarloRollout` with ``score="value"``: the bound ranker's outputs averaged as they
   are), and the last token's reward is the whole sequence's own log rank score (the paper's eq. 7);
3. the REINFORCE step ``-mean_t log G(y_t | y_<t) (Q_t - b_t)`` over the real tokens, ``b_t`` as
   ``rankgan.baseline`` says (the batch's mean reward at step ``t`` by default; the paper uses none).

One ranker update (:meth:`RankGANTrainer.discriminator_step`, and the rounds of
:meth:`RankGANTrainer.train_epoch`; :func:`~seqgan.trainers.steps.ranker_step`): a batch of real and a batch of
generated sentences and a reference set of other real sentences, one step on

    -( mean_{s real} log R(s | U, C-) + mean_{s generated} log(1 - R(s | U, C+)) )                  (eq. 1)

where ``C-`` is the batch's generated rows and ``C+`` its real rows (:func:`~seqgan.losses.ranker_loss`).

The ranker is pretrained with the same objective (``Method.d_pretrain = "rank"``: the pretraining stage's
discriminator rounds, :data:`~seqgan.trainers.steps.PRETRAIN_OBJECTIVES`). The authors' released code departs
from the paper in two ways that are not followed here: it sums the cosine similarities over the references
before one softmax (instead of averaging the log rank scores), and it ranks the generator's rollouts among
generated sentences only. Settings: :class:`~seqgan.config.RankGANConfig` (the ``rankgan`` section: SeqGAN's
settings plus ``gamma``, ``num_references``, ``comparison_size``); the ranker's sizes are the ``discriminator``
section's.
"""

from __future__ import annotations

import math
import time

import torch

from seqgan.config import RankGANConfig
from seqgan.distributed import unwrap
from seqgan.models.ranker import BoundRanker, Ranker
from seqgan.sampling import Samples, sample
from seqgan.trainers.seqgan import PolicyGradientTrainer
from seqgan.trainers.steps import ranker_epochs, ranker_step

__all__ = ["RankGANTrainer"]


class RankGANTrainer(PolicyGradientTrainer):
    """SeqGAN's trainer with a ranker for a discriminator and expected log rank scores as rewards (see the module
    docstring).

    Args: as :class:`~seqgan.trainers.seqgan.PolicyGradientTrainer`, with a :class:`~seqgan.config.RankGANConfig`
    and a :class:`~seqgan.models.ranker.Ranker` (or its DDP wrapper) as ``discriminator``.
    """

    config: RankGANConfig
    section = "rankgan"

    def __init__(self, generator, discriminator, config: RankGANConfig | None = None, **kwargs) -> None:
        if not isinstance(unwrap(discriminator), Ranker):
            raise TypeError(
                f"RankGAN's discriminator is a ranker (discriminator.kind=ranker), got "
                f"{type(unwrap(discriminator)).__name__}"
            )
        super().__init__(generator, discriminator, config or RankGANConfig(), **kwargs)
        self.bound: BoundRanker | None = None
        """The ranker bound to the current generator step's reference and comparison sets (None between
        steps)."""

    @property
    def real_rows_per_step(self) -> int:
        """Real sentences one generator step ranks against: ``num_references + comparison_size``."""
        return self.config.num_references + self.config.comparison_size

    def train_epoch(self, real: torch.Tensor, data_rng: torch.Generator) -> dict[str, float]:
        """``g_steps`` generator updates, each with ``num_references + comparison_size`` real sentences drawn from
        ``real`` ``(N, T)`` in ``data_rng``'s order; then ``d_steps`` rounds of: sample ``d_num_negatives`` fresh
        sentences, draw as many real ones, train the ranker ``d_epochs`` epochs on them
        (:func:`~seqgan.trainers.steps.ranker_epochs`; each batch's references are other rows of the round's
        real sentences).

        Returns:
            The last generator step's metrics, the ranker rounds' mean metrics, ``time/generator_s`` and
            ``nan/skipped_steps``.
        """
        cfg = self.config
        metrics: dict[str, float] = {}
        t0 = time.perf_counter()
        for _ in range(cfg.g_steps):
            idx = torch.randperm(len(real), generator=data_rng)[: self.real_rows_per_step].to(real.device)
            metrics.update(self.generator_step(real[idx]))
        metrics["time/generator_s"] = time.perf_counter() - t0
        for _ in range(cfg.d_steps):
            fake = self.sample(cfg.d_num_negatives).tokens
            idx = torch.randperm(len(real), generator=data_rng)[: cfg.d_num_negatives].to(real.device)
            skipped = self.nan_guard.skipped
            metrics.update(
                ranker_epochs(
                    self.discriminator, self.d_optimizer, real[idx], fake, cfg.d_epochs, cfg.d_batch_size,
                    data_rng, self.nan_guard, self.batch_by_length, num_references=cfg.num_references,
                    gamma=cfg.gamma,
                )
            )  # fmt: skip
            updates = cfg.d_epochs * math.ceil(min(len(idx), len(fake)) / cfg.d_batch_size)
            self.d_steps += updates - (self.nan_guard.skipped - skipped)
        metrics["nan/skipped_steps"] = float(self.nan_guard.skipped)
        return metrics

    # ------------------------------------------------------------------ generator
    def generator_step(self, real_batch: torch.Tensor | None = None) -> dict[str, float]:
        """One RankGAN generator update (see the module docstring).

        Args:
            real_batch: ``(num_references + comparison_size, T)`` real sentences: the reference set ``U`` (the
                first ``num_references`` rows), then the comparison set ``C+``.
        Returns:
            SeqGAN's generator metrics (``rollout/reward_mean``: the mean reward over real tokens, a log rank
            score; ``rollout/reward_last``: the mean log rank score of the whole samples) and
            ``rankgan/chance_log_rank``, ``-log(comparison_size + 1)``: the score of a ranker that cannot tell.
        Raises:
            ValueError: ``real_batch`` is missing or has fewer rows than that.
            NonFiniteLossError: a NaN/inf loss or gradient and ``nan_policy=stop`` (no parameter is changed).
        """
        cfg = self.config
        if real_batch is None or real_batch.shape[0] < self.real_rows_per_step:
            got = "none" if real_batch is None else f"{real_batch.shape[0]} rows"
            raise ValueError(
                f"a RankGAN generator step ranks against rankgan.num_references + rankgan.comparison_size = "
                f"{self.real_rows_per_step} real sentences, got {got}"
            )
        real = real_batch.to(self.generator.device)
        refs, comparison = real[: cfg.num_references], real[cfg.num_references : self.real_rows_per_step]
        self.bound = unwrap(self.discriminator).bind(refs, comparison, cfg.gamma)
        try:
            metrics = super().generator_step()
        finally:
            self.bound = None
        metrics["rankgan/chance_log_rank"] = -math.log(cfg.comparison_size + 1)
        return metrics

    def draw(self) -> tuple[Samples, torch.Tensor]:
        """One micro-batch: ``batch_size`` samples and their ``(B, T)`` rewards, the mean log rank scores of their
        prefixes' completions among the bound comparison set (no gradient)."""
        if self.bound is None:
            raise RuntimeError("RankGAN's rewards need a bound ranker: call generator_step(real_batch)")
        cfg = self.config
        samples = self.draw_batch()
        with torch.autocast(samples.tokens.device.type, enabled=False):  # rewards in fp32 under a bf16 run
            rewards = self.rollout(samples.tokens, self.bound, cfg.num_rollouts, rng=self.rng, score="value")
        return samples, rewards

    # ------------------------------------------------------------------ ranker
    def discriminator_step(self, real_batch: torch.Tensor) -> dict[str, float]:
        """One ranker update (:func:`~seqgan.trainers.steps.ranker_step`): the first ``num_references`` rows of
        ``real_batch`` ``(U + B, T)`` are the reference set, the other ``B`` are ranked against ``B`` fresh
        samples.

        Returns:
            ``discriminator/loss``, ``discriminator/log_rank_real``, ``discriminator/log_rank_fake``.
        Raises:
            ValueError: ``real_batch`` has no row besides the references.
            NonFiniteLossError: a NaN/inf loss or gradient and ``nan_policy=stop`` (no parameter is changed).
        """
        cfg = self.config
        real = real_batch.to(self.generator.device)
        if real.shape[0] <= cfg.num_references:
            raise ValueError(
                f"discriminator_step needs rankgan.num_references ({cfg.num_references}) reference rows and at "
                f"least one more, got {real.shape[0]}"
            )
        refs, ranked = real[: cfg.num_references], real[cfg.num_references :]
        fake = sample(
            self.generator, ranked.shape[0], self.max_len, temperature=cfg.temperature, rng=self.rng
        ).tokens
        skipped = self.nan_guard.skipped
        metrics = ranker_step(
            self.discriminator, self.d_optimizer, ranked, fake, refs, cfg.gamma, self.nan_guard
        )
        self.d_steps += self.nan_guard.skipped == skipped  # a skipped update is not a step
        return metrics
