"""DP-GAN: the diversity-promoting GAN (Xu et al. 2018, "Diversity-Promoting GAN: A Cross-Entropy Based
Generative Adversarial Network for Diversified Text Generation", EMNLP, arXiv 1802.01345).

The discriminator is a language model D (:class:`~seqgan.models.lm_discriminator.LMDiscriminator`,
``discriminator.kind: lm``) rather than a classifier, and its cross-entropy is the reward: a token the language
model does not expect is *novel*. The language model is trained to expect what the generator produces and not
what real sentences say, so the generator is rewarded for leaving the sentences it repeats. Unlike a
classifier's probability, a cross-entropy does not saturate when the discriminator wins.

One generator update (:meth:`DPGANTrainer.generator_step`): sample ``batch_size`` sentences; with D in eval mode
(no gradient) take the word-level rewards ``r_t = -log D(y_t | y_<t)``, the sentence-level reward
``R(y) = 1/|y| sum_t r_t``, and each token's reward ``Q_t = R(y) * sum_{s>=t} gamma^(s-t) r_s``
(:func:`~seqgan.losses.novelty_rewards`); then the REINFORCE step ``-mean_t log G(y_t | y_<t) (Q_t - b_t)`` over
real tokens (:func:`~seqgan.losses.policy_gradient_loss`; ``b_t`` 0 unless ``dpgan.baseline`` is set). No
rollouts: the language model scores every prefix in one pass.

One discriminator update (:meth:`DPGANTrainer.discriminator_step`, and the rounds of :meth:`DPGANTrainer.train_epoch`):
``E_{y~G}[R(y)] - real_weight * E_{y~data}[R(y)]`` on a batch of generated and a batch of real sentences
(:func:`~seqgan.losses.dpgan_discriminator_loss`).

The discriminator is pretrained as a language model of the real sentences (``Method.d_pretrain = "lm_real"``:
maximum likelihood in the pretraining stage's rounds, :data:`~seqgan.trainers.steps.PRETRAIN_OBJECTIVES`).
Settings: :class:`~seqgan.config.DPGANConfig` (the ``dpgan`` section); the language model's sizes are the
``discriminator`` section's.
"""

from __future__ import annotations

import functools
import math
import time

import torch
from torch import nn

from seqgan.config import DPGANConfig
from seqgan.distributed import unwrap
from seqgan.losses import (
    dpgan_discriminator_loss,
    ema_baseline_update,
    novelty_rewards,
    policy_gradient_loss,
    sampled_log_probs,
    sentence_cross_entropy,
    step_baseline,
)
from seqgan.models.base import Generator
from seqgan.sampling import Samples, sample
from seqgan.trainers.base import (
    AdversarialTrainer,
    NonFiniteGuard,
    baseline_state,
    guarded_update,
    load_baseline,
    new_baseline,
)
from seqgan.trainers.steps import lm_epochs
from seqgan.utils import adam

__all__ = ["DPGANTrainer", "dpgan_objective"]


