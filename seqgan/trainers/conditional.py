"""Adversarial dialogue generation (Li et al. 2017, "Adversarial Learning for Neural Dialogue Generation",
arXiv 1701.06547): policy gradient with per-token rewards from Monte-Carlo rollouts conditioned on the context,
teacher forcing, and a pair discriminator trained on generated and mismatched negatives.

:class:`ConditionalTrainer` composes a :class:`~seqgan.trainers.seqgan.PolicyGradientTrainer` that sees the
conditional generator and the pair discriminator bound to a batch of contexts
(:class:`~seqgan.models.seq2seq.BoundGenerator`, :class:`~seqgan.models.pair_discriminator.BoundDiscriminator`):
each generator step draws ``batch_size`` training contexts, binds the generator, the lagged rollout policy and
the discriminator to them, and runs SeqGAN's step unchanged (sample one response per context, rewards from ``R``
completions of every prefix scored by ``D(c, .)``, REINFORCE step, policy update). Teacher forcing: every
``teacher_forcing_every`` generator updates, one MLE update on the same contexts' human responses (Li et al.'s
fix for a generator that only ever sees its own samples' rewards). One discriminator round scores real pairs
against negatives of which a ``mismatch_fraction`` share are mismatched human responses and the rest the
generator's responses. Settings: the ``seqgan`` section (policy gradient) and the ``conditional`` section.

The generator may also be a causal LM (:class:`~seqgan.models.transformer.TransformerGenerator`): given the
``prompts`` of the contexts (:func:`seqgan.chat.encode_prompts`), the generator side (sampling, rollouts, the
policy gradient, the KL reference, teacher forcing) is bound to the prompts
(:class:`~seqgan.models.prompted.PromptedLM`) and the discriminator to the contexts, so rewards, log-probabilities
and the KL penalty cover the response tokens only.
"""

from __future__ import annotations

import time

import torch

from seqgan.config import ConditionalConfig, Config, SeqGANConfig
from seqgan.data.pairs import mismatched_indices
from seqgan.distributed import unwrap
from seqgan.losses import discriminator_bce
from seqgan.models.pair_discriminator import BoundDiscriminator, PairDiscriminator
from seqgan.models.seq2seq import BoundGenerator, ConditionalGenerator
from seqgan.sampling import Samples, sample
from seqgan.trainers.base import AdversarialTrainer, NonFiniteGuard, guarded_update
from seqgan.trainers.seqgan import PolicyGradientTrainer
from seqgan.trainers.steps import mle_step

