"""MaliGAN: maximum-likelihood augmented discrete GAN (Che et al. 2017, "Maximum-Likelihood Augmented Discrete
Generative Adversarial Networks", arXiv 1702.07983).

A discriminator trained by binary cross-entropy approaches ``D*(x) = p_data(x) / (p_data(x) + p_G(x))``, so its
odds ``r(x) = D(x) / (1 - D(x))`` estimate the density ratio ``p_data(x) / p_G(x)``. MaliGAN uses them as
importance weights: ``E_{p_G}[r(x) grad log p_G(x)] / E_{p_G}[r(x)]`` is the maximum-likelihood gradient
``E_{p_data}[grad log p_G(x)]`` when D is optimal, estimated on ``m`` samples of the generator with the
self-normalised weights ``w_i = r(x_i) / sum_j r(x_j)`` and a baseline ``b``:

    grad = sum_i (w_i - b) grad log p_G(x_i)                                 (the paper's eq. for Algorithm 1)

Here the odds come from the logit, ``r = exp(logit)``, and the normalisation is a softmax of the logits over the
batch, so no ``D / (1 - D)`` is ever formed and a confident discriminator cannot overflow it. One generator
update (:meth:`MaliGANTrainer.draw` feeding :class:`~seqgan.trainers.seqgan.PolicyGradientTrainer`'s update):

1. sample ``m = batch_size`` sequences from the generator;
2. weights: ``maligan.rollouts = false``, the paper's **basic** MaliGAN: ``log r_i`` is the logit of the whole
   sequence and every token of ``x_i`` carries ``w_i``; ``maligan.rollouts = true``, the **variance-reduced**
   version with Monte-Carlo rollouts: token ``y_t`` carries the mean odds of ``num_rollouts`` completions of its
   prefix ``y_1..y_t`` by the current generator (:class:`~seqgan.rollout.MonteCarloRollout` with
   ``score="logit"``; the sequence's own odds at its last token), which estimates the prefix's ratio
   ``p_data(y_1..t) / p_G(y_1..t)``, and the weights are normalised over the batch at each step ``t`` (a
   sequence that ended before ``t`` takes part with its final odds, so each step's weights still sum to 1 over
   the ``m`` samples);
3. the REINFORCE step on ``-(1/N) sum_{i,t} (m w_{i,t} - m b) log p_G(y_{i,t})`` over the ``N`` real tokens with
   the batch baseline ``b = 1/m`` (``maligan.baseline = batch``; ``none``: ``b = 0``).

The factor ``m`` (the rewards are the weights relative to their batch mean, ``r_i / mean_j r_j``, and the
baseline is 1) puts the loss on the per-token scale of the maximum-likelihood loss: the gradient is the paper's
``sum_i (w_i - b) grad log p_G(x_i)`` divided by the mean sample length, as for every policy-gradient method here.
The discriminator is trained as SeqGAN's (the same rounds); every other ``seqgan`` setting (gradient
accumulation, entropy bonus, KL penalty, temperature) applies as there. With ``grad_accum_steps > 1`` the weights
are normalised within each micro-batch of ``batch_size`` samples (under ``torchrun``, within each process's
share of it).

Not implemented: the paper's mixed MLE-MaliGAN training for long sequences (its Algorithm 2: the first ``N``
tokens of real sentences taught by maximum likelihood, the rest sampled and weighted within the samples that share
a real prefix, ``N`` decreasing over training). Settings: :class:`~seqgan.config.MaliGANConfig` (the ``maligan``
section).
"""

from __future__ import annotations

import torch

from seqgan.config import MaliGANConfig
from seqgan.distributed import unwrap
from seqgan.sampling import Samples
from seqgan.trainers.seqgan import PolicyGradientTrainer

__all__ = ["MaliGANTrainer", "importance_rewards"]


