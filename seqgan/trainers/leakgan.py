"""LeakGAN: adversarial training with leaked information (Guo et al. 2018, "Long Text Generation via Adversarial
Training with Leaked Information", AAAI, arXiv 1709.08624).

The discriminator is SeqGAN's CNN; its feature vector ``f_t`` of the current prefix (the pooled, highway-
transformed features before the output layer) leaks to the generator at every step: the generator is
:class:`~seqgan.models.leakgan.LeakGANGenerator` (a Manager that turns ``f_t`` into unit goals ``g_t`` in feature
space, a Worker whose logits are ``O_t w_t`` with ``w_t = psi(sum of the last c goals)``), bound to the
discriminator's features (:func:`~seqgan.models.bind_leak`).

One generator update (:meth:`LeakGANTrainer.generator_step`), hierarchical policy gradient:

1. sample ``batch_size`` sentences (the leak is read at every step) and estimate the value ``Q_t`` of every
   prefix ``s_t`` with ``num_rollouts`` Monte-Carlo completions scored by ``sigmoid(D)``
   (:class:`~seqgan.rollout.MonteCarloRollout`, a lagged rollout policy that reads the same leak);
2. bootstrapped rescaled activation: at every step the batch's values become
   ``sigmoid(delta * (0.5 - rank / B))`` (:func:`~seqgan.losses.rescaled_activation`);
3. along the sampled sentences (teacher forcing, eval mode, the sampling temperature): the features
   ``f_0 .. f_T``, the goals ``g_t`` and the tokens' log-probabilities (:meth:`LeakGANGenerator.trajectory`);
4. Manager: ``-sum_t Q_F(s_t, g_t) cos(f_{t+c} - f_t, g_t) / N`` (:func:`~seqgan.losses.leakgan_manager_loss`),
   ``Q_F(s_t, g_t)`` the rescaled value of the prefix the goal leads to, ``s_{min(t+c, L)}``
   (:func:`~seqgan.losses.goal_rewards`), the direction ``f_{min(t+c, L)} - f_t``
   (:func:`~seqgan.losses.goal_directions`);
5. Worker: REINFORCE, ``-sum_t (r^I_t + extrinsic_weight * Q_t) log G(y_t | s_{t-1}) / N``
   (:func:`~seqgan.losses.policy_gradient_loss`) with the intrinsic reward
   ``r^I_t = mean_{i=1..c} cos(f_t - f_{t-i}, g_{t-i})`` (:func:`~seqgan.losses.intrinsic_rewards`) and ``Q_t``
   the rescaled value of ``s_t``;
6. one Adam step on the sum: the goals enter the Worker as constants and the features are constants, so the
   Manager's parameters get the gradient of 4 only and the Worker's of 5 only (the paper's two updates); then the
   rollout policy moves towards the generator.

Discriminator rounds are SeqGAN's (binary cross-entropy on fresh samples against as many real sentences).
Interleaved training: after every ``mle_every`` epochs an MLE round (:func:`~seqgan.trainers.steps.mle_step`: the
Worker's likelihood plus the Manager's pretraining objective ``-mean_t cos(f_{t+c} - f_t, g_t)`` on real
sentences, :meth:`LeakGANGenerator.mle_extra_loss`), with its own optimizer. Pretraining trains the discriminator
before the MLE epochs (:mod:`seqgan.stages.pretrain`), so the generator learns to read a trained
discriminator's features. Settings: :class:`~seqgan.config.LeakGANConfig` (the ``leakgan`` section).
"""

from __future__ import annotations

import time

import torch
from torch import nn

from seqgan.config import Config, LeakGANConfig
from seqgan.distributed import unwrap
from seqgan.losses import (
    goal_directions,
    goal_rewards,
    intrinsic_rewards,
    leakgan_manager_loss,
    policy_gradient_loss,
    rescaled_activation,
)
from seqgan.models import bind_leak
from seqgan.models.leakgan import LeakGANGenerator
from seqgan.rollout import MonteCarloRollout
from seqgan.sampling import Samples, sample
from seqgan.trainers.base import AdversarialTrainer, NonFiniteGuard, guarded_update
from seqgan.trainers.steps import discriminator_epochs, discriminator_step, mle_step
from seqgan.utils import adam

__all__ = ["LeakGANTrainer", "leakgan_losses"]


