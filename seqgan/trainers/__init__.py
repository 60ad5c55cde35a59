"""Adversarial trainers behind one contract, chosen by ``adversarial.method``.

Every trainer has ``generator``, ``discriminator`` and ``g_steps`` attributes, ``generator_step()`` and
``discriminator_step(real_batch)`` returning metric dicts, ``train_epoch(real, data_rng)`` (one epoch of the
method's own schedule, returning metrics), ``state_dict()``/``load_state_dict()`` (plain tensors, loadable with
``weights_only=True``) and a ``from_config(cfg, generator, discriminator, rng)`` constructor.

- ``seqgan``: :class:`PolicyGradientTrainer` (Yu et al. 2017, arXiv 1609.05473).
- ``scratchgan``: :class:`ScratchGANTrainer` (de Masson d'Autume et al. 2019, arXiv 1905.09922).
- ``gumbel``: :class:`GumbelTrainer` (RelGAN, Nie et al. 2019: Gumbel-softmax relaxation, backpropagation).
- conditional generation: :class:`ConditionalTrainer` (Li et al. 2017, arXiv 1701.06547; in
  :mod:`seqgan.conditional`, built by its stages from (context, response) pairs, so not in ``TRAINERS``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from seqgan.config import Config, ConfigError
from seqgan.trainers.gumbel import GumbelTrainer, GumbelTrainerConfig
from seqgan.trainers.policy_gradient import PolicyGradientConfig, PolicyGradientTrainer
from seqgan.trainers.scratchgan import ScratchGANTrainer

__all__ = [
    "ConditionalConfig",
    "ConditionalTrainer",
    "GumbelTrainer",
    "GumbelTrainerConfig",
    "TRAINERS",
    "PolicyGradientConfig",
    "PolicyGradientTrainer",
    "ScratchGANTrainer",
    "build_trainer",
]


def __getattr__(name):  # seqgan.conditional.trainer imports this package: resolve lazily (no import cycle)
    if name in ("ConditionalConfig", "ConditionalTrainer"):
        from seqgan.conditional import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'seqgan.trainers' has no attribute {name!r}")


TRAINERS: dict[str, Callable] = {
    "seqgan": PolicyGradientTrainer.from_config,
    "scratchgan": ScratchGANTrainer.from_config,
    "gumbel": GumbelTrainer.from_config,
}
"""``adversarial.method`` -> ``from_config(cfg, generator, discriminator, rng)``."""


def build_trainer(
    cfg: Config, generator: nn.Module, discriminator: nn.Module, rng: torch.Generator | None = None
):
    """The adversarial trainer ``cfg.adversarial.method`` names, built from ``cfg``."""
    method = cfg.adversarial.method
    if method not in TRAINERS:
        raise ConfigError(f"adversarial.method: unknown method {method!r}; choose from {sorted(TRAINERS)}")
    return TRAINERS[method](cfg, generator, discriminator, rng)
