"""SeqGAN adversarial training by policy gradient (Yu et al. 2017, arXiv 1609.05473, Sec. 2 and Algorithm 1).

The generator is a stochastic policy over tokens. One generator update samples a batch, estimates the action
value of every token with Monte-Carlo rollouts scored by the discriminator
(:class:`~seqgan.rollout.MonteCarloRollout`), and takes a REINFORCE step on
``-mean_t log G(y_t | y_<t) * (Q_t - b_t)`` over real tokens (:func:`~seqgan.losses.policy_gradient_loss`); the
lagged rollout policy then moves towards the generator. One discriminator update is a binary cross-entropy step
on a real batch against as many fresh samples (:func:`seqgan.trainers.steps.discriminator_step`).

Log-probabilities are taken under the distribution the samples were drawn from
(:func:`~seqgan.losses.sampled_log_probs`: eval mode, ``temperature`` applied, the generator's ``never_sample``
ids excluded), so the update is the policy gradient of the sampling policy. Settings:
:class:`~seqgan.config.SeqGANConfig` (the ``seqgan`` config section).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch
from torch import nn

from seqgan.config import Config, SeqGANConfig
from seqgan.distributed import unwrap
from seqgan.losses import (
    ema_baseline_update,
    entropy_bonus,
    group_advantages,
    kl_to_reference,
    policy_gradient_loss,
    sampled_log_probs,
    step_baseline,
)
from seqgan.models.base import Generator
from seqgan.rollout import MonteCarloRollout
from seqgan.sampling import Samples, sample
from seqgan.trainers.base import (
    AdversarialTrainer,
    NonFiniteGuard,
    baseline_state,
    guarded_update,
    load_baseline,
    new_baseline,
)
from seqgan.trainers.steps import discriminator_epochs, discriminator_step
from seqgan.utils import adam

__all__ = ["PolicyGradientTrainer"]


class PolicyGradientTrainer(AdversarialTrainer):
    """SeqGAN's adversarial updates for any :class:`~seqgan.models.base.Generator` and a discriminator.

    Args:
        generator: the generator (trained in place).
        discriminator: ``(B, T)`` ids -> ``(B,)`` logits, e.g. :class:`~seqgan.models.discriminator.CNNDiscriminator`.
        config: :class:`~seqgan.config.SeqGANConfig` (defaults when None).
        max_len: length of the sampled sequences.
        rng: ``torch.Generator`` for sampling and rollouts (the global RNG when None). Dropout, if any, uses the
            global RNG.
        nan_guard: what a NaN/inf loss or gradient does (default: stop with :class:`NonFiniteLossError`).
        batch_by_length: discriminator rounds draw length-bucketed batches
            (:func:`~seqgan.trainers.steps.length_batches`).
        g_optimizer, d_optimizer: optimizers of the two models (default: Adam at ``g_lr`` / ``d_lr``).
        policy_source: the module the lagged rollout policy copies and follows (default: ``generator``
            without its DDP wrapper); a conditional trainer passes its generator bound to contexts.
        before_draw: called with the number of rows before each micro-batch is sampled (a conditional trainer
            binds that many contexts).

    With ``kl_coef > 0`` the trainer keeps a frozen copy of the policy as it receives it (the MLE checkpoint's
    generator; a resumed run's trainer is built from the same checkpoint before its state is loaded), the
    reference of the KL penalty (:attr:`reference`).

    The generator and discriminator may be :class:`~seqgan.distributed.DistributedModule` wrappers: rollouts
    then use the wrapped models (no gradients), the updates go through DDP.
    """

    section = "seqgan"

    def __init__(
        self,
        generator: Generator,
        discriminator: nn.Module,
        config: SeqGANConfig | None = None,
        *,
        max_len: int,
        rng: torch.Generator | None = None,
        nan_guard: NonFiniteGuard | None = None,
        batch_by_length: bool = True,
        g_optimizer: torch.optim.Optimizer | None = None,
        d_optimizer: torch.optim.Optimizer | None = None,
        policy_source: Generator | None = None,
        before_draw: Callable[[int], None] | None = None,
    ) -> None:
        if max_len < 1:
            raise ValueError(f"max_len must be positive, got {max_len}")
        self.generator = generator
        self.discriminator = discriminator
        self.config = config = config or SeqGANConfig()
        self.max_len = max_len
        self.batch_by_length = batch_by_length
        trainable = [p for p in generator.parameters() if p.requires_grad]  # LoRA: the adapters only
        self.g_optimizer = g_optimizer or adam(trainable, lr=config.g_lr)
        self.d_optimizer = d_optimizer or adam(discriminator.parameters(), lr=config.d_lr)
        self.rng = rng
        self.nan_guard = nan_guard or NonFiniteGuard("stop")
        self.policy_source = unwrap(policy_source if policy_source is not None else generator)
        self.rollout = MonteCarloRollout(
            self.policy_source,
            update_rate=config.rollout_update_rate,
            temperature=config.temperature,
            max_rows=config.rollout_chunk_rows or None,
            rng=rng,
            parallel=config.rollout_parallel,
        )
        self.before_draw = before_draw
        self.reference = None
        if config.kl_coef > 0:
            self.reference = copy.deepcopy(self.policy_source).eval().requires_grad_(False)
        self.baseline_ema, self.baseline_seen = new_baseline(max_len, generator.device)  # (T,) each
        self.g_steps = 0
        self.d_steps = 0

    @classmethod
    def config_options(cls, cfg: Config) -> dict:
        """Length-bucketed discriminator batches as ``discriminator.batch_by_length`` says."""
        return {"batch_by_length": cfg.discriminator.batch_by_length}

    def sample(self, num: int) -> Samples:
        """``num`` sequences from the generator at the training temperature (eval mode, no gradient)."""
        cfg = self.config
        return sample(
            self.generator, num, self.max_len, temperature=cfg.temperature, rng=self.rng, batch_size=1024
        )

    def train_epoch(self, real: torch.Tensor, data_rng: torch.Generator) -> dict[str, float]:
        """One adversarial epoch (SeqGAN's Algorithm 1 loop body).

        ``g_steps`` generator updates, then ``d_steps`` rounds of: sample ``d_num_negatives`` fresh sentences,
        draw as many real ones from ``real`` ``(N, T)``, train ``d_epochs`` epochs on them in ``data_rng``'s order.

        Returns:
            The last generator step's metrics, the discriminator rounds' mean metrics, ``nan/skipped_steps`` and
            ``time/generator_s``.
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
                    by_length=self.batch_by_length,
                )
            )
        metrics["nan/skipped_steps"] = float(self.nan_guard.skipped)
        return metrics

    # ------------------------------------------------------------------ generator
    def baseline(self, rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        """The baseline for ``rewards`` ``(B, T)``: None, or ``(T,)`` per-step values (no state change)."""
        return step_baseline(self.config.baseline, rewards, mask, self.baseline_ema, self.baseline_seen)

    def update_baseline(self, rewards: torch.Tensor, mask: torch.Tensor) -> None:
        """Moves the EMA baseline by the per-step means of ``rewards`` ``(B, T)`` (after they were used)."""
        t = rewards.shape[1]
        ema_baseline_update(
            self.baseline_ema[:t], self.baseline_seen[:t], rewards, mask, self.config.ema_decay
        )

    def draw(self) -> tuple[Samples, torch.Tensor]:
        """One micro-batch: ``batch_size`` samples (:meth:`draw_batch`) and their ``(B, T)`` rollout rewards
        (no gradient)."""
        cfg = self.config
        if self.before_draw is not None:
            self.before_draw(cfg.batch_size)
        samples = self.draw_batch()
        with torch.autocast(samples.tokens.device.type, enabled=False):  # rewards in fp32 under a bf16 run
            rewards = self.rollout(
                samples.tokens, unwrap(self.discriminator), cfg.num_rollouts, rng=self.rng
            )  # (B, T)
        return samples, rewards

    def micro_loss(
        self, samples: Samples, rewards: torch.Tensor, total_tokens: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of one micro-batch, its tokens weighted by ``1 / total_tokens`` (the real tokens of all the
        update's micro-batches), so that the micro-batches' losses add up to the loss of one large batch.

        Returns:
            The scalar loss (with gradient) and its detached parts (``pg_loss``, ``entropy``, ``kl``), weighted
            the same way.
        """
        cfg, gen = self.config, self.generator
        tokens, mask = samples.tokens, samples.mask  # (B, T)
        weight = mask.sum().clamp(min=1).item() / max(total_tokens, 1)
        log_probs, log_dist = sampled_log_probs(gen, tokens, mask, cfg.temperature)  # (B, T), (N, V)
        if cfg.baseline == "group":
            advantage, baseline = group_advantages(rewards, mask, cfg.group_size), None
        else:
            advantage, baseline = rewards, self.baseline(rewards, mask)
        weights, stats = self.token_weights(samples, log_probs)
        if weights is not None:  # off-policy: each token's advantage times its importance weight
            advantage = weights * (advantage - baseline if baseline is not None else advantage)
            baseline = None
        pg_loss = policy_gradient_loss(log_probs, advantage, mask, baseline)
        ones = log_dist.new_ones(1, log_dist.shape[0], dtype=torch.bool)
        entropy = entropy_bonus(log_dist[None], ones)
        loss = pg_loss - cfg.entropy_coef * entropy if cfg.entropy_coef else pg_loss
        kl = torch.zeros(())
        if self.reference is not None:
            with torch.no_grad():
                _, ref_log_dist = sampled_log_probs(self.reference, tokens, mask, cfg.temperature)
            kl = kl_to_reference(log_dist, ref_log_dist, tokens[mask], cfg.kl_estimator).mean()
            loss = loss + cfg.kl_coef * kl
        parts = {"pg_loss": pg_loss.detach(), "entropy": entropy.detach(), "kl": kl.detach()}
        parts.update({k: torch.tensor(v) for k, v in stats.items()})
        return loss * weight, {k: v * weight for k, v in parts.items()}

    def generator_step(self, real_batch: torch.Tensor | None = None) -> dict[str, float]:
        """One SeqGAN generator update: sample, rollout rewards, REINFORCE step, move the rollout policy.

        With ``grad_accum_steps = k`` the update sums the gradients of ``k`` micro-batches (:meth:`draw` then
        :meth:`micro_loss`, one at a time) before the one optimizer step. ``real_batch`` is not used (the policy
        gradient needs no real data).

        Returns:
            ``generator/pg_loss``, ``generator/entropy``, ``generator/grad_norm``, ``generator/sample_len``,
            ``rollout/reward_mean`` (mean reward over real tokens), ``rollout/reward_last`` (mean
            ``sigmoid(D)`` of the whole sampled sequences), and ``generator/kl`` with a KL penalty.
        Raises:
            NonFiniteLossError: a NaN/inf loss or gradient and ``nan_policy=stop`` (no parameter is changed).
        """
        cfg, gen = self.config, self.generator
        batches = [self.draw() for _ in range(cfg.grad_accum_steps)]
        total = int(sum(int(s.mask.sum()) for s, _ in batches))
        self.g_optimizer.zero_grad(set_to_none=True)
        parts: dict[str, float] = {"loss": 0.0, "pg_loss": 0.0, "entropy": 0.0, "kl": 0.0}
        for i, (samples, rewards) in enumerate(batches):
            loss, micro = self.micro_loss(samples, rewards, total)
            parts["loss"] += float(loss.detach())
            for k, v in micro.items():
                parts[k] = parts.get(k, 0.0) + float(v)
            if i + 1 < len(batches):
                loss.backward()
        stepped, grad_norm = guarded_update(
            loss,
            self.g_optimizer,
            gen.parameters(),
            self.nan_guard,
            "generator",
            cfg.grad_clip,
            what=lambda: (
                f"generator loss {parts['loss']} (pg_loss {parts['pg_loss']}, entropy {parts['entropy']}"
                + (f", kl {parts['kl']}" if self.reference is not None else "")
                + f", reward range [{min(float(r.min()) for _, r in batches):.3g}, "
                f"{max(float(r.max()) for _, r in batches):.3g}]); the step was skipped: lower seqgan.g_lr or "
                "check the generator's weights and the discriminator's outputs"
            ),
            keep_grads=True,
        )
        if stepped:
            if cfg.baseline == "ema":
                for samples, rewards in batches:
                    self.update_baseline(rewards, samples.mask)
            self.rollout.update_policy(self.policy_source)
            self.g_steps += 1

        mask = torch.cat([nn.functional.pad(s.mask, (0, self.max_len - s.mask.shape[1])) for s, _ in batches])
        rewards = torch.cat([nn.functional.pad(r, (0, self.max_len - r.shape[1])) for _, r in batches])
        lengths = mask.sum(dim=1)  # (B,)
        metrics = {
            "generator/pg_loss": parts["pg_loss"],
            "generator/entropy": parts["entropy"],
            "generator/grad_norm": float(grad_norm),
            "generator/sample_len": float(lengths.float().mean()),
            "rollout/reward_mean": float(rewards[mask].mean()),
            "rollout/reward_last": float(rewards.gather(1, (lengths - 1).clamp(min=0)[:, None]).mean()),
        }
        if self.reference is not None:
            metrics["generator/kl"] = parts["kl"]
        metrics.update({k: v for k, v in parts.items() if "/" in k})  # a trainer's own (token_weights)
        return metrics

    def draw_batch(self) -> Samples:
        """The samples a micro-batch learns from: ``batch_size`` sequences of the policy itself at the training
        temperature. Off-policy trainers draw from another distribution and weight the tokens
        (:meth:`token_weights`)."""
        cfg = self.config
        return sample(self.generator, cfg.batch_size, self.max_len, temperature=cfg.temperature, rng=self.rng)

    def token_weights(self, samples: Samples, log_probs: torch.Tensor) -> tuple[torch.Tensor | None, dict]:
        """Per-token importance weights ``(B, T)`` of an off-policy batch and their metrics (``"name/key"``
        means over its real tokens); ``(None, {})`` for the policy's own samples. ``log_probs`` are the
        policy's log-probabilities of the sampled tokens."""
        return None, {}

    # ------------------------------------------------------------------ discriminator
    def discriminator_step(self, real_batch: torch.Tensor) -> dict[str, float]:
        """One BCE update on ``real_batch`` ``(B, T)`` against ``B`` fresh generator samples.

        Returns:
            ``discriminator/loss``, ``discriminator/acc_real``, ``discriminator/acc_fake``.
        Raises:
            NonFiniteLossError: a NaN/inf loss or gradient and ``nan_policy=stop`` (no parameter is changed).
        """
        real = real_batch.to(self.generator.device)
        fake = sample(
            self.generator, real.shape[0], self.max_len, temperature=self.config.temperature, rng=self.rng
        ).tokens
        skipped = self.nan_guard.skipped
        metrics = discriminator_step(self.discriminator, self.d_optimizer, real, fake, self.nan_guard)
        self.d_steps += self.nan_guard.skipped == skipped  # a skipped update is not a step
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
