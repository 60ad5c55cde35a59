"""Every trainer honours ``nan_policy``: a NaN/inf loss or gradient is never applied; ``stop`` raises,
``skip`` leaves every parameter and the step counter as they were and counts the skipped update."""

from __future__ import annotations

import pytest
import torch

from seqgan.config import ConditionalConfig, GumbelConfig, ScratchGANConfig, SeqGANConfig
from seqgan.models import CNNDiscriminator, LSTMGenerator, PairDiscriminator, RNNDiscriminator, Seq2SeqLSTM
from seqgan.trainers import (
    ConditionalTrainer,
    GumbelTrainer,
    NonFiniteGuard,
    NonFiniteLossError,
    PolicyGradientTrainer,
    ScratchGANTrainer,
)

V, T, PAD, BOS, EOS = 12, 6, 0, 1, 2
# a poisoned discriminator disagrees with the rollout's fast scorer, which then says so and falls back
pytestmark = pytest.mark.filterwarnings("ignore:MonteCarloRollout:RuntimeWarning")


def real_batch(n: int = 8) -> torch.Tensor:
    x = torch.randint(3, V, (n, T), generator=torch.Generator().manual_seed(1))
    x[:, 4], x[:, 5] = EOS, PAD
    return x


def make(method: str, policy: str):
    torch.manual_seed(0)
    guard = NonFiniteGuard(policy, max_consecutive=5)
    rng = torch.Generator().manual_seed(2)
    gen = LSTMGenerator(V, 8, 8, pad_id=PAD, bos_id=BOS, eos_id=EOS)
    if method == "seqgan":
        disc = CNNDiscriminator(V, 8, (2,), (4,), pad_id=PAD)
        cfg = SeqGANConfig(batch_size=4, num_rollouts=2)
        return PolicyGradientTrainer(gen, disc, cfg, max_len=T, rng=rng, nan_guard=guard), disc.out
    if method == "gumbel":
        disc = CNNDiscriminator(V, 8, (2,), (4,), pad_id=PAD)
        cfg = GumbelConfig(batch_size=4, anneal_steps=10)
        return GumbelTrainer(gen, disc, cfg, max_len=T, rng=rng, nan_guard=guard), disc.out
    if method == "scratchgan":
        disc = RNNDiscriminator(V, 8, 8, pad_id=PAD, eos_id=EOS)
        cfg = ScratchGANConfig(batch_size=4)
        return ScratchGANTrainer(gen, disc, cfg, max_len=T, rng=rng, nan_guard=guard), disc.out
    model = Seq2SeqLSTM(V, 8, 8, pad_id=PAD, bos_id=BOS, eos_id=EOS)
    disc = PairDiscriminator(V, 8, [1, 2], [4, 4], hidden=8, pad_id=PAD)
    contexts, responses = real_batch(8), real_batch(8)
    trainer = ConditionalTrainer(
        model, disc, SeqGANConfig(batch_size=4, num_rollouts=2, d_batch_size=4), ConditionalConfig(),
        contexts, responses, max_len=T, rng=rng, nan_guard=guard,
    )  # fmt: skip
    return trainer, disc.head


def poison(module: torch.nn.Module):
    """Every output of ``module`` (the discriminator's last layer) becomes NaN."""
    return module.register_forward_hook(lambda m, args, out: out * float("nan"))


def params(module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(before: list[torch.Tensor], module) -> bool:
    return all(torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


def step(trainer, which: str):
    if which == "generator":
        return (
            trainer.generator_step(real_batch(4))
            if isinstance(trainer, GumbelTrainer)
            else trainer.generator_step()
        )
    if isinstance(trainer, ConditionalTrainer):
        return trainer.discriminator_step()
    return trainer.discriminator_step(real_batch(4))


@pytest.mark.parametrize("method", ["seqgan", "gumbel", "scratchgan", "conditional"])
@pytest.mark.parametrize("which", ["generator", "discriminator"])
def test_skip_leaves_the_models_untouched_and_counts(method, which):
    trainer, last_layer = make(method, "skip")
    g0, d0 = params(trainer.generator), params(trainer.discriminator)
    steps0 = (trainer.g_steps, trainer.d_steps)
    handle = poison(last_layer)
    step(trainer, which)
    handle.remove()
    assert same(g0, trainer.generator) and same(d0, trainer.discriminator)
    assert trainer.nan_guard.skipped == 1 and (trainer.g_steps, trainer.d_steps) == steps0
    step(trainer, which)  # healthy again: the update is applied
    assert not (same(g0, trainer.generator) and same(d0, trainer.discriminator))


@pytest.mark.parametrize("method", ["seqgan", "gumbel", "scratchgan", "conditional"])
def test_stop_raises_without_stepping(method):
    trainer, last_layer = make(method, "stop")
    g0 = params(trainer.generator)
    poison(last_layer)
    with pytest.raises(NonFiniteLossError, match="nan_policy=stop"):
        step(trainer, "generator")
    assert same(g0, trainer.generator)


def test_skip_stops_after_too_many_in_a_row():
    trainer, last_layer = make("gumbel", "skip")
    poison(last_layer)
    for _ in range(4):
        step(trainer, "discriminator")
    with pytest.raises(NonFiniteLossError, match="in 5 consecutive discriminator steps"):
        step(trainer, "discriminator")


def test_the_guard_state_is_checkpointed():
    trainer, last_layer = make("scratchgan", "skip")
    handle = poison(last_layer)
    step(trainer, "generator")
    handle.remove()
    state = trainer.state_dict()
    other, _ = make("scratchgan", "skip")
    other.load_state_dict(state)
    assert other.nan_guard.skipped == 1 and other.nan_guard.in_a_row == trainer.nan_guard.in_a_row
