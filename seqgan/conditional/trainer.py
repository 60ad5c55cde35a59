"""Adversarial dialogue generation (Li et al. 2017, "Adversarial Learning for Neural Dialogue Generation",
arXiv 1701.06547): policy gradient with per-token rewards from Monte-Carlo rollouts conditioned on the context,
teacher forcing, and a pair discriminator trained on generated and mismatched negatives.

:class:`ConditionalTrainer` is :class:`~seqgan.trainers.PolicyGradientTrainer` with the generator and the
discriminator bound to a batch of contexts (:class:`~seqgan.conditional.models.BoundGenerator`,
:class:`~seqgan.conditional.discriminator.BoundDiscriminator`): its ``generator_step`` draws ``batch_size``
training contexts, binds the generator, the lagged rollout policy and the discriminator to them and runs the
parent's step unchanged (sample one response per context, rewards from ``R`` completions of every prefix scored
by ``D(c, .)``, REINFORCE step, policy update). Teacher forcing: every ``teacher_forcing_every`` generator
updates, one MLE update on the same contexts' human responses (Li et al.'s fix for the generator only ever
seeing its own samples' rewards). One discriminator round scores real pairs against negatives of which a
``mismatch_fraction`` share are mismatched human responses and the rest the generator's responses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields

import torch

from seqgan.conditional.discriminator import BoundDiscriminator, PairDiscriminator
from seqgan.conditional.models import BoundGenerator, ConditionalGenerator
from seqgan.conditional.pairs import mismatched_indices
from seqgan.losses import discriminator_bce
from seqgan.sampling import Samples, sample
from seqgan.trainers.policy_gradient import PolicyGradientConfig, PolicyGradientTrainer
from seqgan.training import mle_step

__all__ = [
    "ConditionalConfig",
    "ConditionalTrainer",
    "sample_responses",
    "pair_negatives",
    "pair_discriminator_step",
    "pair_discriminator_round",
]


@dataclass
class ConditionalConfig(PolicyGradientConfig):
    mismatch_fraction: float = 0.5
    """Share of the discriminator's negatives that are (context, human response of another context)."""
    teacher_forcing_every: int = 1
    """One MLE update on human responses after every this many policy-gradient updates (0 disables)."""

    @classmethod
    def from_config(cls, cfg) -> ConditionalConfig:
        base = PolicyGradientConfig.from_config(cfg)
        return cls(
            **{f.name: getattr(base, f.name) for f in fields(PolicyGradientConfig)},
            mismatch_fraction=cfg.conditional.mismatch_fraction,
            teacher_forcing_every=cfg.conditional.teacher_forcing_every,
        )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.mismatch_fraction <= 1.0:
            raise ValueError(f"mismatch_fraction must be in [0, 1], got {self.mismatch_fraction}")
        if self.teacher_forcing_every < 0:
            raise ValueError(f"teacher_forcing_every must be >= 0, got {self.teacher_forcing_every}")
        if self.rollout_chunk_rows:
            raise ValueError(
                "conditional rollouts decode a batch in one piece: rollout_chunk_rows must be 0 "
                "(lower batch_size or num_rollouts to bound memory)"
            )


@torch.no_grad()
def sample_responses(
    model: ConditionalGenerator,
    contexts: torch.Tensor,
    max_len: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    rng: torch.Generator | None = None,
    batch_size: int = 512,
) -> Samples:
    """One sampled response per context row of ``(N, Tc)`` ``contexts`` (``top_k=1`` is greedy decoding)."""
    bound = BoundGenerator(model, contexts[:1])
    parts = []
    for start in range(0, contexts.shape[0], batch_size):
        ctx = contexts[start : start + batch_size].to(model.device)
        parts.append(sample(bound.rebind(ctx), ctx.shape[0], max_len, temperature, top_k, top_p, rng=rng))
    return Samples(*(torch.cat([getattr(p, f) for p in parts]) for f in ("tokens", "log_probs", "mask")))