__all__ = [
    "ConditionalTrainer",
    "pair_discriminator_round",
    "pair_discriminator_step",
    "pair_negatives",
    "sample_responses",
]


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
    """One sampled response per context row of ``(N, Tc)`` ``contexts`` (``top_k=1`` is greedy decoding); a
    causal LM is given ``(N, P)`` prompts instead.

    Returns:
        :class:`~seqgan.sampling.Samples` with ``(N, max_len)`` tensors.
    """
    bound = BoundGenerator(unwrap(model), contexts[:1])
    parts = []
    for start in range(0, contexts.shape[0], batch_size):
        ctx = contexts[start : start + batch_size].to(bound.model.device)
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
    prompts: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Negatives for the pairs ``index`` of the pool ``(contexts, responses)``.

    The first ``round(len(index) * mismatch_fraction)`` get a mismatched human response
    (:func:`~seqgan.data.pairs.mismatched_indices`), the others a response sampled from ``model`` (given the
    pool's ``(N, P)`` ``prompts`` when it is a causal LM, else the contexts).

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
        reads = ctx if prompts is None else prompts[index].to(ctx.device)
        gen = sample_responses(model, reads[n_mis:], max_len, temperature, rng=sample_rng).tokens
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
    guard: NonFiniteGuard | None = None,
) -> dict[str, float]:
    """One BCE update: ``D(contexts, real)`` real, ``D(neg_contexts, negatives)`` fake, scored in one call.

    A NaN/inf loss or gradient skips the update, or raises, as ``guard`` says (default: raise).

    Returns:
        ``discriminator/loss``, ``acc_real``, ``acc_fake`` and, when ``is_mismatch`` is given and non-trivial,
        ``acc_mismatch`` / ``acc_generated`` (accuracy on each kind of negative).
    """
    guard = guard or NonFiniteGuard("stop")
    discriminator.train()
    b = real.shape[0]
    if contexts.shape[1:] == neg_contexts.shape[1:] and real.shape[1:] == negatives.shape[1:]:
        logits = discriminator(torch.cat([contexts, neg_contexts]), torch.cat([real, negatives]))
        logits_real, logits_fake = logits[:b], logits[b:]
    else:
        logits_real, logits_fake = discriminator(contexts, real), discriminator(neg_contexts, negatives)
    loss = discriminator_bce(logits_real, logits_fake)
    guarded_update(
        loss,
        optimizer,
        discriminator.parameters(),
        guard,
        "discriminator",
        what="pair discriminator loss / gradient; lower the discriminator's learning rate",
    )
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
    guard: NonFiniteGuard | None = None,
    prompts: torch.Tensor | None = None,
) -> dict[str, float]:
    """Draw ``num_pairs`` training pairs and as many fresh negatives (:func:`pair_negatives`; ``prompts`` for
    a causal LM), then ``epochs`` passes of minibatches (real and negative batches in independent seeded
    orders); returns mean metrics."""
    n = min(num_pairs, contexts.shape[0])
    index = torch.randperm(contexts.shape[0], generator=data_rng)[:n]
    neg_ctx, neg, is_mis = pair_negatives(
        model,
        contexts,
        responses,
        index,
        mismatch_fraction,
        max_len,
        data_rng,
        sample_rng,
        temperature,
        prompts,
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
                discriminator, optimizer, contexts[r], responses[r], neg_ctx[f], neg[f], is_mis[f], guard
            )
            for k, v in m.items():
                sums[k] = sums.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + 1
    return {k: v / counts[k] for k, v in sums.items()}


