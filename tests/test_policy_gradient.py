"""Tests for the SeqGAN policy-gradient loss and ``seqgan.trainers.PolicyGradientTrainer`` (tiny models, CPU)."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from seqgan.config import ConfigError, SeqGANConfig
from seqgan.losses import entropy_bonus, policy_gradient_loss
from seqgan.models.discriminator import CNNDiscriminator
from seqgan.models.lstm import LSTMGenerator
from seqgan.sampling import sample
from seqgan.trainers import PolicyGradientTrainer

VOCAB, PAD, BOS, EOS, T = 10, 0, 1, 2, 6


def make_models(kind: str = "lstm", seed: int = 0):
    torch.manual_seed(seed)
    if kind == "lstm":
        gen = LSTMGenerator(VOCAB, embed_dim=8, hidden_dim=16, pad_id=PAD, bos_id=BOS, eos_id=EOS)
    else:
        from seqgan.models.transformer import TransformerGenerator

        gen = TransformerGenerator.from_config(
            VOCAB, T, PAD, BOS, EOS, n_layer=1, n_head=2, n_embd=16, dropout=0.0
        )
    disc = CNNDiscriminator(
        VOCAB, embed_dim=8, filter_sizes=(2, 3), num_filters=(8, 8), dropout=0.0, pad_id=PAD
    )
    return gen, disc


def make_trainer(kind: str = "lstm", seed: int = 0, max_len: int = T, **overrides) -> PolicyGradientTrainer:
    gen, disc = make_models(kind, seed)
    cfg = SeqGANConfig(**{"batch_size": 6, "num_rollouts": 3, **overrides})
    return PolicyGradientTrainer(
        gen, disc, cfg, max_len=max_len, rng=torch.Generator().manual_seed(seed + 100)
    )


def snapshot(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(before: list[torch.Tensor], module: nn.Module) -> bool:
    return any(not torch.equal(b, p) for b, p in zip(before, module.parameters(), strict=True))


def real_batch(n: int = 6, seed: int = 0) -> torch.Tensor:
    x = torch.randint(3, VOCAB, (n, T), generator=torch.Generator().manual_seed(seed))
    x[0, 3], x[0, 4:] = EOS, PAD
    return x


# ---------------------------------------------------------------------------------------------- losses
def test_policy_gradient_loss_hand_computed():
    log_probs = torch.tensor([[-1.0, -2.0, -0.5], [-0.1, -3.0, float("-inf")]])
    rewards = torch.tensor([[0.5, 0.2, 0.9], [1.0, 0.4, 0.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    expected = -((-1.0 * 0.5) + (-2.0 * 0.2) + (-0.5 * 0.9) + (-0.1 * 1.0) + (-3.0 * 0.4)) / 5
    assert policy_gradient_loss(log_probs, rewards, mask).item() == pytest.approx(expected)
    baseline = torch.tensor([0.1, 0.2, 0.3])
    expected_b = -((-1.0 * 0.4) + (-2.0 * 0.0) + (-0.5 * 0.6) + (-0.1 * 0.9) + (-3.0 * 0.2)) / 5
    assert policy_gradient_loss(log_probs, rewards, mask, baseline).item() == pytest.approx(expected_b)
    # empty mask: zero, not NaN
    assert policy_gradient_loss(log_probs, rewards, torch.zeros_like(mask)).item() == 0.0


def test_policy_gradient_gradient_wrt_logits():
    """d loss / d logits_t = -(Q_t - b_t) * m_t / sum(m) * (onehot(y_t) - softmax(logits_t)); rewards get none."""
    logits = torch.tensor([[[0.2, -1.0, 0.5], [1.0, 0.0, -0.5]]], requires_grad=True)  # (1, 2, 3)
    rewards = torch.tensor([[0.7, 0.3]], requires_grad=True)
    tokens = torch.tensor([[2, 0]])
    mask = torch.tensor([[True, True]])
    baseline = torch.tensor([0.1, 0.5])
    log_probs = torch.log_softmax(logits, -1).gather(2, tokens[..., None]).squeeze(2)
    policy_gradient_loss(log_probs, rewards, mask, baseline).backward()
    adv = (rewards.detach() - baseline)[0]  # (2,)
    probs = torch.softmax(logits.detach(), -1)[0]
    onehot = torch.nn.functional.one_hot(tokens[0], 3).float()
    expected = -(adv[:, None] / 2) * (onehot - probs)
    torch.testing.assert_close(logits.grad[0], expected)
    assert rewards.grad is None


def test_entropy_bonus_hand_computed():
    p = torch.tensor([[[0.5, 0.5, 0.0], [0.25, 0.25, 0.5]]])  # second distribution: 1.5 bits
    log_probs = torch.log(p)
    mask = torch.tensor([[True, False]])
    assert entropy_bonus(log_probs, mask).item() == pytest.approx(math.log(2))
    both = entropy_bonus(log_probs, torch.tensor([[True, True]])).item()
    assert both == pytest.approx((math.log(2) + 1.5 * math.log(2)) / 2)


# ---------------------------------------------------------------------------------------------- baselines
REWARDS = torch.tensor([[0.2, 0.4, 0.6, 0.0], [0.4, 0.8, 0.0, 0.0], [0.6, 0.3, 0.9, 0.5]])
MASK = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]]).bool()
STEP_MEANS = torch.tensor([0.4, 0.5, 0.75, 0.5])  # per column over real tokens only


def test_mean_baseline():
    trainer = make_trainer(baseline="mean", max_len=4)
    torch.testing.assert_close(trainer.baseline(REWARDS, MASK), STEP_MEANS)
    assert make_trainer(baseline="none", max_len=4).baseline(REWARDS, MASK) is None


def test_ema_baseline_updated_after_use():
    trainer = make_trainer(baseline="ema", ema_decay=0.9, max_len=4)
    # first use: no history, the batch's own step means; then they initialise the average
    torch.testing.assert_close(trainer.baseline(REWARDS, MASK), STEP_MEANS)
    trainer.update_baseline(REWARDS, MASK)
    torch.testing.assert_close(trainer.baseline_ema, STEP_MEANS)
    second = torch.tensor([[1.0, 0.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.5, 0.0]])
    mask2 = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 0]]).bool()
    # used before being updated: the second batch sees the first batch's values
    torch.testing.assert_close(trainer.baseline(second, mask2), STEP_MEANS)
    trainer.update_baseline(second, mask2)
    means2 = torch.tensor([1 / 3, 0.5, 0.5, 0.5])  # column 3 has no real token: unchanged
    expected = 0.9 * STEP_MEANS + 0.1 * means2
    expected[3] = STEP_MEANS[3]
    torch.testing.assert_close(trainer.baseline_ema, expected)


# ---------------------------------------------------------------------------------------------- updates
@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_generator_step_changes_only_the_generator(kind):
    trainer = make_trainer(kind, baseline="mean", entropy_coef=0.01)
    gen_before, disc_before = snapshot(trainer.generator), snapshot(trainer.discriminator)
    policy_before = snapshot(trainer.rollout.policy)
    metrics = trainer.generator_step()
    assert set(metrics) >= {
        "generator/pg_loss",
        "rollout/reward_mean",
        "rollout/reward_last",
        "generator/entropy",
        "generator/sample_len",
    }
    assert all(math.isfinite(v) for v in metrics.values())
    assert 0.0 < metrics["rollout/reward_mean"] < 1.0 and 1.0 <= metrics["generator/sample_len"] <= T
    assert changed(gen_before, trainer.generator)
    assert not changed(disc_before, trainer.discriminator)
    rate = trainer.config.rollout_update_rate
    for old, p, g in zip(
        policy_before, trainer.rollout.policy.parameters(), trainer.generator.parameters(), strict=True
    ):
        assert torch.equal(p, rate * old + (1 - rate) * g)
    assert trainer.g_steps == 1 and trainer.discriminator.training is True


def test_discriminator_step_changes_only_the_discriminator():
    trainer = make_trainer()
    gen_before, disc_before = snapshot(trainer.generator), snapshot(trainer.discriminator)
    policy_before = snapshot(trainer.rollout.policy)
    metrics = trainer.discriminator_step(real_batch())
    assert set(metrics) == {"discriminator/loss", "discriminator/acc_real", "discriminator/acc_fake"}
    assert changed(disc_before, trainer.discriminator)
    assert not changed(gen_before, trainer.generator)
    assert not changed(policy_before, trainer.rollout.policy)
    assert trainer.d_steps == 1


class NaNDiscriminator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.full((tokens.shape[0],), float("nan")) + self.w


def test_non_finite_losses_raise_without_stepping():
    trainer = make_trainer()
    trainer.discriminator = NaNDiscriminator()
    trainer.d_optimizer = torch.optim.Adam(trainer.discriminator.parameters(), lr=0.1)
    before = snapshot(trainer.generator)
    with pytest.raises(FloatingPointError, match="non-finite generator loss"):
        trainer.generator_step()
    assert not changed(before, trainer.generator)
    d_before = snapshot(trainer.discriminator)
    with pytest.raises(FloatingPointError, match="non-finite"):
        trainer.discriminator_step(real_batch())
    assert not changed(d_before, trainer.discriminator)


def test_state_dict_round_trip_gives_identical_next_steps():
    a = make_trainer(baseline="ema")
    a.generator_step()
    a.discriminator_step(real_batch(seed=1))
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)

    b = make_trainer(seed=7, baseline="ema")  # different weights and RNG until loaded
    b.load_state_dict(state)
    assert (b.g_steps, b.d_steps) == (1, 1)
    results = []
    for trainer in (a, b):
        torch.manual_seed(123)
        g = trainer.generator_step()
        d = trainer.discriminator_step(real_batch(seed=2))
        results.append((g, d, snapshot(trainer.generator), snapshot(trainer.rollout.policy)))
    (ga, da, pa, ra), (gb, db, pb, rb) = results
    assert ga == gb and da == db
    assert all(torch.equal(x, y) for x, y in zip(pa + ra, pb + rb, strict=True))
    torch.testing.assert_close(a.baseline_ema, b.baseline_ema, rtol=0, atol=0)


def test_config_validation():
    with pytest.raises(ConfigError, match="seqgan.baseline"):
        SeqGANConfig(baseline="median")
    with pytest.raises(ConfigError, match=r"seqgan.ema_decay must be in \[0, 1\)"):
        SeqGANConfig(ema_decay=1.0)
    with pytest.raises(ConfigError, match="seqgan.num_rollouts must be >= 0"):
        SeqGANConfig(num_rollouts=-1)


# ---------------------------------------------------------------------------------------------- end to end
TARGET = 7


def contains_target(n: int, gen: torch.Generator) -> torch.Tensor:
    """Real data: random tokens (no EOS) with TARGET at a random position."""
    x = torch.randint(3, VOCAB, (n, T), generator=gen)
    x[x == TARGET] = 3
    x[torch.arange(n), torch.randint(0, T, (n,), generator=gen)] = TARGET
    return x


def target_rate(trainer: PolicyGradientTrainer) -> float:
    out = sample(trainer.generator, 2000, T, rng=torch.Generator().manual_seed(5)).tokens
    return float((out == TARGET).float().mean())


def test_end_to_end_generator_learns_what_the_discriminator_prefers():
    torch.manual_seed(0)
    trainer = make_trainer(batch_size=32, num_rollouts=4, g_lr=1e-2, d_lr=1e-2, baseline="mean")
    data = torch.Generator().manual_seed(1)
    for _ in range(40):  # teach the discriminator that real sequences contain TARGET
        trainer.discriminator_step(contains_target(32, data))
    before = target_rate(trainer)
    for _ in range(25):
        trainer.generator_step()
        trainer.discriminator_step(contains_target(32, data))
    after = target_rate(trainer)
    assert after > 1.5 * before, (before, after)


def test_readme_snippet_imports():
    from seqgan import MonteCarloRollout, PolicyGradientTrainer, SeqGANConfig  # noqa: F401


def test_train_epoch_runs_the_configured_schedule_and_changes_both_models():
    trainer = make_trainer(g_steps=2, d_steps=3, d_epochs=1, d_num_negatives=8, d_batch_size=4)
    g0, d0 = snapshot(trainer.generator), snapshot(trainer.discriminator)
    real = torch.cat([real_batch(6, seed=s) for s in range(3)])
    metrics = trainer.train_epoch(real, torch.Generator().manual_seed(0))
    assert trainer.g_steps == 2
    assert changed(g0, trainer.generator) and changed(d0, trainer.discriminator)
    assert {"generator/pg_loss", "discriminator/loss", "time/generator_s"} <= set(metrics)


def test_build_trainer_dispatches_on_method_and_rejects_unknown():
    from seqgan.config import Config, ConfigError
    from seqgan.trainers import build_trainer

    gen, disc = make_models()
    cfg = Config()
    cfg.data.max_len, cfg.seqgan.num_rollouts, cfg.seqgan.d_steps = T, 2, 3
    trainer = build_trainer(cfg, gen, disc)
    assert isinstance(trainer, PolicyGradientTrainer)
    assert trainer.config is cfg.seqgan  # the section is the trainer's config: no copied fields
    assert trainer.max_len == T and trainer.config.num_rollouts == 2 and trainer.config.d_steps == 3
    cfg.adversarial.method = "nope"
    with pytest.raises(ConfigError, match="adversarial.method"):
        build_trainer(cfg, gen, disc)


def test_policy_gradient_log_probs_are_those_of_the_sampling_policy_with_dropout():
    """The samples are drawn in eval mode (no dropout), so the REINFORCE log-probabilities must be too: with a
    dropout-0.25 generator in train mode, pg_loss with rewards of 1 must equal -mean(sample log-probs)."""
    torch.manual_seed(0)
    gen = LSTMGenerator(
        VOCAB, embed_dim=8, hidden_dim=16, num_layers=2, dropout=0.25, pad_id=PAD, bos_id=BOS, eos_id=EOS
    )
    disc = CNNDiscriminator(
        VOCAB, embed_dim=8, filter_sizes=(2, 3), num_filters=(8, 8), dropout=0.0, pad_id=PAD
    )
    trainer = PolicyGradientTrainer(
        gen,
        disc,
        SeqGANConfig(batch_size=16, num_rollouts=2),
        max_len=T,
        rng=torch.Generator().manual_seed(3),
    )
    gen.train()
    replay = torch.Generator().manual_seed(3)
    expected = sample(gen, 16, T, rng=replay)  # the draws generator_step will make first

    class Ones:  # reward 1 everywhere
        def __call__(self, tokens, discriminator, num_rollouts, rng=None):
            return torch.ones(tokens.shape)

        def update_policy(self, generator):
            pass

    trainer.rollout = Ones()
    metrics = trainer.generator_step()
    assert metrics["generator/pg_loss"] == pytest.approx(
        -float(expected.log_probs[expected.mask].mean()), abs=1e-5
    )
    assert gen.training  # the mode is restored
