"""SentiGAN (Wang & Wan, "SentiGAN: Generating Sentimental Texts via Mixture Adversarial Networks", IJCAI 2018).

k generators (one per class: :class:`~seqgan.models.class_conditional.LSTMPerClass`; a shared
:class:`~seqgan.models.class_conditional.ClassLSTM` works too) and one discriminator with ``k + 1`` outputs,
the k real classes and "generated". The discriminator is trained by cross-entropy: a real sentence of class
``i`` has target ``i``, every generated sentence target ``k``
(:func:`~seqgan.trainers.category.multiclass_discriminator_step`).

Generator ``G_i`` minimises the *penalty* of its samples (:func:`~seqgan.losses.sentigan_penalty_loss`):
``V_t = 1 - D_i(Y)`` is the probability that a sentence is *not* a real sentence of class ``i`` (generated, or
real of another class), estimated for every prefix ``y_1..t`` by SeqGAN's Monte-Carlo rollouts
(:class:`~seqgan.rollout.MonteCarloRollout`, with :class:`~seqgan.models.class_conditional.ClassBoundDiscriminator`
giving each completion ``D_i`` of its own sample's class), and the loss weights it by the token's probability
``G_i(y_t | y_<t)`` (the paper's objective) or its log-probability. One generator step samples ``batch_size``
sentences of every class (each class on its own, so that it decodes on its LSTM's fused fast path) and updates
every generator once (one Adam over all of them: the generators share no
parameter, so each gets the update of its own loss; clipping acts on their joint gradient norm).

Two options beyond the paper: a baseline (``sentigan.baseline: mean``: every penalty is positive, so without one
each update pushes every sampled token down and the generators' entropy rises) and MLE updates on real sentences
between the adversarial ones (``sentigan.mle_every``, as SentiGAN's released code interleaves MLE training).

Settings: :class:`~seqgan.config.SentiGANConfig` (the ``sentigan`` section).
"""

from __future__ import annotations

import time

import torch
from torch import nn

from seqgan.config import SentiGANConfig
from seqgan.distributed import unwrap
from seqgan.losses import sampled_log_probs, sentigan_penalty_loss, step_means
from seqgan.models.class_conditional import ClassBoundDiscriminator
from seqgan.models.seq2seq import BoundGenerator
from seqgan.rollout import MonteCarloRollout
from seqgan.sampling import sample
from seqgan.trainers.base import AdversarialTrainer, NonFiniteGuard, guarded_update
from seqgan.trainers.category import (
    check_multiclass,
    class_draw,
    class_members,
    multiclass_discriminator_round,
    multiclass_discriminator_step,
    sample_classes,
)
from seqgan.trainers.steps import mle_step
from seqgan.utils import adam

__all__ = ["SentiGANTrainer"]


