"""ColdGAN-style cautious exploration (Scialom et al. 2020, "ColdGANs: Taming Language GANs with Cautious
Sampling Strategies", arXiv 2006.04643).

SeqGAN's policy gradient learns from the policy's own samples, and at temperature 1 many of them come from the
tail of the distribution: their discriminator rewards are low and noisy, and the updates are unstable. ColdGAN
draws the generator's training batch from a *colder* proposal ``q`` instead (the policy at a lower temperature,
optionally restricted to a nucleus) and keeps the gradient that of the policy ``p`` by importance weighting.

One generator update here (:meth:`ColdGANTrainer.generator_step`, shared with
:class:`~seqgan.trainers.seqgan.PolicyGradientTrainer`):

1. draw ``batch_size`` sequences from ``q`` (``proposal_temperature``, ``proposal_top_p``), keeping each token's
   ``log q(y_t | y_<t)``;
2. estimate ``Q_t`` with Monte-Carlo rollouts of the (lagged) policy itself, as SeqGAN does;
3. weight token ``t`` by ``w_t = min(p(y_t | y_<t) / q(y_t | y_<t), weight_clip)`` (a constant) and step on
   ``-mean_t w_t (Q_t - b_t) log p(y_t | y_<t)``.

The weight is per token: the product of the prefix's weights, which the exact off-policy gradient needs, is
dropped, as off-policy actor-critic methods do (Degris et al. 2012; V-trace's truncated weights, Espeholt et al.
2018), and clipped, as ColdGAN clips its weights, to bound the variance. With ``proposal_temperature`` equal to
the policy's temperature and no nucleus the weights are 1 and the update is SeqGAN's. The discriminator is
trained on the policy's own samples. Settings: :class:`~seqgan.config.ColdGANConfig` (the ``coldgan`` section).
"""

from __future__ import annotations

import torch

from seqgan.config import ColdGANConfig
from seqgan.sampling import Samples, sample
from seqgan.trainers.seqgan import PolicyGradientTrainer

__all__ = ["ColdGANTrainer", "importance_weights"]


def importance_weights(
    log_p: torch.Tensor, log_q: torch.Tensor, mask: torch.Tensor, clip: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped per-token importance weights ``min(exp(log_p - log_q), clip)`` (0 at padding), and their mean
    before clipping and the share of real tokens clipped.

    Args:
        log_p: ``(B, T)`` log-probabilities of the tokens under the policy (detached here).
        log_q: ``(B, T)`` log-probabilities under the proposal they were drawn from.
        mask: ``(B, T)`` bool, True for real tokens.
        clip: the upper bound.
    """
    ratio = (log_p.detach().float() - log_q.float()).exp().masked_fill(~mask, 0.0)
    real = ratio[mask]
    stats = {
        "coldgan/weight_mean": float(real.mean()) if real.numel() else 0.0,
        "coldgan/clipped_fraction": float((real > clip).float().mean()) if real.numel() else 0.0,
    }
    return ratio.clamp(max=clip), stats


class ColdGANTrainer(PolicyGradientTrainer):
    """SeqGAN's trainer with the generator's batches drawn from a colder proposal (see the module docstring).

    Args: as :class:`~seqgan.trainers.seqgan.PolicyGradientTrainer`, with a
    :class:`~seqgan.config.ColdGANConfig`.
    """

    config: ColdGANConfig
    section = "coldgan"

    def __init__(self, generator, discriminator, config: ColdGANConfig | None = None, **kwargs) -> None:
        super().__init__(generator, discriminator, config or ColdGANConfig(), **kwargs)

    def draw_batch(self) -> Samples:
        """``batch_size`` sequences from the proposal, with each token's proposal log-probability."""
        cfg = self.config
        return sample(
            self.generator,
            cfg.batch_size,
            self.max_len,
            temperature=cfg.proposal_temperature,
            top_p=cfg.proposal_top_p,
            rng=self.rng,
        )

    def token_weights(self, samples: Samples, log_probs: torch.Tensor) -> tuple[torch.Tensor, dict]:
        return importance_weights(log_probs, samples.log_probs, samples.mask, self.config.weight_clip)