def importance_rewards(log_odds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """MaliGAN's normalised importance weights, scaled by the batch size: ``m * r_i / sum_j r_j`` at each step.

    Args:
        log_odds: ``(B, T)`` log-odds ``log r = logit`` of each sample at each step (the same value across a row
            for the basic, sequence-level weights); every entry counts in its column's normalisation, a row's
            entries after its last token included (they carry its final odds).
        mask: ``(B, T)`` bool, True for real tokens.
    Returns:
        ``(B, T)`` rewards ``B * softmax(log_odds, dim=0)`` (each column's mean is 1; 0 at padding) and, over the
        last column every row reaches (its final odds), ``maligan/ess``: the effective sample size
        ``1 / sum_i w_i^2`` as a share of ``B``, and ``maligan/weight_max``: the largest ``B * w_i``.
    """
    batch = log_odds.shape[0]
    weights = torch.softmax(log_odds.float(), dim=0)  # (B, T): r_i / sum_j r_j at each step
    final = weights[:, -1]
    stats = {
        "maligan/ess": float(1.0 / (final.square().sum() * batch)),
        "maligan/weight_max": float(final.max() * batch),
    }
    return (weights * batch).masked_fill(~mask, 0.0), stats


class MaliGANTrainer(PolicyGradientTrainer):
    """SeqGAN's trainer with MaliGAN's normalised importance weights as rewards (see the module docstring).

    Args: as :class:`~seqgan.trainers.seqgan.PolicyGradientTrainer`, with a :class:`~seqgan.config.MaliGANConfig`.
    """

    config: MaliGANConfig
    section = "maligan"

    def __init__(self, generator, discriminator, config: MaliGANConfig | None = None, **kwargs) -> None:
        super().__init__(generator, discriminator, config or MaliGANConfig(), **kwargs)
        self._stats: list[dict[str, float]] = []

    def log_odds(self, samples: Samples) -> torch.Tensor:
        """``(B, T)`` log-odds ``log(D / (1 - D))`` behind each token's weight (no gradient): the whole sequence's
        logit in every column (basic), or per prefix the log of the mean odds of its completions (rollouts); after
        a row's last token, its final logit."""
        cfg = self.config
        tokens, mask = samples.tokens, samples.mask
        disc = unwrap(self.discriminator)
        last = (mask.sum(dim=1) - 1).clamp(min=0)[:, None]  # (B, 1) column of the last real token
        if cfg.rollouts:
            per_prefix = self.rollout(tokens, disc, cfg.num_rollouts, rng=self.rng, score="logit")  # (B, T)
            whole = per_prefix.gather(1, last)  # (B, 1): D(y)'s logit sits at the last real token
            cols = torch.arange(tokens.shape[1], device=tokens.device)[None, :]
            return torch.where(cols < last, per_prefix, whole)
        was_training = disc.training
        disc.eval()
        try:
            with torch.no_grad():
                whole = disc(tokens).float().view(-1, 1)  # (B, 1)
        finally:
            disc.train(was_training)
        return whole.expand_as(tokens).contiguous()

    def draw(self) -> tuple[Samples, torch.Tensor]:
        """One micro-batch: ``batch_size`` samples of the policy and their ``(B, T)`` rewards, the normalised
        importance weights relative to their batch mean (:func:`importance_rewards`)."""
        cfg = self.config
        if self.before_draw is not None:
            self.before_draw(cfg.batch_size)
        samples = self.draw_batch()
        with torch.autocast(samples.tokens.device.type, enabled=False):  # weights in fp32 under a bf16 run
            log_odds = self.log_odds(samples)
        rewards, stats = importance_rewards(log_odds, samples.mask)
        stats["maligan/d_prob"] = float(torch.sigmoid(log_odds[:, -1]).mean())  # D of the whole samples
        self._stats.append(stats)
        return samples, rewards

    def baseline(self, rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        """``maligan.baseline = batch``: the batch mean of the rewards, 1 at every step (``b = 1/m`` of the
        unscaled weights); ``none``: no baseline."""
        if self.config.baseline == "none":
            return None
        return torch.ones(rewards.shape[1], device=rewards.device)

    def generator_step(self, real_batch: torch.Tensor | None = None) -> dict[str, float]:
        """One MaliGAN generator update (:meth:`PolicyGradientTrainer.generator_step` with MaliGAN's rewards).

        Returns:
            SeqGAN's generator metrics (``rollout/reward_mean`` is the mean reward over real tokens, near 1) and,
            averaged over the micro-batches, ``maligan/d_prob`` (mean ``D`` of the samples), ``maligan/ess`` and
            ``maligan/weight_max`` (:func:`importance_rewards`).
        """
        self._stats = []
        metrics = super().generator_step(real_batch)
        for key in self._stats[0] if self._stats else ():
            metrics[key] = sum(s[key] for s in self._stats) / len(self._stats)
        return metrics