class SentiGANTrainer(AdversarialTrainer):
    """SentiGAN's adversarial updates (see the module docstring).

    Args:
        generator: a class-conditional generator (``num_classes`` classes; trained in place).
        discriminator: a :class:`~seqgan.models.discriminator.CNNDiscriminator` with ``num_outputs = k + 1``.
        config: :class:`~seqgan.config.SentiGANConfig` (defaults when None).
        max_len: length of the sampled sentences.
        rng: ``torch.Generator`` for sampling and rollouts.
        nan_guard: what a NaN/inf loss or gradient does (default: stop).
    Raises:
        ValueError: the discriminator does not have ``k + 1`` outputs.
    """

    section = "sentigan"

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        config: SentiGANConfig | None = None,
        *,
        max_len: int,
        rng: torch.Generator | None = None,
        nan_guard: NonFiniteGuard | None = None,
    ) -> None:
        self.config = config = config or SentiGANConfig()
        self.generator, self.discriminator = generator, discriminator
        self.num_classes = check_multiclass("SentiGAN", generator, discriminator)
        self.max_len = max_len
        self.rng = rng
        self.nan_guard = nan_guard or NonFiniteGuard("stop")
        self.g_optimizer = adam(generator.parameters(), lr=config.g_lr)
        self.d_optimizer = adam(discriminator.parameters(), lr=config.d_lr)
        labels = torch.zeros(config.batch_size, 1, dtype=torch.long, device=unwrap(generator).device)
        self.bound = BoundGenerator(generator, labels[:1])
        self.policy_source = BoundGenerator(unwrap(generator), labels[:1])
        self.rollout = MonteCarloRollout(
            self.policy_source,
            update_rate=config.rollout_update_rate,
            temperature=config.temperature,
            max_rows=None,  # a bound generator decodes a batch in one piece
            rng=rng,
        )
        self.bound_discriminator = ClassBoundDiscriminator(unwrap(discriminator), labels[:, 0])
        self.g_steps = 0
        self.d_steps = 0

    def bind(self, label: int) -> None:
        """Conditions the generator, the rollout policy and the discriminator on class ``label`` (every row)."""
        device = unwrap(self.generator).device
        labels = torch.full((self.config.batch_size,), label, dtype=torch.long, device=device)
        self.bound.rebind(labels[:1, None])
        self.policy_source.rebind(labels[:1, None])
        if self.rollout.policy is not self.policy_source:
            self.rollout.policy.rebind(labels[:1, None])
        self.bound_discriminator.rebind(labels)

    # ------------------------------------------------------------------ generator
    def generator_step(self, real=None, real_labels: torch.Tensor | None = None) -> dict[str, float]:
        """One update of every generator: ``batch_size`` samples per class, their rollout penalties
        ``1 - D_i`` (minus the baseline), the penalty loss summed over the classes; then, every ``mle_every``
        applied updates, one MLE update on the real sentences ``real`` (``(N, T)`` with ``(N,)`` classes
        ``real_labels``, or an object with ``tokens`` and ``labels``; needed only then).

        Returns:
            ``generator/penalty_loss`` (summed over classes), ``generator/grad_norm``, ``generator/sample_len``,
            ``rollout/reward_mean`` (mean ``D_i`` of the prefixes: the probability of being real of the right
            class), ``rollout/reward_last`` (``D_i`` of whole samples), ``rollout/reward_last_<class id>`` and
            ``generator/teacher_forcing_nll`` when an MLE update ran.
        Raises:
            NonFiniteLossError: a NaN/inf loss or gradient and ``nan_policy=stop`` (no parameter is changed).
        """
        cfg, k = self.config, self.num_classes
        losses, rewards_all, masks, last = [], [], [], []
        for i in range(k):  # one class at a time: each decodes on its own (fused) fast path
            self.bind(i)
            samples = sample(
                self.bound, cfg.batch_size, self.max_len, temperature=cfg.temperature, rng=self.rng
            )
            tokens, mask = samples.tokens, samples.mask  # (B, T)
            with torch.autocast(tokens.device.type, enabled=False):  # rewards in fp32 under a bf16 run
                rewards = self.rollout(
                    tokens, self.bound_discriminator, cfg.num_rollouts, rng=self.rng
                )  # D_i
            log_probs, _ = sampled_log_probs(self.bound, tokens, mask, cfg.temperature)  # (B, T)
            penalties = 1.0 - rewards
            if cfg.baseline == "mean":
                penalties = penalties - step_means(penalties, mask)  # (B, T) - (T,)
            losses.append(sentigan_penalty_loss(log_probs, penalties, mask, cfg.penalty))
            lengths = mask.sum(dim=1)
            last.append(float(rewards.gather(1, (lengths - 1)[:, None]).mean()))
            rewards_all.append(rewards[mask])
            masks.append(lengths)
        loss = torch.stack(losses).sum()
        stepped, grad_norm = guarded_update(
            loss,
            self.g_optimizer,
            self.generator.parameters(),
            self.nan_guard,
            "generator",
            cfg.grad_clip,
            what=lambda: f"generator penalty loss {loss.item()}; the step was skipped: lower sentigan.g_lr",
        )
        metrics = {}
        if stepped:
            self.rollout.update_policy(self.policy_source)
            self.g_steps += 1
            if cfg.mle_every and self.g_steps % cfg.mle_every == 0:
                metrics["generator/teacher_forcing_nll"] = self._mle(real, real_labels)
        return {
            **metrics,
            "generator/penalty_loss": loss.item(),
            "generator/grad_norm": float(grad_norm),
            "generator/sample_len": float(torch.cat(masks).float().mean()),
            "rollout/reward_mean": float(torch.cat(rewards_all).mean()),
            "rollout/reward_last": sum(last) / k,
            **{f"rollout/reward_last_{i}": last[i] for i in range(k)},
        }

    def _mle(self, real, real_labels: torch.Tensor | None) -> float:
        """One MLE update of the generators on real sentences of their classes (SentiGAN's code keeps training
        the generators by maximum likelihood between the adversarial batches)."""
        if real is None:
            raise ValueError("sentigan.mle_every needs real sentences: generator_step(real, real_labels)")
        if real_labels is None:
            real, real_labels = real.tokens, real.labels
        device = unwrap(self.generator).device
        bound = BoundGenerator(self.generator, real_labels.to(device)[:, None])
        return mle_step(bound, self.g_optimizer, real.to(device), self.config.grad_clip, self.nan_guard)

    # ------------------------------------------------------------------ discriminator
    def discriminator_step(self, real, real_labels: torch.Tensor | None = None) -> dict[str, float]:
        """One cross-entropy update on real rows (``(B, T)`` with ``(B,)`` classes, or an object with
        ``tokens`` and ``labels``) against ``B`` fresh samples spread over the classes."""
        if real_labels is None:
            real, real_labels = real.tokens, real.labels
        device = unwrap(self.generator).device
        per_class = max(1, real.shape[0] // self.num_classes)
        fake, _ = sample_classes(self.generator, per_class, self.max_len, self.config.temperature, self.rng)
        skipped = self.nan_guard.skipped
        metrics = multiclass_discriminator_step(
            self.discriminator,
            self.d_optimizer,
            real.to(device),
            real_labels.to(device),
            fake,
            self.nan_guard,
        )
        self.d_steps += self.nan_guard.skipped == skipped
        return metrics

    def train_epoch(self, real, data_rng: torch.Generator) -> dict[str, float]:
        """``g_steps`` generator updates, then ``d_steps`` rounds of ``d_num_negatives`` fresh samples against
        as many real ones (equal numbers of every class) for ``d_epochs`` epochs.

        Args:
            real: the training data: an object with ``tokens`` ``(N, T)`` and ``labels`` ``(N,)``.
            data_rng: the order of the real rows.
        """
        cfg = self.config
        metrics: dict[str, float] = {}
        members = class_members(real.labels, self.num_classes)  # every class has real sentences (or an error)
        t0 = time.perf_counter()
        for _ in range(cfg.g_steps):
            if cfg.mle_every:  # real sentences for the MLE updates, the same number of every class
                idx = class_draw(members, cfg.batch_size, data_rng).to(real.tokens.device)
                metrics.update(self.generator_step(real.tokens[idx], real.labels[idx]))
            else:
                metrics.update(self.generator_step())
        metrics["time/generator_s"] = time.perf_counter() - t0
        for _ in range(cfg.d_steps):
            metrics.update(
                multiclass_discriminator_round(
                    self.discriminator, self.d_optimizer, self.generator, real.tokens, real.labels,
                    cfg.d_num_negatives, cfg.d_epochs, cfg.d_batch_size, self.max_len, data_rng, self.rng,
                    cfg.temperature, self.nan_guard,
                )
            )  # fmt: skip
        metrics["nan/skipped_steps"] = float(self.nan_guard.skipped)
        return metrics

    # ------------------------------------------------------------------ state
    def _extra_state(self) -> dict:
        return {"rollout": self.rollout.state_dict()}

    def _load_extra_state(self, state: dict) -> None:
        self.rollout.load_state_dict(state["rollout"])