def pair_negatives(
    model: ConditionalGenerator,
    contexts: torch.Tensor,
    responses: torch.Tensor,
    index: torch.Tensor,
    mismatch_fraction: float,
    max_len: int,
    data_rng: torch.Generator | None = None,
    sample_rng: torch.Generator | None = None,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Negatives for the pairs ``index`` of the pool ``(contexts, responses)``.

    The first ``round(len(index) * mismatch_fraction)`` get a mismatched human response
    (:func:`~seqgan.conditional.pairs.mismatched_indices`), the others a response sampled from ``model``.

    Returns:
        ``(negative contexts (n, Tc), negative responses (n, T), is_mismatch (n,) bool)``.
    """
    n = index.numel()
    n_mis = int(round(n * mismatch_fraction))
    ctx = contexts[index]
    neg = torch.empty(n, responses.shape[1], dtype=responses.dtype, device=responses.device)
    if n_mis:
        j = mismatched_indices(contexts, responses, index[:n_mis].cpu(), data_rng)
        neg[:n_mis] = responses[j.to(responses.device)]
    if n > n_mis:
        gen = sample_responses(model, ctx[n_mis:], max_len, temperature, rng=sample_rng).tokens
        neg[n_mis:] = gen[:, : responses.shape[1]].to(neg.device)
    is_mis = torch.arange(n, device=responses.device) < n_mis
    return ctx, neg, is_mis


def pair_discriminator_step(
    discriminator: PairDiscriminator,
    optimizer: torch.optim.Optimizer,
    contexts: torch.Tensor,
    real: torch.Tensor,
    neg_contexts: torch.Tensor,
    negatives: torch.Tensor,
    is_mismatch: torch.Tensor | None = None,
) -> dict[str, float]:
    """One BCE update: ``D(contexts, real)`` real, ``D(neg_contexts, negatives)`` fake.

    Returns ``discriminator/loss``, ``acc_real``, ``acc_fake`` and, when ``is_mismatch`` is given and non-trivial,
    ``acc_mismatch`` / ``acc_generated`` (accuracy on each kind of negative).
    """
    discriminator.train()
    logits_real = discriminator(contexts, real)
    logits_fake = discriminator(neg_contexts, negatives)
    loss = discriminator_bce(logits_real, logits_fake)
    if not bool(torch.isfinite(loss)):
        raise FloatingPointError(f"non-finite pair discriminator loss {loss.item()}; lower d_lr")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    right = logits_fake < 0
    out = {
        "discriminator/loss": loss.item(),
        "discriminator/acc_real": float((logits_real > 0).float().mean()),
        "discriminator/acc_fake": float(right.float().mean()),
    }
    if is_mismatch is not None:
        if bool(is_mismatch.any()):
            out["discriminator/acc_mismatch"] = float(right[is_mismatch].float().mean())
        if bool((~is_mismatch).any()):
            out["discriminator/acc_generated"] = float(right[~is_mismatch].float().mean())
    return out


def pair_discriminator_round(
    discriminator: PairDiscriminator,
    optimizer: torch.optim.Optimizer,
    model: ConditionalGenerator,
    contexts: torch.Tensor,
    responses: torch.Tensor,
    num_pairs: int,
    epochs: int,
    batch_size: int,
    mismatch_fraction: float,
    max_len: int,
    data_rng: torch.Generator,
    sample_rng: torch.Generator | None = None,
    temperature: float = 1.0,
) -> dict[str, float]:
    """Draw ``num_pairs`` training pairs and as many fresh negatives (:func:`pair_negatives`), then ``epochs``
    passes of minibatches (real and negative batches in independent seeded orders); returns mean metrics."""
    n = min(num_pairs, contexts.shape[0])
    index = torch.randperm(contexts.shape[0], generator=data_rng)[:n]
    neg_ctx, neg, is_mis = pair_negatives(
        model, contexts, responses, index, mismatch_fraction, max_len, data_rng, sample_rng, temperature
    )
    dev = contexts.device
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for _ in range(epochs):
        real_order = torch.randperm(n, generator=data_rng).to(dev)
        neg_order = torch.randperm(n, generator=data_rng).to(dev)
        for start in range(0, n, batch_size):
            r = index.to(dev)[real_order[start : start + batch_size]]
            f = neg_order[start : start + batch_size]
            m = pair_discriminator_step(
                discriminator, optimizer, contexts[r], responses[r], neg_ctx[f], neg[f], is_mis[f]
            )
            for k, v in m.items():
                sums[k] = sums.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + 1
    return {k: v / counts[k] for k, v in sums.items()}


class ConditionalTrainer(PolicyGradientTrainer):
    """Li et al. (2017)'s adversarial training of a conditional generator (see the module docstring).

    Args:
        model: the conditional generator (trained in place).
        discriminator: a :class:`PairDiscriminator` (trained in place).
        config: :class:`ConditionalConfig`.
        contexts: ``(N, Tc)`` training contexts.
        responses: ``(N, T)`` their human responses.
        rng: ``torch.Generator`` for sampling and rollouts.
        data_rng: ``torch.Generator`` choosing the contexts of generator steps and the discriminator's pairs.
    """

    def __init__(
        self,
        model: ConditionalGenerator,
        discriminator: PairDiscriminator,
        config: ConditionalConfig,
        contexts: torch.Tensor,
        responses: torch.Tensor,
        rng: torch.Generator | None = None,
        data_rng: torch.Generator | None = None,
        g_optimizer: torch.optim.Optimizer | None = None,
        d_optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        if contexts.shape[0] != responses.shape[0]:
            raise ValueError(f"{contexts.shape[0]} contexts for {responses.shape[0]} responses")
        self.model, self.pair_discriminator = model, discriminator
        self.contexts, self.responses = contexts, responses
        if data_rng is None:
            data_rng = torch.Generator()
            data_rng.manual_seed(0)
        self.data_rng = data_rng
        first = contexts[:1].to(model.device)
        super().__init__(
            BoundGenerator(model, first),
            BoundDiscriminator(discriminator, first),
            config,
            g_optimizer or torch.optim.Adam(model.parameters(), lr=config.g_lr),
            d_optimizer or torch.optim.Adam(discriminator.parameters(), lr=config.d_lr),
            rng,
        )

    @classmethod
    def from_config(
        cls,
        cfg,
        model: ConditionalGenerator,
        discriminator: PairDiscriminator,
        contexts: torch.Tensor,
        responses: torch.Tensor,
        rng: torch.Generator | None = None,
        data_rng: torch.Generator | None = None,
    ) -> ConditionalTrainer:
        return cls(
            model, discriminator, ConditionalConfig.from_config(cfg), contexts, responses, rng, data_rng
        )

    def bind(self, contexts: torch.Tensor) -> None:
        """Conditions the generator, the rollout policy and the discriminator on ``(B, Tc)`` contexts."""
        contexts = contexts.to(self.model.device)
        self.generator.rebind(contexts)
        if self.rollout.policy is not self.generator:
            self.rollout.policy.rebind(contexts)
        self.discriminator.rebind(contexts)

    def generator_step(self, index: torch.Tensor | None = None) -> dict[str, float]:
        """One policy-gradient update on ``batch_size`` training contexts (``index``, or drawn with
        ``data_rng``), then, every ``teacher_forcing_every`` updates, one MLE update on their human responses.

        Returns the parent's metrics plus ``generator/teacher_forcing_nll`` when teacher forcing ran.
        """
        cfg = self.config
        if index is None:
            index = torch.randint(0, self.contexts.shape[0], (cfg.batch_size,), generator=self.data_rng)
        if index.numel() != cfg.batch_size:
            raise ValueError(f"generator_step needs batch_size={cfg.batch_size} pairs, got {index.numel()}")
        index = index.to(self.contexts.device)
        self.bind(self.contexts[index])
        metrics = super().generator_step()
        every = cfg.teacher_forcing_every
        if every and self.g_steps % every == 0:
            metrics["generator/teacher_forcing_nll"] = mle_step(
                self.generator, self.g_optimizer, self.responses[index].to(self.model.device), cfg.grad_clip
            )
        return metrics

    def discriminator_step(self, index: torch.Tensor | None = None) -> dict[str, float]:
        """One update on the pairs ``index`` (or ``d_batch_size`` drawn with ``data_rng``) against as many
        negatives (a ``mismatch_fraction`` share mismatched, the rest generated)."""
        cfg = self.config
        if index is None:
            index = torch.randint(0, self.contexts.shape[0], (cfg.d_batch_size,), generator=self.data_rng)
        index = index.to(self.contexts.device)
        neg_ctx, neg, is_mis = pair_negatives(
            self.model,
            self.contexts,
            self.responses,
            index,
            cfg.mismatch_fraction,
            cfg.max_len,
            self.data_rng,
            self.rng,
            cfg.temperature,
        )
        metrics = pair_discriminator_step(
            self.pair_discriminator,
            self.d_optimizer,
            self.contexts[index],
            self.responses[index],
            neg_ctx,
            neg,
            is_mis,
        )
        self.d_steps += 1
        return metrics

    def train_epoch(self, real=None, data_rng: torch.Generator | None = None) -> dict[str, float]:
        """``g_steps`` generator updates, then ``d_steps`` rounds of :func:`pair_discriminator_round` over
        ``d_num_negatives`` training pairs. ``real`` is ignored (the trainer holds its pairs); ``data_rng``
        defaults to the trainer's."""
        cfg = self.config
        data_rng = data_rng or self.data_rng
        metrics: dict[str, float] = {}
        t0 = time.perf_counter()
        for _ in range(cfg.g_steps):
            metrics.update(self.generator_step())
        metrics["time/generator_s"] = time.perf_counter() - t0
        for _ in range(cfg.d_steps):
            metrics.update(
                pair_discriminator_round(
                    self.pair_discriminator,
                    self.d_optimizer,
                    self.model,
                    self.contexts,
                    self.responses,
                    cfg.d_num_negatives,
                    cfg.d_epochs,
                    cfg.d_batch_size,
                    cfg.mismatch_fraction,
                    cfg.max_len,
                    data_rng,
                    self.rng,
                    cfg.temperature,
                )
            )
        return metrics

    def _extra_state(self) -> dict:
        return {**super()._extra_state(), "data_rng": self.data_rng.get_state()}

    def _load_extra_state(self, state: dict) -> None:
        super()._load_extra_state(state)
        if state.get("data_rng") is not None:
            self.data_rng.set_state(state["data_rng"])
