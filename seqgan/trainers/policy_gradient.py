"""SeqGAN adversarial training by policy gradient (Yu et al. 2017, arXiv 1609.05473, Sec. 2 and Algorithm 1).

The generator is a stochastic policy over tokens. One generator update samples a batch, estimates the action
value of every token with Monte-Carlo rollouts scored by the discriminator
(:class:`~seqgan.rollout.MonteCarloRollout`), and takes a REINFORCE step on
``-mean_t log G(y_t | y_<t) * (Q_t - b_t)`` over real tokens
(:func:`~seqgan.losses.policy_gradient_loss`); the lagged rollout policy then moves towards the generator.
One discriminator update is a binary cross-entropy step on a real batch against as many fresh samples
(:func:`seqgan.training.discriminator_step`).

Log-probabilities are taken under the distribution the samples are drawn from: ``temperature`` applied and the
generator's ``never_sample`` ids (PAD, BOS) excluded, so the update is the unbiased policy gradient of the
sampling policy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from seqgan.config import Config
from seqgan.distributed import unwrap
from seqgan.losses import ema_baseline_update, entropy_bonus, policy_gradient_loss, step_baseline
from seqgan.models.base import Generator
from seqgan.rollout import MonteCarloRollout
from seqgan.sampling import sample
from seqgan.trainers.base import AdversarialTrainer, baseline_state, load_baseline, new_baseline
from seqgan.training import NonFiniteGuard, discriminator_epochs, discriminator_step
from seqgan.utils import adam

__all__ = ["PolicyGradientConfig", "PolicyGradientTrainer"]


@dataclass
class PolicyGradientConfig:
    batch_size: int = 64
    """Sequences sampled per generator update."""
    num_rollouts: int = 16
    """Monte-Carlo completions per prefix (R; SeqGAN uses 16)."""
    rollout_update_rate: float = 0.8
    """The rollout policy lags the generator: rollout = rate * rollout + (1 - rate) * generator after each
    generator update (SeqGAN's update_rate is 0.8); 0 rolls out with the current generator (TextGAN-PyTorch)."""
    baseline: Literal["none", "mean", "ema"] = "none"
    """Reward baseline b_t: none (SeqGAN); mean: mean reward at step t over the batch's real tokens; ema: an
    exponential moving average of those per-step means, used then updated (initialised with the first mean)."""
    ema_decay: float = 0.9
    """Decay of the EMA baseline: b_t <- decay * b_t + (1 - decay) * mean_t."""
    entropy_coef: float = 0.0
    """Weight of the entropy bonus: the loss is pg_loss - entropy_coef * mean entropy over real tokens."""
    g_lr: float = 1e-3
    """Adam learning rate of the generator. SeqGAN's code and TextGAN-PyTorch reuse the MLE rate, Adam 1e-2, for
    the adversarial updates (the loss normalisation does not matter under Adam); 1e-3 is gentler on a pretrained
    generator (RelGAN goes down to 1e-4). Set 1e-2 to reproduce SeqGAN."""
    d_lr: float = 1e-4
    """Adam learning rate of the discriminator (TextGAN-PyTorch's dis_lr)."""
    grad_clip: float = 5.0
    """Generator gradient-norm clipping, as in SeqGAN (0 disables)."""
    temperature: float = 1.0
    """Sampling temperature of the generated batches and of the rollouts."""
    max_len: int = 37
    """Length of the sampled sequences (COCO captions: 37)."""
    rollout_chunk_rows: int = 0
    """Most rollout rows decoded at once (memory bound; 0: no cap besides the transformer key/value budget)."""
    g_steps: int = 1
    """:meth:`PolicyGradientTrainer.train_epoch`: generator updates per epoch."""
    d_steps: int = 4
    """:meth:`PolicyGradientTrainer.train_epoch`: discriminator rounds per epoch (fresh negatives each round)."""
    d_epochs: int = 2
    """Discriminator epochs per round."""
    d_num_negatives: int = 10000
    """Generated sentences per discriminator round (as many real sentences are drawn)."""
    d_batch_size: int = 64
    """Discriminator batch size in the rounds."""
    d_batch_by_length: bool = True
    """Discriminator batches of similar lengths (:func:`seqgan.training.length_batches`)."""

    @classmethod
    def from_config(cls, cfg: Config) -> PolicyGradientConfig:
        """The trainer settings of an experiment :class:`~seqgan.config.Config` (``adversarial`` section)."""
        a = cfg.adversarial
        return cls(
            batch_size=a.batch_size,
            num_rollouts=a.num_rollouts,
            rollout_update_rate=a.rollout_update_rate,
            baseline=a.baseline,
            ema_decay=a.ema_decay,
            entropy_coef=a.entropy_coef,
            g_lr=a.g_lr,
            d_lr=a.d_lr,
            grad_clip=a.grad_clip,
            temperature=1.0,
            max_len=cfg.data.max_len,
            rollout_chunk_rows=a.rollout_chunk_rows,
            g_steps=a.g_steps,
            d_steps=a.d_steps,
            d_epochs=a.d_epochs,
            d_num_negatives=a.d_num_negatives,
            d_batch_size=a.d_batch_size,
            d_batch_by_length=cfg.discriminator.batch_by_length,
        )

    def __post_init__(self) -> None:
        if self.baseline not in ("none", "mean", "ema"):
            raise ValueError(f"baseline must be 'none', 'mean' or 'ema', got {self.baseline!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.batch_size < 1 or self.num_rollouts < 1 or self.max_len < 1:
            raise ValueError("batch_size, num_rollouts and max_len must be positive")
        if self.rollout_chunk_rows < 0:
            raise ValueError(f"rollout_chunk_rows must be >= 0, got {self.rollout_chunk_rows}")


class _GuardedOptimizer:
    """Refuses to step when a gradient is not finite (used around :func:`seqgan.training.discriminator_step`)."""

    def __init__(self, optimizer: torch.optim.Optimizer, module: nn.Module, what: str) -> None:
        self.optimizer, self.module, self.what = optimizer, module, what

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for name, p in self.module.named_parameters():
            if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                self.optimizer.zero_grad(set_to_none=True)
                raise FloatingPointError(
                    f"non-finite {self.what} gradient in {name!r}; the step was skipped (lower d_lr or check the "
                    "discriminator's inputs)"
                )
        self.optimizer.step()


class PolicyGradientTrainer(AdversarialTrainer):
    """SeqGAN's adversarial updates for any :class:`~seqgan.models.base.Generator` and a discriminator.

    Args:
        generator: the generator (trained in place).
        discriminator: ``(B, T)`` ids -> ``(B,)`` logits, e.g. :class:`~seqgan.models.discriminator.CNNDiscriminator`.
        config: :class:`PolicyGradientConfig`.
        g_optimizer: optimizer of the generator's parameters (default Adam at ``config.g_lr``).
        d_optimizer: optimizer of the discriminator's parameters (default Adam at ``config.d_lr``).
        rng: ``torch.Generator`` for sampling and rollouts (the global RNG when None). Dropout, if any, uses the
            global RNG.

    ``nan_guard`` (a :class:`~seqgan.training.NonFiniteGuard`, default policy ``stop``) decides what a NaN/inf
    loss or gradient does: the update is never applied; the step raises or is skipped and counted.
    The generator and discriminator may be :class:`~seqgan.distributed.DistributedModule` wrappers: rollouts
    then use the wrapped models (no gradients), the updates go through DDP.
    """

    def __init__(
        self,
        generator: Generator,
        discriminator: nn.Module,
        config: PolicyGradientConfig,
        g_optimizer: torch.optim.Optimizer | None = None,
        d_optimizer: torch.optim.Optimizer | None = None,
        rng: torch.Generator | None = None,
    ) -> None:
        self.generator = generator
        self.discriminator = discriminator
        self.config = config
        self.g_optimizer = g_optimizer or adam(generator.parameters(), lr=config.g_lr)
        self.d_optimizer = d_optimizer or adam(discriminator.parameters(), lr=config.d_lr)
        self.rng = rng
        self.nan_guard = NonFiniteGuard("stop")
        self.rollout = MonteCarloRollout(
            unwrap(generator),
            update_rate=config.rollout_update_rate,
            temperature=config.temperature,
            max_rows=config.rollout_chunk_rows or None,
            rng=rng,
        )
        device = generator.device
        self.baseline_ema, self.baseline_seen = new_baseline(config.max_len, device)  # (T,) each
        self.g_steps = 0
        self.d_steps = 0
        self._banned = torch.tensor(generator.never_sample, dtype=torch.long, device=device)

    @classmethod
    def from_config(
        cls, cfg: Config, generator: Generator, discriminator: nn.Module, rng: torch.Generator | None = None
    ) -> PolicyGradientTrainer:
        """The trainer an experiment config describes (``adversarial.method: seqgan``)."""
        return cls(generator, discriminator, PolicyGradientConfig.from_config(cfg), rng=rng)

    def train_epoch(self, real: torch.Tensor, data_rng: torch.Generator) -> dict[str, float]:
        """One adversarial epoch (SeqGAN's Algorithm 1 loop body).

        ``g_steps`` generator updates, then ``d_steps`` rounds of: sample ``d_num_negatives`` fresh sentences,
        draw as many real ones from ``real`` ``(N, T)``, train ``d_epochs`` epochs on them in ``data_rng``'s order.

        Returns:
            The last generator step's metrics, the discriminator rounds' mean metrics and
            ``time/generator_s``.
        """
        cfg = self.config
        metrics: dict[str, float] = {}
        t0 = time.perf_counter()
        for _ in range(cfg.g_steps):
            metrics.update(self.generator_step())
        metrics["time/generator_s"] = time.perf_counter() - t0
        for _ in range(cfg.d_steps):
            fake = sample(
                self.generator,
                cfg.d_num_negatives,
                cfg.max_len,
                temperature=cfg.temperature,
                rng=self.rng,
                batch_size=1024,
            ).tokens
            idx = torch.randperm(len(real), generator=data_rng)[: cfg.d_num_negatives].to(real.device)
            metrics.update(
                discriminator_epochs(
                    self.discriminator,
                    self.d_optimizer,
                    real[idx],
                    fake,
                    cfg.d_epochs,
                    cfg.d_batch_size,
                    data_rng,
                    self.nan_guard,
                    by_length=cfg.d_batch_by_length,
                )
            )
        metrics["nan/skipped_steps"] = float(self.nan_guard.skipped)
        return metrics

    # ------------------------------------------------------------------ generator
    def sampling_log_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """``(B, T, V)`` logits -> log-probabilities of the sampling distribution (temperature, excluded ids)."""
        logits = logits.float()
        if len(self._banned):
            logits = logits.index_fill(-1, self._banned, float("-inf"))
        return F.log_softmax(logits / self.config.temperature, dim=-1)

    def baseline(self, rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        """The baseline for ``rewards`` ``(B, T)``: None, or ``(T,)`` per-step values (no state change)."""
        return step_baseline(self.config.baseline, rewards, mask, self.baseline_ema, self.baseline_seen)

    def _update_ema(self, rewards: torch.Tensor, mask: torch.Tensor) -> None:
        t = rewards.shape[1]
        ema_baseline_update(
            self.baseline_ema[:t], self.baseline_seen[:t], rewards, mask, self.config.ema_decay
        )

    def generator_step(self) -> dict[str, float]:
        """One SeqGAN generator update: sample, rollout rewards, REINFORCE step, move the rollout policy.

        Returns:
            ``generator/pg_loss``, ``generator/entropy``, ``generator/grad_norm``, ``generator/sample_len``,
            ``rollout/reward_mean`` (mean reward over real tokens) and ``rollout/reward_last`` (mean
            ``sigmoid(D)`` of the whole sampled sequences).
        Raises:
            FloatingPointError: the loss is not finite (no parameter is changed).
        """
        cfg, gen = self.config, self.generator
        samples = sample(gen, cfg.batch_size, cfg.max_len, temperature=cfg.temperature, rng=self.rng)
        tokens, mask = samples.tokens, samples.mask  # (B, T)
        with torch.autocast(tokens.device.type, enabled=False):  # rewards in fp32 under a bf16 recipe
            rewards = self.rollout(
                tokens, unwrap(self.discriminator), cfg.num_rollouts, rng=self.rng
            )  # (B, T)

        gen.train()
        log_probs_all = self.sampling_log_probs(gen(gen.teacher_inputs(tokens)))  # (B, T, V)
        log_probs = log_probs_all.gather(2, tokens[:, :, None]).squeeze(2)  # (B, T)
        baseline = self.baseline(rewards, mask)
        pg_loss = policy_gradient_loss(log_probs, rewards, mask, baseline)
        entropy = entropy_bonus(log_probs_all, mask)
        loss = pg_loss - cfg.entropy_coef * entropy if cfg.entropy_coef else pg_loss
        self.g_optimizer.zero_grad(set_to_none=True)
        loss.backward()  # before the finiteness check: under DDP every rank must take part in the all-reduce
        grad_norm = (
            nn.utils.clip_grad_norm_(gen.parameters(), cfg.grad_clip)
            if cfg.grad_clip > 0
            else _grad_norm(gen)
        )
        stepped = self.nan_guard.ok(
            loss.detach(),
            grad_norm,
            what=lambda: (
                f"generator loss {loss.item()} (pg_loss {pg_loss.item()}, entropy {entropy.item()}, reward "
                f"range [{rewards.min().item():.3g}, {rewards.max().item():.3g}], gradient norm "
                f"{float(grad_norm):.3g}); the step was skipped: lower g_lr or check the generator's weights and "
                "the discriminator's outputs"
            ),
            kind="generator",
        )
        if stepped:
            self.g_optimizer.step()
            if cfg.baseline == "ema":
                self._update_ema(rewards, mask)
            self.rollout.update_policy(unwrap(gen))
            self.g_steps += 1
        else:
            self.g_optimizer.zero_grad(set_to_none=True)

        lengths = mask.sum(dim=1)  # (B,)
        return {
            "generator/pg_loss": pg_loss.item(),
            "generator/entropy": entropy.item(),
            "generator/grad_norm": float(grad_norm),
            "generator/sample_len": float(lengths.float().mean()),
            "rollout/reward_mean": float(rewards[mask].mean()),
            "rollout/reward_last": float(rewards.gather(1, (lengths - 1)[:, None]).mean()),
        }

    # ------------------------------------------------------------------ discriminator
    def discriminator_step(self, real_batch: torch.Tensor) -> dict[str, float]:
        """One BCE update on ``real_batch`` ``(B, T)`` against ``B`` fresh generator samples.

        Returns:
            ``discriminator/loss``, ``discriminator/acc_real``, ``discriminator/acc_fake``.
        Raises:
            FloatingPointError: a gradient or the loss is not finite (the step is skipped when a gradient is).
        """
        cfg = self.config
        real = real_batch.to(self.generator.device)
        fake = sample(
            self.generator, real.shape[0], cfg.max_len, temperature=cfg.temperature, rng=self.rng
        ).tokens
        guarded = _GuardedOptimizer(self.d_optimizer, self.discriminator, "discriminator")
        metrics = discriminator_step(self.discriminator, guarded, real, fake)
        if not torch.isfinite(torch.tensor(metrics["discriminator/loss"])):
            raise FloatingPointError(f"non-finite discriminator loss {metrics['discriminator/loss']}")
        self.d_steps += 1
        return metrics

    # ------------------------------------------------------------------ state
    def _extra_state(self) -> dict:
        return {
            "rollout": self.rollout.state_dict(),
            "baseline": baseline_state(self.baseline_ema, self.baseline_seen),
        }

    def _load_extra_state(self, state: dict) -> None:
        self.rollout.load_state_dict(state["rollout"])
        load_baseline(state["baseline"], self.baseline_ema, self.baseline_seen)


def _grad_norm(module: nn.Module) -> torch.Tensor:
    grads = [p.grad.detach().norm() for p in module.parameters() if p.grad is not None]
    return torch.stack(grads).norm() if grads else torch.tensor(0.0)