class ConditionalTrainer(AdversarialTrainer):
    """Li et al. (2017)'s adversarial training of a conditional generator (see the module docstring).

    Args:
        model: the conditional generator, or a causal LM with ``prompts`` (trained in place; may be a DDP
            wrapper).
        discriminator: a :class:`~seqgan.models.pair_discriminator.PairDiscriminator` (trained in place).
        config: :class:`~seqgan.config.SeqGANConfig`, the policy-gradient settings (defaults when None).
        conditional: :class:`~seqgan.config.ConditionalConfig`: mismatched negatives, teacher forcing.
        contexts: ``(N, Tc)`` training contexts.
        responses: ``(N, T)`` their human responses.
        prompts: ``(N, P)`` the contexts as prompts, when ``model`` is a causal LM.
        max_len: response length.
        rng: ``torch.Generator`` for sampling and rollouts.
        data_rng: ``torch.Generator`` choosing the contexts of generator steps and the discriminator's pairs.
        nan_guard: what a NaN/inf loss or gradient does (default: stop).
    """

    def __init__(
        self,
        model: ConditionalGenerator,
        discriminator: PairDiscriminator,
        config: SeqGANConfig | None = None,
        conditional: ConditionalConfig | None = None,
        contexts: torch.Tensor | None = None,
        responses: torch.Tensor | None = None,
        *,
        max_len: int,
        prompts: torch.Tensor | None = None,
        rng: torch.Generator | None = None,
        data_rng: torch.Generator | None = None,
        nan_guard: NonFiniteGuard | None = None,
    ) -> None:
        if contexts is None or responses is None:
            raise ValueError("ConditionalTrainer needs the training contexts and responses")
        if contexts.shape[0] != responses.shape[0]:
            raise ValueError(f"{contexts.shape[0]} contexts for {responses.shape[0]} responses")
        if isinstance(unwrap(model), ConditionalGenerator) != (prompts is None):
            raise ValueError(
                "a causal-LM generator needs the contexts' prompts (seqgan.chat.encode_prompts), and only it reads them"
            )
        if prompts is not None and prompts.shape[0] != contexts.shape[0]:
            raise ValueError(f"{prompts.shape[0]} prompts for {contexts.shape[0]} contexts")
        self.config = config = config or SeqGANConfig()
        if config.rollout_chunk_rows:
            raise ValueError(
                "conditional rollouts decode a batch in one piece: rollout_chunk_rows must be 0 "
                "(lower batch_size or num_rollouts to bound memory)"
            )
        self.conditional = conditional or ConditionalConfig()
        self.generator, self.discriminator = model, discriminator
        self.contexts, self.responses, self.prompts = contexts, responses, prompts
        self.max_len = max_len
        self.rng = rng
        self.data_rng = data_rng if data_rng is not None else torch.Generator().manual_seed(0)
        self.nan_guard = nan_guard or NonFiniteGuard("stop")
        first = contexts[:1].to(unwrap(model).device)
        first_read = first if prompts is None else prompts[:1].to(first.device)
        self.bound = BoundGenerator(model, first_read)
        self.bound_discriminator = BoundDiscriminator(discriminator, first)
        self.policy_source = BoundGenerator(unwrap(model), first_read)
        self.policy = PolicyGradientTrainer(
            self.bound,
            self.bound_discriminator,
            config,
            max_len=max_len,
            rng=rng,
            nan_guard=self.nan_guard,
            policy_source=self.policy_source,
            before_draw=self._bind_batch,
        )
        self._index: torch.Tensor | None = None  # the next micro-batch's contexts (generator_step's index)
        self._last_index: torch.Tensor | None = None
        self.g_optimizer, self.d_optimizer = self.policy.g_optimizer, self.policy.d_optimizer
        self.d_steps = 0

    @classmethod
    def from_config(
        cls,
        cfg: Config,
        generator: ConditionalGenerator,
        discriminator: PairDiscriminator,
        rng: torch.Generator | None = None,
        *,
        contexts: torch.Tensor,
        responses: torch.Tensor,
        prompts: torch.Tensor | None = None,
        data_rng: torch.Generator | None = None,
        **_: object,
    ) -> ConditionalTrainer:
        """The trainer an experiment config describes (the conditional task: ``seqgan`` and ``conditional``
        sections) on the training pairs ``(contexts, responses)`` (and their ``prompts`` for a causal LM)."""
        return cls(
            generator,
            discriminator,
            cfg.seqgan,
            cfg.conditional,
            contexts,
            responses,
            max_len=cfg.data.max_len,
            prompts=prompts,
            rng=rng,
            data_rng=data_rng,
            nan_guard=NonFiniteGuard(cfg.nan_policy, cfg.nan_max_consecutive),
        )

    @property
    def g_steps(self) -> int:
        """Policy-gradient updates applied."""
        return self.policy.g_steps

    @g_steps.setter
    def g_steps(self, value: int) -> None:
        self.policy.g_steps = value

    @property
    def rollout(self):
        """The Monte-Carlo rollout of the policy-gradient step (its lagged policy is bound like the generator)."""
        return self.policy.rollout

    def bind(self, contexts: torch.Tensor, prompts: torch.Tensor | None = None) -> None:
        """Conditions the discriminator on ``(B, Tc)`` contexts and the generator, the rollout policy (and the KL
        reference) on them, or on their ``(B, P)`` prompts when the generator is a causal LM."""
        contexts = contexts.to(self.policy_source.model.device)
        reads = contexts if prompts is None else prompts.to(contexts.device)
        self.bound.rebind(reads)
        self.policy_source.rebind(reads)
        if self.rollout.policy is not self.policy_source:
            self.rollout.policy.rebind(reads)
        self.bound_discriminator.rebind(contexts)
        if self.policy.reference is not None:  # the KL penalty's frozen copy answers the same contexts
            self.policy.reference.rebind(reads)

    def _draw(self, count: int) -> torch.Tensor:
        return torch.randint(0, self.contexts.shape[0], (count,), generator=self.data_rng)

    def _bind_batch(self, count: int) -> None:
        """Binds the contexts of the next policy-gradient micro-batch of ``count`` rows: the index given to
        :meth:`generator_step` for its first one, else drawn; with ``baseline=group``, ``count / group_size``
        contexts each repeated ``group_size`` times in a row (a group answers one context)."""
        index, self._index = self._index, None
        if index is None:
            group = self.config.group_size if self.config.baseline == "group" else 1
            index = self._draw(count // group).repeat_interleave(group)
        self._last_index = index.to(self.contexts.device)
        prompts = None if self.prompts is None else self.prompts[self._last_index.to(self.prompts.device)]
        self.bind(self.contexts[self._last_index], prompts)

    def generator_step(self, index: torch.Tensor | None = None) -> dict[str, float]:
        """One policy-gradient update on ``batch_size`` training contexts (``index``, or drawn with
        ``data_rng``; with ``grad_accum_steps > 1`` the later micro-batches draw theirs), then, every ``teacher_forcing_every`` updates, one MLE update on their human responses.

        Returns:
            SeqGAN's generator metrics plus ``generator/teacher_forcing_nll`` when teacher forcing ran.
        """
        cfg = self.config
        if index is not None and index.numel() != cfg.batch_size:
            raise ValueError(f"generator_step needs batch_size={cfg.batch_size} pairs, got {index.numel()}")
        self._index = index
        before = self.g_steps
        metrics = self.policy.generator_step()
        index = self._last_index  # teacher forcing: the last micro-batch's contexts
        every = self.conditional.teacher_forcing_every
        if every and self.g_steps != before and self.g_steps % every == 0:  # after applied updates only
            metrics["generator/teacher_forcing_nll"] = mle_step(
                self.bound,
                self.g_optimizer,
                self.responses[index].to(self.policy_source.model.device),
                cfg.grad_clip,
                self.nan_guard,
            )
        return metrics

    def discriminator_step(self, index: torch.Tensor | None = None) -> dict[str, float]:
        """One update on the pairs ``index`` (or ``d_batch_size`` drawn with ``data_rng``) against as many
        negatives (a ``mismatch_fraction`` share mismatched, the rest generated)."""
        cfg = self.config
        index = self._draw(cfg.d_batch_size) if index is None else index
        index = index.to(self.contexts.device)
        neg_ctx, neg, is_mis = pair_negatives(
            self.generator,
            self.contexts,
            self.responses,
            index,
            self.conditional.mismatch_fraction,
            self.max_len,
            self.data_rng,
            self.rng,
            cfg.temperature,
            self.prompts,
        )
        skipped = self.nan_guard.skipped
        metrics = pair_discriminator_step(
            self.discriminator,
            self.d_optimizer,
            self.contexts[index],
            self.responses[index],
            neg_ctx,
            neg,
            is_mis,
            self.nan_guard,
        )
        self.d_steps += self.nan_guard.skipped == skipped  # a skipped update is not a step
        return metrics

    def train_epoch(
        self, real: torch.Tensor | None = None, data_rng: torch.Generator | None = None
    ) -> dict[str, float]:
        """``g_steps`` generator updates, then ``d_steps`` rounds of :func:`pair_discriminator_round` over
        ``d_num_negatives`` training pairs. ``real`` is not used (the trainer holds its pairs); ``data_rng``
        (default: the trainer's) becomes the trainer's data order from here on."""
        cfg = self.config
        if data_rng is not None:
            self.data_rng = data_rng
        metrics: dict[str, float] = {}
        t0 = time.perf_counter()
        for _ in range(cfg.g_steps):
            metrics.update(self.generator_step())
        metrics["time/generator_s"] = time.perf_counter() - t0
        for _ in range(cfg.d_steps):
            metrics.update(
                pair_discriminator_round(
                    self.discriminator,
                    self.d_optimizer,
                    self.generator,
                    self.contexts,
                    self.responses,
                    cfg.d_num_negatives,
                    cfg.d_epochs,
                    cfg.d_batch_size,
                    self.conditional.mismatch_fraction,
                    self.max_len,
                    self.data_rng,
                    self.rng,
                    cfg.temperature,
                    self.nan_guard,
                    self.prompts,
                )
            )
        metrics["nan/skipped_steps"] = float(self.nan_guard.skipped)
        return metrics

    def _extra_state(self) -> dict:
        return {**self.policy._extra_state(), "data_rng": self.data_rng.get_state()}

    def _load_extra_state(self, state: dict) -> None:
        self.policy._load_extra_state(state)
        if state.get("data_rng") is not None:
            self.data_rng.set_state(state["data_rng"])
