"""Adversarial trainers behind one contract, chosen by ``adversarial.method``.

Every trainer has ``generator``, ``discriminator`` and ``g_steps`` attributes, ``generator_step()`` and
``discriminator_step(real_batch)`` returning metric dicts, ``train_epoch(real, data_rng)`` (one epoch of the
method's own schedule, returning metrics), ``state_dict()``/``load_state_dict()`` (plain tensors, loadable with
``weights_only=True``) and a ``from_config(cfg, generator, discriminator, rng)`` constructor.

- ``seqgan``: :class:`PolicyGradientTrainer` (Yu et al. 2017, arXiv 1609.05473).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from seqgan.config import Config, ConfigError
from seqgan.trainers.policy_gradient import PolicyGradientConfig, PolicyGradientTrainer

__all__ = ["TRAINERS", "PolicyGradientConfig", "PolicyGradientTrainer", "build_trainer"]

TRAINERS: dict[str, Callable] = {
    "seqgan": PolicyGradientTrainer.from_config,
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