def leakgan_losses(
    trajectory, rewards: torch.Tensor, horizon: int, delta: float, extrinsic_weight: float
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """The Manager's and the Worker's losses of one batch (steps 2, 4 and 5 of the module docstring).

    Args:
        trajectory: a :class:`~seqgan.models.leakgan.LeakTrajectory` of the sampled sentences.
        rewards: ``(B, T)`` rollout values ``Q_t`` of the prefixes ``s_t`` (column ``t - 1``).
        horizon: ``c``.
        delta: the rescaled activation's ``delta``.
        extrinsic_weight: weight of the rescaled ``Q_t`` in the Worker's reward.
    Returns:
        The Manager's loss, the Worker's loss (scalars with gradient) and detached statistics:
        ``intrinsic`` (mean r^I over real tokens), ``cos`` (mean cosine of goals and directions).
    """
    mask = trajectory.mask
    lengths = mask.sum(dim=1)
    scaled = rescaled_activation(rewards, mask, delta)  # (B, T)
    directions = goal_directions(trajectory.features, lengths, horizon)  # (B, T, F)
    manager = leakgan_manager_loss(trajectory.goals, directions, goal_rewards(scaled, lengths, horizon), mask)
    intrinsic = intrinsic_rewards(trajectory.features, trajectory.goals, horizon, mask)  # (B, T)
    worker = policy_gradient_loss(trajectory.log_probs, intrinsic + extrinsic_weight * scaled, mask)
    with torch.no_grad():
        cos = nn.functional.cosine_similarity(directions, trajectory.goals, dim=-1, eps=1e-8)[mask].mean()
        stats = {"intrinsic": intrinsic[mask].mean(), "cos": cos}
    return manager, worker, stats


class LeakGANTrainer(AdversarialTrainer):
    """LeakGAN's updates for a :class:`~seqgan.models.leakgan.LeakGANGenerator` and SeqGAN's CNN discriminator.

    Args:
        generator: the hierarchical generator (trained in place); it is bound to ``discriminator``'s features.
        discriminator: a :class:`~seqgan.models.discriminator.CNNDiscriminator`.
        config: :class:`~seqgan.config.LeakGANConfig` (defaults when None).
        max_len: length of the sampled sequences.
        rng: ``torch.Generator`` for sampling and rollouts (the global RNG when None).
        nan_guard: what a NaN/inf loss or gradient does (default: stop).
        batch_by_length: discriminator rounds draw length-bucketed batches.
    """

    section = "leakgan"

    def __init__(
        self,
        generator: LeakGANGenerator,
        discriminator: nn.Module,
        config: LeakGANConfig | None = None,
        *,
        max_len: int,
        rng: torch.Generator | None = None,
        nan_guard: NonFiniteGuard | None = None,
        batch_by_length: bool = True,
    ) -> None:
        gen = unwrap(generator)
        if not isinstance(gen, LeakGANGenerator):
            raise TypeError(
                f"LeakGAN trains its hierarchical generator (generator.kind=leakgan), got {type(gen).__name__}"
            )
        bind_leak(gen, discriminator)
        self.generator, self.discriminator = generator, discriminator
        self.config = cfg = config or LeakGANConfig()
        self.max_len, self.rng, self.batch_by_length = max_len, rng, batch_by_length
        self.nan_guard = nan_guard or NonFiniteGuard("stop")
        self.g_optimizer = adam(generator.parameters(), lr=cfg.g_lr)
        self.mle_optimizer = adam(generator.parameters(), lr=cfg.mle_lr)
        self.d_optimizer = adam(discriminator.parameters(), lr=cfg.d_lr)
        self.rollout = MonteCarloRollout(
            gen, update_rate=cfg.rollout_update_rate, temperature=cfg.temperature, rng=rng
        )
        self.g_steps = 0
        self.d_steps = 0
        self.epochs_done = 0

    @classmethod
    def config_options(cls, cfg: Config) -> dict:
        """Length-bucketed discriminator batches as ``discriminator.batch_by_length`` says."""
        return {"batch_by_length": cfg.discriminator.batch_by_length}

    def sample(self, num: int) -> Samples:
        """``num`` sequences at the training temperature (eval mode, no gradient; the leak read at every step)."""
        return sample(
            self.generator,
            num,
            self.max_len,
            temperature=self.config.temperature,
            rng=self.rng,
            batch_size=1024,
        )

    def train_epoch(self, real: torch.Tensor, data_rng: torch.Generator) -> dict[str, float]:
        """``g_steps`` generator updates, ``d_steps`` discriminator rounds (``d_num_negatives`` fresh samples and as
        many rows of ``real`` ``(N, T)``, ``d_epochs`` epochs in ``data_rng``'s order), then, every ``mle_every``
        epochs, an interleaved MLE round on ``real``.

        Returns:
            The last generator step's metrics, the discriminator rounds' mean metrics, ``mle/train_nll`` after an
            MLE round, ``time/{generator,discriminator,mle}_s`` and ``nan/skipped_steps``.
        """
        cfg = self.config
        metrics: dict[str, float] = {}
        t0 = time.perf_counter()
        for _ in range(cfg.g_steps):
            metrics.update(self.generator_step())
        t1 = time.perf_counter()
        for _ in range(cfg.d_steps):
            fake = self.sample(cfg.d_num_negatives).tokens
            idx = torch.randperm(len(real), generator=data_rng)[: cfg.d_num_negatives].to(real.device)
            skipped = self.nan_guard.skipped
            metrics.update(
                discriminator_epochs(
                    self.discriminator, self.d_optimizer, real[idx], fake, cfg.d_epochs, cfg.d_batch_size,
                    data_rng, self.nan_guard, by_length=self.batch_by_length,
                )
            )  # fmt: skip
            rounds = cfg.d_epochs * -(-min(len(idx), len(fake)) // cfg.d_batch_size)
            self.d_steps += rounds - (self.nan_guard.skipped - skipped)
        t2 = time.perf_counter()
        self.epochs_done += 1
        if cfg.mle_every and self.epochs_done % cfg.mle_every == 0:
            metrics.update(self.mle_round(real, data_rng))
        metrics["time/generator_s"] = t1 - t0
        metrics["time/discriminator_s"] = t2 - t1
        metrics["time/mle_s"] = time.perf_counter() - t2
        metrics["nan/skipped_steps"] = float(self.nan_guard.skipped)
        return metrics

    def mle_round(self, real: torch.Tensor, data_rng: torch.Generator) -> dict[str, float]:
        """Interleaved training: ``mle_steps`` MLE updates (all of ``real`` ``(N, T)`` when 0) on batches of
        ``batch_size`` rows in ``data_rng``'s order, each the Worker's likelihood plus the Manager's pretraining
        objective (:func:`~seqgan.trainers.steps.mle_step`), with the MLE optimizer.

        Returns:
            ``mle/train_nll``: the mean NLL per token over the round's applied updates.
        """
        cfg = self.config
        order = torch.randperm(len(real), generator=data_rng).to(real.device)
        batches = order.split(cfg.batch_size)
        if cfg.mle_steps:
            batches = batches[: cfg.mle_steps]
        losses = [
            mle_step(self.generator, self.mle_optimizer, real[idx], cfg.grad_clip, self.nan_guard)
            for idx in batches
        ]
        kept = [x for x in losses if x == x]  # a skipped update returns NaN
        return {"mle/train_nll": sum(kept) / max(len(kept), 1)}

    # ------------------------------------------------------------------ generator
    def generator_step(self) -> dict[str, float]:
        """One hierarchical policy-gradient update on ``batch_size`` fresh samples (see the module docstring).

        Returns:
            ``generator/manager_loss``, ``generator/worker_loss``, ``generator/grad_norm``,
            ``generator/sample_len``, ``generator/goal_cos`` (mean cosine of the goals and the directions that
            followed), ``reward/intrinsic`` (mean r^I), ``rollout/reward_mean`` (mean Q before rescaling).
        Raises:
            NonFiniteLossError: a NaN/inf loss or gradient and ``nan_policy=stop`` (no parameter is changed).
        """
        cfg, gen = self.config, unwrap(self.generator)
        samples = self.sample(cfg.batch_size)
        tokens, mask = samples.tokens, samples.mask  # (B, T)
        rewards = self.rollout(tokens, unwrap(self.discriminator), cfg.num_rollouts, rng=self.rng)  # (B, T)
        was_training = gen.training
        gen.eval()  # the distribution the samples were drawn from (no dropout)
        try:
            trajectory = gen.trajectory(tokens, cfg.temperature)
        finally:
            gen.train(was_training)
        manager, worker, stats = leakgan_losses(
            trajectory, rewards, gen.step_size, cfg.rescale_delta, cfg.extrinsic_weight
        )
        loss = manager + worker
        stepped, grad_norm = guarded_update(
            loss,
            self.g_optimizer,
            gen.parameters(),
            self.nan_guard,
            "generator",
            cfg.grad_clip,
            what=lambda: (
                f"LeakGAN generator loss (Manager {manager.item()}, Worker {worker.item()}) / gradient; lower "
                "leakgan.g_lr"
            ),
        )
        if stepped:
            self.rollout.update_policy(gen)
            self.g_steps += 1
        return {
            "generator/manager_loss": manager.item(),
            "generator/worker_loss": worker.item(),
            "generator/grad_norm": float(grad_norm),
            "generator/sample_len": float(mask.sum(dim=1).float().mean()),
            "generator/goal_cos": float(stats["cos"]),
            "reward/intrinsic": float(stats["intrinsic"]),
            "rollout/reward_mean": float(rewards[mask].mean()),
        }

    # ------------------------------------------------------------------ discriminator
    def discriminator_step(self, real_batch: torch.Tensor) -> dict[str, float]:
        """One BCE update on ``real_batch`` ``(B, T)`` against ``B`` fresh samples.

        Raises:
            NonFiniteLossError: a NaN/inf loss or gradient and ``nan_policy=stop`` (no parameter is changed).
        """
        real = real_batch.to(unwrap(self.generator).device)
        fake = self.sample(real.shape[0]).tokens
        skipped = self.nan_guard.skipped
        metrics = discriminator_step(self.discriminator, self.d_optimizer, real, fake, self.nan_guard)
        self.d_steps += self.nan_guard.skipped == skipped
        return metrics

    # ------------------------------------------------------------------ state
    def _extra_state(self) -> dict:
        return {
            "rollout": self.rollout.state_dict(),
            "mle_optimizer": self.mle_optimizer.state_dict(),
            "epochs_done": self.epochs_done,
        }

    def _load_extra_state(self, state: dict) -> None:
        self.rollout.load_state_dict(state["rollout"])
        self.mle_optimizer.load_state_dict(state["mle_optimizer"])
        self.epochs_done = int(state["epochs_done"])
