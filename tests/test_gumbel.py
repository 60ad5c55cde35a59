"""Tests for ``seqgan.trainers.GumbelTrainer``: relaxed samples, annealing schedules, gradient paths, the
parameter-change check of both steps, state round trip and a tiny end-to-end run (tiny models, CPU)."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seqgan.config import ConfigError, GumbelConfig, load_config
from seqgan.losses import GAN_LOSSES
from seqgan.models.discriminator import CNNDiscriminator
from seqgan.models.lstm import LSTMGenerator
from seqgan.trainers import GumbelTrainer, build_trainer
from seqgan.trainers.gumbel import SCHEDULES, inverse_temperature, relaxed_sample

VOCAB, PAD, BOS, EOS, T = 10, 0, 1, 2, 6


def make_models(kind: str = "lstm", seed: int = 0):
    torch.manual_seed(seed)
    if kind == "lstm":
        gen = LSTMGenerator(VOCAB, embed_dim=8, hidden_dim=16, pad_id=PAD, bos_id=BOS, eos_id=EOS)
        with torch.no_grad():  # make EOS likely so that rows end at different lengths
            gen.proj.bias[EOS] += 1.5
    else:
        from seqgan.models.transformer import TransformerGenerator

        gen = TransformerGenerator.from_config(
            VOCAB, T, PAD, BOS, EOS, n_layer=1, n_head=2, n_embd=16, dropout=0.0
        )
    disc = CNNDiscriminator(
        VOCAB, embed_dim=8, filter_sizes=(2, 3), num_filters=(8, 8), dropout=0.0, pad_id=PAD
    )
    return gen, disc


def make_trainer(kind: str = "lstm", seed: int = 0, **overrides) -> GumbelTrainer:
    gen, disc = make_models(kind, seed)
    cfg = GumbelConfig(**{"batch_size": 8, "anneal_steps": 10, "g_lr": 1e-2, **overrides})
    return GumbelTrainer(gen, disc, cfg, max_len=T, rng=torch.Generator().manual_seed(seed + 100))


def real_batch(n: int = 8, seed: int = 0) -> torch.Tensor:
    x = torch.randint(3, VOCAB, (n, T), generator=torch.Generator().manual_seed(seed))
    x[0, 3], x[0, 4:] = EOS, PAD
    x[1, 1], x[1, 2:] = EOS, PAD
    return x


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict[str, torch.Tensor], module: nn.Module) -> list[str]:
    return [k for k, v in module.state_dict().items() if not torch.equal(before[k], v)]


# ---------------------------------------------------------------------------------------------- schedules
@pytest.mark.parametrize("kind", SCHEDULES)
def test_schedules_hit_their_endpoints_and_are_monotone(kind):
    total, top = 50, 100.0
    values = [inverse_temperature(kind, s, total, top) for s in range(total + 5)]
    start = top if kind == "constant" else 1.0
    assert values[0] == pytest.approx(start, abs=1e-12)
    assert values[total] == pytest.approx(top, abs=1e-9) and values[-1] == pytest.approx(top, abs=1e-9)
    assert all(b >= a - 1e-12 for a, b in zip(values, values[1:], strict=False))
    assert all(start - 1e-9 <= v <= top + 1e-9 for v in values)


def test_schedule_shapes_and_errors():
    assert inverse_temperature("linear", 25, 50, 101.0) == pytest.approx(51.0)
    assert inverse_temperature("exp", 25, 50, 100.0) == pytest.approx(10.0)
    assert inverse_temperature("sigmoid", 25, 50, 101.0) == pytest.approx(51.0)  # symmetric about the middle
    assert inverse_temperature("sigmoid", 5, 50, 101.0) < inverse_temperature("linear", 5, 50, 101.0)
    with pytest.raises(ValueError, match="schedule"):
        inverse_temperature("cosine", 1, 10, 5.0)
    with pytest.raises(ValueError, match=">= 1"):
        inverse_temperature("exp", 1, 10, 0.5)


def test_trainer_beta_follows_generator_steps():
    tr = make_trainer(
        temperature_schedule="linear", max_inverse_temperature=11.0, anneal_steps=5, instance_noise=0.4
    )
    assert tr.beta == 1.0 and tr.noise_std == pytest.approx(0.4)
    for _ in range(5):
        tr.generator_step(real_batch())
    assert tr.beta == pytest.approx(11.0) and tr.noise_std == 0.0


# ---------------------------------------------------------------------------------------------- relaxed samples
def test_relaxed_samples_padding_lengths_and_excluded_ids():
    gen, _ = make_models()
    s = relaxed_sample(gen, 32, T, beta=3.0, rng=torch.Generator().manual_seed(0))
    assert s.vectors.shape == (32, T, VOCAB) and s.tokens.shape == (32, T)
    assert torch.allclose(s.vectors.sum(-1), torch.ones(32, T))
    assert 1 < len(set(s.lengths.tolist()))  # rows end at different lengths
    pos = torch.arange(T)[None, :]
    real = pos < s.lengths[:, None]
    assert torch.equal(s.tokens == PAD, ~real)  # PAD exactly after the end
    ended = s.lengths < T
    assert bool(
        (s.tokens[ended, s.lengths[ended] - 1] == EOS).all()
    )  # the last real token of a short row is EOS
    assert torch.equal(s.vectors[~real], F.one_hot(torch.full(((~real).sum(),), PAD), VOCAB).float())
    assert float(s.vectors[..., BOS].detach().max()) == 0.0  # never_sample ids get probability 0
    assert float(s.vectors[real][:, PAD].detach().max()) == 0.0


def test_softmax_relaxation_is_the_generators_distribution():
    gen, _ = make_models()
    s = relaxed_sample(gen, 16, T, beta=50.0, relaxation="softmax", rng=torch.Generator().manual_seed(1))
    logits = gen(gen.teacher_inputs(s.tokens)).index_fill(-1, torch.tensor([PAD, BOS]), float("-inf"))
    real = torch.arange(T)[None, :] < s.lengths[:, None]
    assert torch.allclose(s.vectors[real], logits.softmax(-1)[real], atol=1e-6)


def test_straight_through_forward_is_one_hot_of_the_sample():
    gen, _ = make_models()
    s = relaxed_sample(gen, 16, T, beta=1.0, straight_through=True, rng=torch.Generator().manual_seed(2))
    assert torch.allclose(s.vectors, F.one_hot(s.tokens, VOCAB).float(), atol=1e-6)
    s.vectors[..., 5].sum().backward()  # but the backward pass goes through the relaxed vectors
    assert float(gen.proj.weight.grad.abs().sum()) > 0


def test_hard_tokens_are_samples_of_the_softmax():
    """argmax(logits + Gumbel) is a sample of softmax(logits): first-token frequencies match the model."""
    gen, _ = make_models()
    s = relaxed_sample(gen, 4000, 1, beta=1.0, rng=torch.Generator().manual_seed(3))
    logits = gen(torch.full((1, 1), BOS))[0, 0].index_fill(0, torch.tensor([PAD, BOS]), float("-inf"))
    freq = torch.bincount(s.tokens[:, 0], minlength=VOCAB).float() / 4000
    assert torch.allclose(freq, logits.softmax(0), atol=0.03)


# ---------------------------------------------------------------------------------------------- gradient paths
def test_gradients_reach_the_generator_only_through_the_relaxed_samples():
    gen, disc = make_models()
    s = relaxed_sample(gen, 8, T, beta=2.0, rng=torch.Generator().manual_seed(4))
    disc(s.vectors, s.lengths).sum().backward()
    assert all(p.grad is not None for p in (gen.proj.weight, gen.lstm.weight_hh_l0))
    assert float(gen.proj.weight.grad.abs().sum()) > 0

    gen.zero_grad(set_to_none=True)
    s = relaxed_sample(gen, 8, T, beta=2.0, rng=torch.Generator().manual_seed(4))
    disc(s.vectors.detach(), s.lengths).sum().backward()  # the hard tokens fed back carry no gradient
    assert all(p.grad is None for p in gen.parameters())


@pytest.mark.parametrize("loss", ["rsgan", "wgan-gp", "wasserstein"])
def test_generator_step_changes_only_the_generator(loss):
    tr = make_trainer(loss=loss)
    g0, d0 = snapshot(tr.generator), snapshot(tr.discriminator)
    m = tr.generator_step(real_batch())
    assert changed(g0, tr.generator) and not changed(d0, tr.discriminator)
    assert not tr.d_optimizer.state and tr.g_steps == 1
    assert {"generator/loss", "generator/grad_norm", "generator/inverse_temperature"} <= set(m)


@pytest.mark.parametrize("loss", GAN_LOSSES)
def test_discriminator_step_changes_only_the_discriminator(loss):
    tr = make_trainer(loss=loss, instance_noise=0.1)
    g0, d0 = snapshot(tr.generator), snapshot(tr.discriminator)
    m = tr.discriminator_step(real_batch())
    assert not changed(g0, tr.generator) and changed(d0, tr.discriminator)
    assert all(p.grad is None for p in tr.generator.parameters()) and not tr.g_optimizer.state
    assert 0.0 <= m["discriminator/acc_pair"] <= 1.0 and ("discriminator/gp" in m) == (loss == "wgan-gp")
    if loss == "wasserstein":
        assert (
            max(float(p.detach().abs().max()) for p in tr.discriminator.parameters())
            <= tr.config.clip_value + 1e-7
        )


def test_rsgan_generator_step_needs_real_data():
    with pytest.raises(ValueError, match="real batch"):
        make_trainer(loss="rsgan").generator_step()
    make_trainer(loss="standard").generator_step()  # the absolute losses do not


def test_transformer_generator_step():
    pytest.importorskip("transformers")
    tr = make_trainer("transformer", loss="hinge")
    g0 = snapshot(tr.generator)
    tr.generator_step()
    assert changed(g0, tr.generator)


# ---------------------------------------------------------------------------------------------- state and runs
def test_state_dict_round_trip_gives_identical_continuation():
    data = real_batch(32, seed=5)
    a = make_trainer(loss="wgan-gp", instance_noise=0.2, steps_per_epoch=2, d_steps=2)
    a.train_epoch(data, torch.Generator().manual_seed(0))
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    b = make_trainer(
        loss="wgan-gp", instance_noise=0.2, steps_per_epoch=2, d_steps=2, seed=1
    )  # other weights
    b.load_state_dict(state)
    assert b.g_steps == a.g_steps == 2 and b.beta == a.beta
    outs = []
    for tr in (a, b):
        torch.manual_seed(9)
        outs.append(tr.train_epoch(data, torch.Generator().manual_seed(1)))
    assert outs[0] == {
        **outs[1],
        "time/generator_s": outs[0]["time/generator_s"],
        "time/discriminator_s": outs[0]["time/discriminator_s"],
    }
    for x, y in zip(a.state_dict()["generator"].values(), b.state_dict()["generator"].values(), strict=True):
        assert torch.equal(x, y)
    for x, y in zip(a.discriminator.parameters(), b.discriminator.parameters(), strict=True):
        assert torch.equal(x, y)


def test_tiny_end_to_end_run_separates_soft_inputs():
    """The softmax relaxation is easy to spot: a short run separates it from one-hot data."""
    data = real_batch(64, seed=6)
    tr = make_trainer(
        relaxation="softmax", loss="standard", g_lr=1e-4, d_lr=1e-2, steps_per_epoch=10, d_steps=3
    )
    first = tr.discriminator_step(data[:32])
    metrics = tr.train_epoch(data, torch.Generator().manual_seed(0))
    assert tr.g_steps == 10 and tr.d_steps == 31
    assert {"generator/loss", "discriminator/loss", "discriminator/acc_pair", "time/generator_s"} <= set(
        metrics
    )
    last = tr.discriminator_step(data[:32])
    assert first["discriminator/acc_pair"] <= 0.75 and last["discriminator/acc_pair"] >= 0.95


def test_from_config_and_validation():
    cfg = load_config(
        "recipes/configs/tiny.yaml",
        ["adversarial.method=gumbel", "gumbel.spectral_norm=true", "gumbel.steps_per_epoch=4"],
    )
    gen, disc = make_models()
    tr = build_trainer(cfg, gen, disc, torch.Generator().manual_seed(0))
    assert isinstance(tr, GumbelTrainer) and disc.spectral_norm and tr.config is cfg.gumbel
    assert tr.anneal_steps == cfg.adversarial.epochs * 4 and tr.max_len == cfg.data.max_len
    # anneal_steps=0 means "the whole run": a trainer built in code must be told how long that is
    with pytest.raises(ValueError, match="total_steps"):
        GumbelTrainer(*make_models(), GumbelConfig(), max_len=T)
    assert GumbelTrainer(*make_models(), GumbelConfig(), max_len=T, total_steps=7).anneal_steps == 7
    assert GumbelTrainer(*make_models(), GumbelConfig(anneal_steps=3), max_len=T).anneal_steps == 3
    with pytest.raises(ConfigError, match="gumbel.label_smoothing"):
        load_config(None, ["gumbel.loss=hinge", "gumbel.label_smoothing=0.1"])
    with pytest.raises(ConfigError, match="gumbel.relaxation"):
        load_config(None, ["gumbel.relaxation=argmax"])
    with pytest.raises(ConfigError, match="max_inverse_temperature"):
        load_config(None, ["gumbel.max_inverse_temperature=0.5"])


def test_weight_clipping_with_spectral_norm_is_refused():
    """Weight clipping on a spectrally normalized discriminator would clip the parametrisation's originals."""
    with pytest.raises(ConfigError, match="gumbel.spectral_norm=true with gumbel.loss=wasserstein"):
        load_config(
            None, ["adversarial.method=gumbel", "gumbel.loss=wasserstein", "gumbel.spectral_norm=true"]
        )
    gen, disc = make_models()
    disc.enable_spectral_norm()  # e.g. a checkpoint trained with spectral normalization
    with pytest.raises(ValueError, match="wasserstein"):
        GumbelTrainer(gen, disc, GumbelConfig(loss="wasserstein", anneal_steps=5), max_len=T)
    from seqgan.losses import clip_weights_

    with pytest.raises(ValueError, match="parametrised"):
        clip_weights_(disc, 0.01)