def dpgan_objective(
    lm: nn.Module, real: torch.Tensor, fake: torch.Tensor, real_weight: float = 1.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """DPGAN's discriminator loss on ``real`` ``(B, T)`` and ``fake`` ``(B', T)`` rows
    (:func:`~seqgan.losses.dpgan_discriminator_loss`) and its metrics: ``discriminator/loss`` and the mean
    sentence-level rewards ``discriminator/reward_real``, ``discriminator/reward_fake``."""
    mask_r, mask_f = lm.mask(real), lm.mask(fake)
    lp_r, lp_f = lm.token_log_probs(real, mask_r), lm.token_log_probs(fake, mask_f)
    loss = dpgan_discriminator_loss(lp_r, mask_r, lp_f, mask_f, real_weight)
    with torch.no_grad():
        metrics = {
            "discriminator/loss": loss.item(),
            "discriminator/reward_real": float(sentence_cross_entropy(lp_r, mask_r).mean()),
            "discriminator/reward_fake": float(sentence_cross_entropy(lp_f, mask_f).mean()),
        }
    return loss, metrics


class DPGANTrainer(AdversarialTrainer):
    """DP-GAN's updates for any :class:`~seqgan.models.base.Generator` and a language-model discriminator.

    Args:
        generator: the generator (trained in place).
        discriminator: a language model with ``token_log_probs`` and ``mask``
            (:class:`~seqgan.models.lm_discriminator.LMDiscriminator`, ``discriminator.kind: lm``).
        config: :class:`~seqgan.config.DPGANConfig` (defaults when None).
        max_len: length of the sampled sequences.
        rng: ``torch.Generator`` for sampling (the global RNG when None).
        nan_guard: what a NaN/inf loss or gradient does (default: stop).
    """

    section = "dpgan"

    def __init__(
        self,
        generator: Generator,
        discriminator: nn.Module,
        config: DPGANConfig | None = None,
        *,
        max_len: int,
        rng: torch.Generator | None = None,
        nan_guard: NonFiniteGuard | None = None,
    ) -> None:
        if not hasattr(unwrap(discriminator), "token_log_probs"):
            raise TypeError(
                f"DPGAN's discriminator is a language model (discriminator.kind=lm), got "
                f"{type(discriminator).__name__}"
            )
        self.generator, self.discriminator = generator, discriminator
        self.config = cfg = config or DPGANConfig()
        self.max_len, self.rng = max_len, rng
        self.nan_guard = nan_guard or NonFiniteGuard("stop")
        self.g_optimizer = adam([p for p in generator.parameters() if p.requires_grad], lr=cfg.g_lr)
        self.d_optimizer = adam(discriminator.parameters(), lr=cfg.d_lr)
        self.objective = functools.partial(dpgan_objective, real_weight=cfg.real_weight)
        self.baseline_ema, self.baseline_seen = new_baseline(max_len, generator.device)  # (T,) each
        self.g_steps = 0
        self.d_steps = 0

    def sample(self, num: int) -> Samples:
        """``num`` sequences from the generator at the training temperature (eval mode, no gradient)."""
        return sample(
            self.generator,
            num,
            self.max_len,
            temperature=self.config.temperature,
            rng=self.rng,
            batch_size=1024,
        )

    def train_epoch(self, real: torch.Tensor, data_rng: torch.Generator) -> dict[str, float]:
        """``g_steps`` generator updates, then ``d_steps`` rounds of: sample ``d_num_negatives`` fresh sentences,
        draw as many real ones from ``real`` ``(N, T)``, train ``d_epochs`` epochs on them in ``data_rng``'s order.

        Returns:
            The last generator step's metrics, the discriminator rounds' mean metrics, ``time/generator_s`` and
            ``nan/skipped_steps``.
        """
        cfg = self.config
        metrics: dict[str, float] = {}
        t0 = time.perf_counter()
        for _ in range(cfg.g_steps):
            metrics.update(self.generator_step())
        metrics["time/generator_s"] = time.perf_counter() - t0
        for _ in range(cfg.d_steps):
            fake = self.sample(cfg.d_num_negatives).tokens
            idx = torch.randperm(len(real), generator=data_rng)[: cfg.d_num_negatives].to(real.device)
            skipped = self.nan_guard.skipped
            metrics.update(
                lm_epochs(
                    self.discriminator,
                    self.d_optimizer,
                    real[idx],
                    fake,
                    cfg.d_epochs,
                    cfg.d_batch_size,
                    data_rng,
                    self.nan_guard,
                    self.objective,
                    cfg.grad_clip,
                )
            )
            updates = cfg.d_epochs * math.ceil(min(len(idx), len(fake)) / cfg.d_batch_size)
            self.d_steps += updates - (self.nan_guard.skipped - skipped)
        metrics["nan/skipped_steps"] = float(self.nan_guard.skipped)
        return metrics

    # ------------------------------------------------------------------ generator
    @torch.no_grad()
    def rewards(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Word-level ``(B, T)``, sentence-level ``(B,)`` rewards and the tokens' ``Q_t`` ``(B, T)`` of sampled
        ``tokens`` (the discriminator in eval mode; see :func:`~seqgan.losses.novelty_rewards`)."""
        lm = unwrap(self.discriminator)
        was_training = lm.training
        lm.eval()
        try:
            log_probs = lm.token_log_probs(tokens, mask)  # (B, T)
        finally:
            lm.train(was_training)
        return novelty_rewards(log_probs, mask, self.config.discount)

    def generator_step(self) -> dict[str, float]:
        """One REINFORCE update on ``batch_size`` fresh samples with novelty rewards (see the module docstring).

        Returns:
            ``generator/pg_loss``, ``generator/grad_norm``, ``generator/sample_len``, ``reward/word_mean`` (mean
            r_t over real tokens), ``reward/sentence_mean`` (mean R(y)), ``reward/q_mean`` (mean Q_t).
        Raises:
            NonFiniteLossError: a NaN/inf loss or gradient and ``nan_policy=stop`` (no parameter is changed).
        """
        cfg, gen = self.config, self.generator
        samples = self.sample(cfg.batch_size)
        tokens, mask = samples.tokens, samples.mask  # (B, T)
        word, sentence, q = self.rewards(tokens, mask)
        baseline = step_baseline(cfg.baseline, q, mask, self.baseline_ema, self.baseline_seen)  # None or (T,)
        log_probs, _ = sampled_log_probs(gen, tokens, mask, cfg.temperature)  # (B, T)
        loss = policy_gradient_loss(log_probs, q, mask, baseline)
        stepped, grad_norm = guarded_update(
            loss,
            self.g_optimizer,
            gen.parameters(),
            self.nan_guard,
            "generator",
            cfg.grad_clip,
            what=lambda: (
                f"DPGAN generator loss {loss.item()} / gradient (rewards up to {float(q.max()):.3g}); lower "
                "dpgan.g_lr or set dpgan.baseline"
            ),
        )
        if stepped:
            if cfg.baseline == "ema":
                ema_baseline_update(self.baseline_ema, self.baseline_seen, q, mask, cfg.ema_decay)
            self.g_steps += 1
        return {
            "generator/pg_loss": loss.item(),
            "generator/grad_norm": float(grad_norm),
            "generator/sample_len": float(mask.sum(dim=1).float().mean()),
            "reward/word_mean": float(word[mask].mean()),
            "reward/sentence_mean": float(sentence.mean()),
            "reward/q_mean": float(q[mask].mean()),
        }

    # ------------------------------------------------------------------ discriminator
    def discriminator_step(self, real_batch: torch.Tensor) -> dict[str, float]:
        """One discriminator update on ``real_batch`` ``(B, T)`` against ``B`` fresh samples (:func:`dpgan_objective`).

        Raises:
            NonFiniteLossError: a NaN/inf loss or gradient and ``nan_policy=stop`` (no parameter is changed).
        """
        real = real_batch.to(self.generator.device)
        fake = self.sample(real.shape[0]).tokens
        lm = self.discriminator  # under DDP the wrapper, so that the gradients are averaged over ranks
        lm.train()
        loss, metrics = self.objective(lm, real, fake)
        stepped, _ = guarded_update(
            loss,
            self.d_optimizer,
            lm.parameters(),
            self.nan_guard,
            "discriminator",
            self.config.grad_clip,
            what=lambda: (
                f"DPGAN discriminator loss {loss.item()} / gradient; lower dpgan.d_lr or dpgan.real_weight"
            ),
        )
        if stepped:
            self.d_steps += 1
        return metrics

    # ------------------------------------------------------------------ state
    def _extra_state(self) -> dict:
        return {"baseline": baseline_state(self.baseline_ema, self.baseline_seen)}

    def _load_extra_state(self, state: dict) -> None:
        load_baseline(state["baseline"], self.baseline_ema, self.baseline_seen)
