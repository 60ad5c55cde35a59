"""Adversarial trainers. :mod:`seqgan.trainers.policy_gradient`: SeqGAN (Yu et al. 2017, arXiv 1609.05473)."""

from seqgan.trainers.policy_gradient import PolicyGradientConfig, PolicyGradientTrainer

__all__ = ["PolicyGradientConfig", "PolicyGradientTrainer"]
