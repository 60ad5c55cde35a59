"""Adversarial trainers behind one contract (:mod:`seqgan.trainers.base`), one file per method.

- ``seqgan``: :class:`PolicyGradientTrainer` (Yu et al. 2017, arXiv 1609.05473), settings ``seqgan``.
- ``gumbel``: :class:`GumbelTrainer` (RelGAN, Nie et al. 2019: Gumbel-softmax relaxation, backpropagation),
  settings ``gumbel``.
- ``scratchgan``: :class:`ScratchGANTrainer` (de Masson d'Autume et al. 2019, arXiv 1905.09922), settings
  ``scratchgan``.
- ``coldgan``: :class:`ColdGANTrainer` (Scialom et al. 2020, arXiv 2006.04643: SeqGAN's policy gradient on a
  colder proposal's samples, importance-weighted), settings ``coldgan``.
- ``maligan``: :class:`MaliGANTrainer` (Che et al. 2017, arXiv 1702.07983: the policy gradient with the
  discriminator's odds ``D / (1 - D)`` as importance weights normalised over the batch, minus the batch baseline;
  per sequence, or per prefix through Monte-Carlo rollouts), settings ``maligan``.
- ``rankgan``: :class:`RankGANTrainer` (Lin et al. 2017, arXiv 1705.11001: a ranker instead of a classifier,
  rewards = the expected log rank score of a sample's completions among real sentences, by cosine similarity to
  a reference set), settings ``rankgan``.
- ``dgsan``: :class:`DGSANTrainer` (Montahaei et al. 2019, arXiv 1908.09127: no discriminator network,
  ``D = p_G / (p_G + p_old)`` from the generator and a frozen earlier copy of it), settings ``dgsan``.
- ``cot``: :class:`CoTTrainer` (Lu et al. 2019, arXiv 1804.03782: cooperative training, the generator's per-step
  KL over the vocabulary to a mediator language model of the real/generated mix), settings ``cot``.
- ``dpgan``: :class:`DPGANTrainer` (Xu et al. 2018, arXiv 1802.01345: a language-model discriminator, novelty
  rewards), settings ``dpgan``.
- ``leakgan``: :class:`LeakGANTrainer` (Guo et al. 2018, arXiv 1709.08624: the CNN discriminator's features
  leak to a Manager/Worker generator, ``generator.kind: leakgan``; hierarchical policy gradient with rescaled
  rollout values, intrinsic rewards and interleaved MLE), settings ``leakgan``.
- the conditional task: :class:`ConditionalTrainer` (Li et al. 2017, arXiv 1701.06547), which composes a
  :class:`PolicyGradientTrainer` over (context, response) pairs; settings ``seqgan`` and ``conditional``.
- the category task: ``sentigan``: :class:`SentiGANTrainer` (Wang & Wan 2018), settings ``sentigan``;
  ``catgan``: :class:`CatGANTrainer` (Liu et al. 2020, arXiv 1911.06641), settings ``catgan``; shared pieces in
  :mod:`seqgan.trainers.category`.

:func:`build_trainer` builds the one a config selects. Shared pieces: :mod:`seqgan.trainers.steps` (the MLE
and discriminator updates), :class:`~seqgan.trainers.base.NonFiniteGuard` (``nan_policy``, honoured by every
trainer).
"""

from __future__ import annotations

import torch
from torch import nn

from seqgan.config import METHODS, Config, ConfigError
from seqgan.trainers.base import AdversarialTrainer, NonFiniteGuard, NonFiniteLossError
from seqgan.trainers.catgan import CatGANTrainer
from seqgan.trainers.coldgan import ColdGANTrainer
from seqgan.trainers.conditional import ConditionalTrainer
from seqgan.trainers.cot import CoTTrainer
from seqgan.trainers.dgsan import DGSANTrainer
from seqgan.trainers.dpgan import DPGANTrainer
from seqgan.trainers.gumbel import GumbelTrainer
from seqgan.trainers.leakgan import LeakGANTrainer
from seqgan.trainers.maligan import MaliGANTrainer
from seqgan.trainers.rankgan import RankGANTrainer
from seqgan.trainers.scratchgan import ScratchGANTrainer
from seqgan.trainers.sentigan import SentiGANTrainer
from seqgan.trainers.seqgan import PolicyGradientTrainer

__all__ = [
    "AdversarialTrainer",
    "CatGANTrainer",
    "CoTTrainer",
    "ColdGANTrainer",
    "ConditionalTrainer",
    "DGSANTrainer",
    "DPGANTrainer",
    "GumbelTrainer",
    "LeakGANTrainer",
    "MaliGANTrainer",
    "NonFiniteGuard",
    "NonFiniteLossError",
    "PolicyGradientTrainer",
    "RankGANTrainer",
    "ScratchGANTrainer",
    "SentiGANTrainer",
    "TRAINERS",
    "build_trainer",
]

TRAINERS: dict[str, type[AdversarialTrainer]] = {
    "seqgan": PolicyGradientTrainer,
    "gumbel": GumbelTrainer,
    "scratchgan": ScratchGANTrainer,
    "coldgan": ColdGANTrainer,
    "maligan": MaliGANTrainer,
    "rankgan": RankGANTrainer,
    "dgsan": DGSANTrainer,
    "cot": CoTTrainer,
    "dpgan": DPGANTrainer,
    "leakgan": LeakGANTrainer,
    "sentigan": SentiGANTrainer,
    "catgan": CatGANTrainer,
}
"""``adversarial.method`` -> trainer class (its ``from_config`` reads the method's section)."""

TASK_TRAINERS: dict[tuple[str, str], type[AdversarialTrainer]] = {
    ("pairs", "seqgan"): ConditionalTrainer,
    ("category", "sentigan"): SentiGANTrainer,
    ("category", "catgan"): CatGANTrainer,
}
"""Trainers of a (task, method) other than unconditional sentences."""


def trainer_class(cfg: Config) -> type[AdversarialTrainer]:
    """The trainer class of ``cfg``'s task and ``adversarial.method``."""
    method = cfg.adversarial.method
    if method not in TRAINERS or method not in METHODS:
        raise ConfigError(f"adversarial.method: unknown method {method!r}; choose from {sorted(TRAINERS)}")
    if cfg.task == "sentences":
        return TRAINERS[method]
    if (cfg.task, method) not in TASK_TRAINERS:
        raise ConfigError(f"adversarial.method={method} does not train the {cfg.task} task")
    return TASK_TRAINERS[(cfg.task, method)]


def build_trainer(
    cfg: Config,
    generator: nn.Module,
    discriminator: nn.Module,
    rng: torch.Generator | None = None,
    **task_data,
) -> AdversarialTrainer:
    """The adversarial trainer ``cfg`` selects (task and ``adversarial.method``), built from its sections.

    Args:
        cfg: the experiment config.
        generator, discriminator: the models (possibly DDP wrappers).
        rng: sampling / rollout random stream.
        **task_data: what the task's trainer needs besides the models (the conditional task: ``contexts``,
            ``responses``, ``data_rng``; see :meth:`seqgan.runs.Task.trainer_data`).
    """
    return trainer_class(cfg).from_config(cfg, generator, discriminator, rng, **task_data)
