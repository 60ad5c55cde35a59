"""CoT: cooperative training (Lu et al. 2019, "CoT: Cooperative Training for Generative Modeling of Discrete
Data", ICML, arXiv 1804.03782, Algorithm 1).

No discriminator that tells real from fake: a *mediator* M, a language model (here the trainer's
``discriminator`` slot, :class:`~seqgan.models.lm_discriminator.LMDiscriminator`), estimates the mixture
``(P + G) / 2`` of the data and the generator, and the generator minimises the Jensen-Shannon divergence
estimated through it. Both players maximise likelihoods: a cooperative game, not a min-max one.

One iteration (:meth:`CoTTrainer.train_epoch` runs ``steps_per_epoch`` of them):

1. ``g_steps`` generator updates (:meth:`CoTTrainer.generator_step`): sample ``batch_size`` sentences ``s ~ G``;
   at every real position ``t`` take the generator's distribution ``pi_g(. | s_<t)`` (eval mode, the training
   temperature, PAD/BOS excluded: :func:`~seqgan.losses.sampled_log_probs`) and the mediator's ``pi_m(. | s_<t)``
   (no gradient); step on ``1/2 * mean_s sum_t KL(pi_g(. | s_<t) || pi_m(. | s_<t))``
   (:func:`~seqgan.losses.vocabulary_kl`), the negative of the paper's generator objective
   ``1/2 E_s[sum_t pi_g(s_t)^T (log pi_m(s_t) - log pi_g(s_t))]``. The KL is summed over the whole vocabulary, so
   the update has no sampling variance beyond the choice of prefixes; the sampled prefixes are held fixed and
   the gradient flows through ``pi_g`` inside the sum, as in the paper's gradient.
2. ``mediator_steps`` mediator updates (:meth:`CoTTrainer.discriminator_step`): ``batch_size`` real sentences
   and ``batch_size`` fresh samples, one step on ``J_m = -1/2 E_P[log M(s)] - 1/2 E_G[log M(s)]``
   (:func:`~seqgan.losses.mediator_loss`): maximum likelihood on the balanced mixture.

The mediator is pretrained on that mixture too (``Method.d_pretrain = "lm_mix"``: the pretraining stage's
discriminator rounds, :data:`~seqgan.trainers.steps.PRETRAIN_OBJECTIVES`). Settings:
:class:`~seqgan.config.CoTConfig` (the ``cot`` section); the mediator's sizes are the ``discriminator`` section's.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from seqgan.config import CoTConfig
from seqgan.distributed import unwrap
from seqgan.losses import sampled_log_probs, vocabulary_kl
from seqgan.models.base import Generator
from seqgan.sampling import Samples, sample
from seqgan.trainers.base import AdversarialTrainer, NonFiniteGuard, guarded_update
from seqgan.trainers.steps import lm_mixture_objective
from seqgan.utils import adam

__all__ = ["CoTTrainer", "cot_generator_loss"]


def cot_generator_loss(log_g: torch.Tensor, log_m: torch.Tensor, num_sentences: int) -> torch.Tensor:
    """CoT's generator loss: ``1/2 * (sum over the N positions of KL(pi_g || pi_m)) / num_sentences``.

    Args:
        log_g: ``(N, V)`` generator log-distributions at the real positions of the samples, with gradient.
        log_m: ``(N, V)`` mediator log-distributions at the same positions (treated as constants).
        num_sentences: the number of sampled sentences the positions come from.
    Returns:
        Scalar loss (nats per sentence, halved).
    """
    return 0.5 * vocabulary_kl(log_g, log_m.detach()).sum() / max(num_sentences, 1)


class CoTTrainer(AdversarialTrainer):
    """CoT's updates for any :class:`~seqgan.models.base.Generator` and a language-model mediator.

    Args:
        generator: the generator (trained in place).
        discriminator: the mediator, with ``masked_log_probs``, ``token_log_probs`` and ``mask``
            (:class:`~seqgan.models.lm_discriminator.LMDiscriminator`, ``discriminator.kind: lm``).
        config: :class:`~seqgan.config.CoTConfig` (defaults when None).
        max_len: length of the sampled sequences.
        rng: ``torch.Generator`` for sampling (the global RNG when None).
        nan_guard: what a NaN/inf loss or gradient does (default: stop).
    """

    section = "cot"

    def __init__(
        self,
        generator: Generator,
        discriminator: nn.Module,
        config: CoTConfig | None = None,
        *,
        max_len: int,
        rng: torch.Generator | None = None,
        nan_guard: NonFiniteGuard | None = None,
    ) -> None:
        if not hasattr(unwrap(discriminator), "masked_log_probs"):
            raise TypeError(
                f"CoT's mediator is a language model (discriminator.kind=lm), got {type(discriminator).__name__}"
            )
        self.generator, self.discriminator = generator, discriminator
        self.config = cfg = config or CoTConfig()
        self.max_len, self.rng = max_len, rng
        self.nan_guard = nan_guard or NonFiniteGuard("stop")
        self.g_optimizer = adam([p for p in generator.parameters() if p.requires_grad], lr=cfg.g_lr)
        self.d_optimizer = adam(discriminator.parameters(), lr=cfg.mediator_lr)
        self.g_steps = 0
        self.d_steps = 0

    def sample(self, num: int) -> Samples:
        """``num`` sequences from the generator at the training temperature (eval mode, no gradient)."""
        return sample(self.generator, num, self.max_len, temperature=self.config.temperature, rng=self.rng)

    def train_epoch(self, real: torch.Tensor, data_rng: torch.Generator) -> dict[str, float]:
        """``steps_per_epoch`` iterations of ``g_steps`` generator updates then ``mediator_steps`` mediator
        updates, each on ``batch_size`` rows of ``real`` ``(N, T)`` drawn in ``data_rng``'s order.

        Returns:
            The mean of every step metric over the epoch, ``time/{generator,mediator}_s`` and
            ``nan/skipped_steps``.
        """
        cfg = self.config
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        times = {"time/generator_s": 0.0, "time/mediator_s": 0.0}
        for _ in range(cfg.steps_per_epoch):
            t0 = time.perf_counter()
            step_metrics = [self.generator_step() for _ in range(cfg.g_steps)]
            t1 = time.perf_counter()
            for _ in range(cfg.mediator_steps):
                idx = torch.randint(len(real), (cfg.batch_size,), generator=data_rng).to(real.device)
                step_metrics.append(self.discriminator_step(real[idx]))
            times["time/generator_s"] += t1 - t0
            times["time/mediator_s"] += time.perf_counter() - t1
            for metrics in step_metrics:
                for k, v in metrics.items():
                    sums[k], counts[k] = sums.get(k, 0.0) + v, counts.get(k, 0) + 1
        out = {**{k: v / counts[k] for k, v in sums.items()}, **times}
        out["nan/skipped_steps"] = float(self.nan_guard.skipped)
        return out

    # ------------------------------------------------------------------ generator
    def generator_step(self) -> dict[str, float]:
        """One generator update on ``batch_size`` fresh samples (see the module docstring).

        Returns:
            ``generator/loss`` (the halved KL per sentence), ``generator/kl`` (mean KL(pi_g || pi_m) per real
            token), ``generator/grad_norm``, ``generator/sample_len``.
        Raises:
            NonFiniteLossError: a NaN/inf loss or gradient and ``nan_policy=stop`` (no parameter is changed).
        """
        cfg, gen = self.config, self.generator
        samples = self.sample(cfg.batch_size)
        tokens, mask = samples.tokens, samples.mask  # (B, T)
        mediator = unwrap(self.discriminator)
        was_training = mediator.training
        mediator.eval()
        try:
            with torch.no_grad():
                log_m = mediator.masked_log_probs(tokens, mask)  # (N, V)
        finally:
            mediator.train(was_training)
        _, log_g = sampled_log_probs(gen, tokens, mask, cfg.temperature)  # (N, V), with gradient
        loss = cot_generator_loss(log_g, log_m, tokens.shape[0])
        stepped, grad_norm = guarded_update(
            loss,
            self.g_optimizer,
            gen.parameters(),
            self.nan_guard,
            "generator",
            cfg.grad_clip,
            what=lambda: f"CoT generator loss {loss.item()} / gradient; lower cot.g_lr",
        )
        if stepped:
            self.g_steps += 1
        num_tokens = max(int(mask.sum()), 1)
        return {
            "generator/loss": loss.item(),
            "generator/kl": 2.0 * loss.item() * tokens.shape[0] / num_tokens,
            "generator/grad_norm": float(grad_norm),
            "generator/sample_len": float(mask.sum(dim=1).float().mean()),
        }

    # ------------------------------------------------------------------ mediator
    def discriminator_step(self, real_batch: torch.Tensor) -> dict[str, float]:
        """One mediator update: maximum likelihood on ``real_batch`` ``(B, T)`` and ``B`` fresh samples, each half
        weighing one half (:func:`~seqgan.trainers.steps.lm_mixture_objective`).

        Returns:
            ``discriminator/loss`` (nats per sentence), ``discriminator/nll_real`` and ``discriminator/nll_fake``
            (per token).
        Raises:
            NonFiniteLossError: a NaN/inf loss or gradient and ``nan_policy=stop`` (no parameter is changed).
        """
        real = real_batch.to(self.generator.device)
        fake = self.sample(real.shape[0]).tokens
        mediator = self.discriminator  # under DDP the wrapper, so that the gradients are averaged over ranks
        mediator.train()
        loss, metrics = lm_mixture_objective(mediator, real, fake)
        stepped, _ = guarded_update(
            loss,
            self.d_optimizer,
            mediator.parameters(),
            self.nan_guard,
            "discriminator",
            self.config.grad_clip,
            what=lambda: f"CoT mediator loss {loss.item()} / gradient; lower cot.mediator_lr",
        )
        if stepped:
            self.d_steps += 1
        return metrics
