"""Tests for ScratchGAN: dense per-step rewards, discounted returns, baselines, the per-prefix discriminator and
``seqgan.ScratchGANTrainer`` (tiny models, CPU)."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch

from seqgan.checkpoint import save_checkpoint
from seqgan.config import Config, ConfigError, ScratchGANConfig, load_config
from seqgan.data.tokenizers import WordTokenizer
from seqgan.losses import (
    discounted_returns,
    ema_baseline_update,
    masked_bce,
    policy_gradient_loss,
    prefix_rewards,
    sampled_log_probs,
    step_means,
)
from seqgan.models import build_discriminator, discriminator_class
from seqgan.models.discriminator import CNNDiscriminator
from seqgan.models.lstm import LSTMGenerator
from seqgan.models.rnn_discriminator import RNNDiscriminator
from seqgan.runs import load_run, make_checkpoint
from seqgan.sampling import sample
from seqgan.trainers import TRAINERS, ScratchGANTrainer, build_trainer
from seqgan.trainers.scratchgan import init_embeddings, read_vectors, vocab_strings

VOCAB, PAD, BOS, EOS, T = 10, 0, 1, 2, 6


def make_trainer(seed: int = 0, **overrides) -> ScratchGANTrainer:
    torch.manual_seed(seed)
    gen = LSTMGenerator(VOCAB, embed_dim=8, hidden_dim=16, pad_id=PAD, bos_id=BOS, eos_id=EOS)
    disc = RNNDiscriminator(VOCAB, embed_dim=8, hidden_dim=12, dropout=0.0, pad_id=PAD, eos_id=EOS)
    cfg = ScratchGANConfig(**{"batch_size": 8, "steps_per_epoch": 2, "g_lr": 1e-2, "d_lr": 1e-2, **overrides})
    return ScratchGANTrainer(gen, disc, cfg, max_len=T, rng=torch.Generator().manual_seed(seed + 100))


def real_batch(n: int = 8, seed: int = 1) -> torch.Tensor:
    """``(n, T)`` real-looking rows: words 3..9, then EOS, then PAD; lengths 1..T."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.full((n, T), PAD)
    for i in range(n):
        length = int(torch.randint(1, T + 1, (1,), generator=g))
        rows[i, :length] = torch.randint(3, VOCAB, (length,), generator=g)
        if length < T:
            rows[i, length] = EOS
    return rows


def params(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def changed(before: dict, module) -> set[str]:
    return {k for k, v in module.named_parameters() if not torch.equal(before[k], v.detach())}


# ---------------------------------------------------------------------------------------------------------
# losses


def test_discounted_returns_hand_computed():
    rewards = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, -1.0, 5.0, 7.0]])
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    got = discounted_returns(rewards, mask, 0.5)
    # row 0: the reward after EOS (4.0) never counts
    want = torch.tensor(
        [[1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3.0, 0.0], [1 - 0.5 + 1.25 + 0.875, -1 + 2.5 + 1.75, 8.5, 7.0]]
    )
    assert torch.allclose(got, want)
    assert torch.equal(discounted_returns(rewards, mask, 0.0), rewards * mask)  # gamma 0: R_t = r_t
    full = discounted_returns(rewards, mask, 1.0)  # gamma 1: sum of the rewards still to come
    assert torch.allclose(full, (rewards * mask).flip(1).cumsum(1).flip(1) * mask)


@pytest.mark.parametrize("gamma", [0.0, 0.23, 0.9, 1.0])
def test_discounted_returns_match_loop_and_closed_form(gamma):
    g = torch.Generator().manual_seed(0)
    rewards = torch.randn(5, 9, generator=g, dtype=torch.float64)
    lengths = torch.tensor([1, 4, 9, 6, 2])
    mask = torch.arange(9)[None, :] < lengths[:, None]
    got = discounted_returns(rewards, mask, gamma)
    for b in range(5):  # backward recursion R_t = r_t + gamma R_{t+1}, inside the sequence only
        acc = 0.0
        for t in reversed(range(9)):
            acc = rewards[b, t].item() + gamma * acc if t < lengths[b] else 0.0
            assert got[b, t].item() == pytest.approx(acc, abs=1e-12)
    # constant reward 1 over a sequence of length L: R_t = (1 - gamma^(L - t)) / (1 - gamma)
    ones = discounted_returns(
        torch.ones(1, 7, dtype=torch.float64), torch.ones(1, 7, dtype=torch.bool), gamma
    )
    for t in range(7):
        closed = 7 - t if gamma == 1.0 else (1 - gamma ** (7 - t)) / (1 - gamma)
        assert ones[0, t].item() == pytest.approx(closed, abs=1e-12)
    with pytest.raises(ValueError, match="gamma"):
        discounted_returns(rewards, mask, 1.5)


def test_prefix_rewards_kinds():
    logits = torch.tensor([[0.0, 2.0, -3.0]], requires_grad=True)
    assert torch.allclose(prefix_rewards(logits, "sigmoid"), 2 * torch.sigmoid(logits.detach()) - 1)
    assert prefix_rewards(logits, "sigmoid")[0, 0].item() == 0.0  # D = 1/2 is neutral
    assert torch.equal(prefix_rewards(logits, "logit"), logits.detach())
    assert prefix_rewards(logits, "log_sigmoid")[0, 0].item() == pytest.approx(math.log(0.5))
    assert not prefix_rewards(logits).requires_grad
    with pytest.raises(ValueError, match="reward kind"):
        prefix_rewards(logits, "exp")


def test_ema_baseline_update_matches_definition():
    ema, seen = torch.zeros(4), torch.zeros(4, dtype=torch.bool)
    v1 = torch.tensor([[1.0, 2.0, 9.0, 0.0], [3.0, 4.0, 0.0, 0.0]])
    m1 = torch.tensor([[True, True, True, False], [True, True, False, False]])
    ema_baseline_update(ema, seen, v1, m1, decay=0.9)
    # first time: the per-step mean over real tokens; step 3 has none and stays unseen
    assert torch.allclose(ema, torch.tensor([2.0, 3.0, 9.0, 0.0])) and seen.tolist() == [
        True,
        True,
        True,
        False,
    ]
    v2 = torch.tensor([[5.0, 1.0, 1.0, 4.0]])
    m2 = torch.tensor([[True, True, False, True]])
    ema_baseline_update(ema, seen, v2, m2, decay=0.9)
    want = torch.tensor([0.9 * 2 + 0.1 * 5, 0.9 * 3 + 0.1 * 1, 9.0, 4.0])  # step 2 absent: unchanged
    assert torch.allclose(ema, want) and seen.all()
    assert torch.allclose(step_means(v1, m1), torch.tensor([2.0, 3.0, 9.0, 0.0]))


def test_masked_bce_ignores_masked_positions():
    logits = torch.tensor([[0.5, -1.0, 100.0]])
    mask = torch.tensor([[True, True, False]])
    want = (-(torch.sigmoid(torch.tensor(0.5)).log()) - torch.sigmoid(torch.tensor(-1.0)).log()) / 2
    assert masked_bce(logits, 1.0, mask).item() == pytest.approx(want.item(), rel=1e-6)
    labels = torch.tensor([[1.0, 0.0, 1.0]])
    want = (-(torch.sigmoid(torch.tensor(0.5)).log()) - torch.sigmoid(torch.tensor(1.0)).log()) / 2
    assert masked_bce(logits, labels, mask).item() == pytest.approx(want.item(), rel=1e-6)


# ---------------------------------------------------------------------------------------------------------
# the per-prefix discriminator


def test_rnn_discriminator_shapes_and_causality():
    torch.manual_seed(0)
    disc = RNNDiscriminator(VOCAB, embed_dim=8, hidden_dim=12, dropout=0.0).eval()
    tokens = real_batch()
    logits = disc.prefix_logits(tokens)
    assert logits.shape == (8, T)
    lengths = disc.mask(tokens).sum(1)
    assert torch.allclose(disc(tokens), logits[torch.arange(8), lengths - 1])  # whole sequence = last prefix
    # one-hot probability vectors read the same embeddings
    assert torch.allclose(
        disc.prefix_logits(torch.nn.functional.one_hot(tokens, VOCAB).float()), logits, atol=1e-6
    )
    # the logit of prefix t does not depend on later tokens
    other = tokens.clone()
    other[:, 3:] = torch.randint(3, VOCAB, (8, T - 3))
    assert torch.allclose(disc.prefix_logits(other)[:, :3], logits[:, :3])
    rebuilt = discriminator_class(disc.spec()["kind"]).from_spec(disc.spec())
    rebuilt.load_state_dict(disc.state_dict())
    assert isinstance(rebuilt, RNNDiscriminator) and torch.equal(rebuilt.eval().prefix_logits(tokens), logits)


def test_tokens_after_eos_change_neither_rewards_nor_discriminator_loss():
    trainer = make_trainer()
    real = real_batch()
    fake = sample(trainer.generator, 8, T, rng=torch.Generator().manual_seed(5))
    assert (~fake.mask).any()
    noisy = fake.tokens.masked_fill(~fake.mask, 7)  # garbage after EOS
    noisy_real = real.masked_fill(~trainer.discriminator.mask(real), 8)
    rewards = trainer.rewards(fake.tokens, fake.mask)
    assert torch.equal(rewards, trainer.rewards(noisy, fake.mask)) and (rewards[~fake.mask] == 0).all()
    a = make_trainer()._discriminator_update(real, fake.tokens)
    b = make_trainer()._discriminator_update(noisy_real, noisy)
    assert a == b


# ---------------------------------------------------------------------------------------------------------
# the trainer


def test_generator_log_probs_are_those_of_the_sampling_distribution():
    """The REINFORCE log-probabilities are the sampling distribution's: temperature, and no dropout (samples are
    drawn in eval mode), whatever mode the generator is in."""
    trainer = make_trainer(temperature=0.7)
    torch.manual_seed(0)
    trainer.generator = LSTMGenerator(
        VOCAB, 8, 16, num_layers=2, dropout=0.25, pad_id=PAD, bos_id=BOS, eos_id=EOS
    )
    samples = sample(trainer.generator, 8, T, temperature=0.7, rng=torch.Generator().manual_seed(3))
    trainer.generator.train()
    log_probs, _ = sampled_log_probs(trainer.generator, samples.tokens, samples.mask, 0.7)
    assert torch.allclose(log_probs, samples.log_probs, atol=1e-5) and trainer.generator.training
    # the generator step scores its samples with that function (dropout would make it differ by ~0.1 nats)
    calls = []

    def spy(gen, tokens, mask, temperature):
        calls.append(gen.training)
        return sampled_log_probs(gen, tokens, mask, temperature)

    import seqgan.trainers.scratchgan as module

    original, module.sampled_log_probs = module.sampled_log_probs, spy
    try:
        trainer.generator_step()
    finally:
        module.sampled_log_probs = original
    assert calls == [True]


def test_generator_step_changes_only_the_generator():
    trainer = make_trainer()
    g0, d0 = params(trainer.generator), params(trainer.discriminator)
    metrics = trainer.generator_step()
    assert changed(g0, trainer.generator) == set(g0) and not changed(d0, trainer.discriminator)
    assert trainer.g_steps == 1 and trainer.d_steps == 0
    assert all(math.isfinite(v) for v in metrics.values())
    assert -1.0 <= metrics["reward/mean"] <= 1.0


def test_discriminator_step_changes_only_the_discriminator():
    trainer = make_trainer()
    g0, d0 = params(trainer.generator), params(trainer.discriminator)
    metrics = trainer.discriminator_step(real_batch())
    assert changed(d0, trainer.discriminator) == set(d0) and not changed(g0, trainer.generator)
    assert trainer.d_steps == 1 and trainer.g_steps == 0
    assert {"discriminator/loss", "discriminator/acc_real", "discriminator/prefix_acc_fake"} <= set(metrics)


def test_generator_loss_is_reinforce_on_discounted_returns_minus_the_ema_baseline():
    trainer = make_trainer(discount=0.5, baseline="ema", ema_decay=0.8)
    samples = [sample(trainer.generator, 8, T, rng=torch.Generator().manual_seed(s)) for s in (1, 2)]
    means = []
    for s in samples:  # the discriminator does not move during generator steps
        returns = discounted_returns(trainer.rewards(s.tokens, s.mask), s.mask, 0.5)
        means.append((step_means(returns, s.mask), s.mask.any(0), returns))
    gen_before = copy.deepcopy(trainer.generator)
    m = trainer._generator_update(samples[0])
    # the first batch is its own baseline (used, then stored)
    log_probs = sample_log_probs(gen_before, samples[0])
    want = policy_gradient_loss(log_probs, means[0][2], samples[0].mask, means[0][0])
    assert m["generator/pg_loss"] == pytest.approx(want.item(), rel=1e-5, abs=1e-7)
    present = means[0][1]
    assert torch.allclose(trainer.baseline_ema[present], means[0][0][present])
    baseline_used = trainer.baseline_ema.clone()
    gen_before = copy.deepcopy(trainer.generator)
    m = trainer._generator_update(samples[1])
    both = present & means[1][1]
    want_ema = 0.8 * baseline_used + 0.2 * means[1][0]
    assert torch.allclose(trainer.baseline_ema[both], want_ema[both], atol=1e-6)
    b = torch.where(present, baseline_used, means[1][0])
    want = policy_gradient_loss(sample_log_probs(gen_before, samples[1]), means[1][2], samples[1].mask, b)
    assert m["generator/pg_loss"] == pytest.approx(want.item(), rel=1e-5, abs=1e-7)


def sample_log_probs(gen, s) -> torch.Tensor:
    logits = gen(gen.teacher_inputs(s.tokens)).index_fill(-1, torch.tensor([PAD, BOS]), float("-inf"))
    lp = torch.log_softmax(logits, -1).gather(2, s.tokens[:, :, None]).squeeze(2)
    return lp.masked_fill(~s.mask, 0.0)


def test_mean_and_no_baseline():
    trainer = make_trainer(baseline="mean")
    returns = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    mask = torch.tensor([[True, True], [True, False]])
    assert torch.allclose(trainer.baseline(returns, mask), torch.tensor([2.0, 2.0]))
    assert make_trainer(baseline="none").baseline(returns, mask) is None


def test_splice_labels_and_mask():
    trainer = make_trainer(mix_fraction=1.0)
    real = torch.tensor(
        [[3, 4, 5, 6, EOS, PAD], [7, EOS, PAD, PAD, PAD, PAD], [EOS, PAD, PAD, PAD, PAD, PAD]]
    )
    fake = torch.tensor([[8, 8, 8, EOS, PAD, PAD], [9, 9, 9, 9, 9, 9], [8, EOS, PAD, PAD, PAD, PAD]])
    tokens, mask, labels = trainer.splice(real, fake)
    k = labels.sum(1).long()
    assert 1 <= k[0] <= 4 and k[1] == 1 and k[2] == 0  # never the real EOS; a lone EOS is not spliced
    for i in range(3):
        assert torch.equal(tokens[i, : k[i]], real[i, : k[i]]) and torch.equal(
            tokens[i, k[i] :], fake[i, k[i] :]
        )
        assert torch.equal(labels[i], (torch.arange(T) < k[i]).float())
    assert mask[1].all() and torch.equal(mask[2], fake[2] != PAD)
    metrics = trainer.discriminator_step(real_batch())  # every fake row spliced: no pure fake accuracy
    assert math.isnan(metrics["discriminator/acc_fake"]) and math.isfinite(metrics["discriminator/loss"])


def test_frozen_embeddings_stay_fixed():
    trainer = make_trainer(embedding="frozen")
    g_emb = trainer.generator.embedding.weight.detach().clone()
    d_emb = trainer.discriminator.embedding.weight.detach().clone()
    g0 = params(trainer.generator)
    trainer.train_epoch(real_batch(32), torch.Generator().manual_seed(0))
    assert torch.equal(trainer.generator.embedding.weight, g_emb)
    assert torch.equal(trainer.discriminator.embedding.weight, d_emb)
    assert changed(g0, trainer.generator) == set(g0) - {"embedding.weight"}


def test_train_epoch_is_deterministic_and_learns_to_tell_real_from_fake():
    runs = []
    for _ in range(2):
        trainer = make_trainer(steps_per_epoch=3)
        data_rng = torch.Generator().manual_seed(0)
        metrics = [trainer.train_epoch(real_batch(64), data_rng) for _ in range(4)]
        runs.append(
            (
                [{k: v for k, v in m.items() if not k.startswith("time/")} for m in metrics],
                params(trainer.generator),
            )
        )
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])
    assert trainer.g_steps == trainer.d_steps == 12
    assert {"time/sampling_s", "time/generator_s", "reward/return_mean"} <= set(
        trainer.train_epoch(real_batch(64), data_rng)
    )


def test_tiny_run_generator_learns_from_per_prefix_rewards():
    """Real data is one sentence, "3 4 3 4 EOS"; trained from scratch, the generator's samples start with it."""
    trainer = make_trainer(batch_size=32, steps_per_epoch=10, g_lr=2e-2, d_lr=1e-2)
    real = torch.tensor([[3, 4, 3, 4, EOS, PAD]]).repeat(64, 1)

    def prefix_rate() -> float:
        tokens = sample(trainer.generator, 200, T, rng=torch.Generator().manual_seed(1)).tokens
        return float((tokens[:, :4] == real[0, :4]).all(1).float().mean())

    before = prefix_rate()
    data_rng = torch.Generator().manual_seed(0)
    for _ in range(10):
        trainer.train_epoch(real, data_rng)
    assert before < 0.01 and prefix_rate() > 0.3  # at random, (1/8)^4 = 0.0002


def test_state_round_trip():
    trainer = make_trainer()
    trainer.train_epoch(real_batch(32), torch.Generator().manual_seed(0))
    buf = io.BytesIO()
    torch.save(trainer.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    other = make_trainer(seed=7)
    other.load_state_dict(state)
    assert other.g_steps == trainer.g_steps and torch.equal(other.baseline_ema, trainer.baseline_ema)
    a, b = trainer.generator_step(), other.generator_step()  # same RNG, weights, optimizers, baseline
    assert a == b
    assert all(
        torch.equal(p, q)
        for p, q in zip(trainer.generator.parameters(), other.generator.parameters(), strict=True)
    )


def test_needs_a_per_prefix_discriminator():
    gen = LSTMGenerator(VOCAB, 8, 16)
    with pytest.raises(TypeError, match="discriminator.kind=rnn"):
        ScratchGANTrainer(gen, CNNDiscriminator(VOCAB, 8, (2,), (4,)), ScratchGANConfig(), max_len=T)


# ---------------------------------------------------------------------------------------------------------
# config, builders, checkpoints


def test_config_and_registry(tmp_path):
    assert "scratchgan" in TRAINERS
    # the method picks the discriminator it needs; an explicit CNN is refused
    assert load_config(None, ["adversarial.method=scratchgan"]).discriminator_kind == "rnn"
    with pytest.raises(ConfigError, match="discriminator.kind=rnn"):
        load_config(None, ["adversarial.method=scratchgan", "discriminator.kind=cnn"])
    with pytest.raises(ConfigError, match="scratchgan.discount"):
        load_config(None, ["scratchgan.discount=2"])
    with pytest.raises(ConfigError, match="scratchgan.embedding_path"):
        load_config(None, ["scratchgan.embedding_init=vectors"])
    cfg = load_config(
        None, ["adversarial.method=scratchgan", "discriminator.kind=rnn", "discriminator.hidden_dim=24"]
    )
    tok = WordTokenizer(["a", "b"])
    disc = build_discriminator(cfg, tok)
    assert isinstance(disc, RNNDiscriminator) and disc.hidden_dim == 24 and disc.eos_id == tok.eos_id
    gen = LSTMGenerator(tok.vocab_size, 32, 32)
    trainer = build_trainer(cfg, gen, disc)
    assert isinstance(trainer, ScratchGANTrainer) and trainer.config is cfg.scratchgan

    # checkpoints: the spec's kind picks the class; a CNN spec without a kind (older checkpoints) still loads
    path = save_checkpoint(make_checkpoint(cfg, tok, gen, disc, {}, 0, "test"), tmp_path / "rnn.pt")
    run = load_run(path)
    assert isinstance(run.discriminator, RNNDiscriminator)
    assert all(
        torch.equal(p, q) for p, q in zip(run.discriminator.parameters(), disc.parameters(), strict=True)
    )
    cnn = CNNDiscriminator(tok.vocab_size, 8, (2,), (4,))
    spec = {k: v for k, v in cnn.spec().items() if k != "kind"}
    assert discriminator_class(spec.get("kind", "cnn")) is CNNDiscriminator


def test_embeddings_from_a_vectors_file(tmp_path):
    tok = WordTokenizer(["a", "dog", "Cat", "runs"])
    path = tmp_path / "vectors.txt"
    path.write_text("3 4\ndog 1 2 3 4\ncat 0.5 0.5 0.5 0.5\nzebra 9 9 9 9\ndog 7 7 7 7\n", encoding="utf-8")
    vectors = read_vectors(path, 4)
    assert set(vectors) == {"dog", "cat", "zebra"} and vectors["dog"].tolist() == [1, 2, 3, 4]  # first wins
    cfg = Config()
    cfg.scratchgan.embedding_init, cfg.scratchgan.embedding_path = "vectors", str(path)
    torch.manual_seed(0)
    gen = LSTMGenerator(tok.vocab_size, 4, 8)
    disc = RNNDiscriminator(tok.vocab_size, 4, 8)
    before = gen.embedding.weight.detach().clone()
    report = init_embeddings(cfg, tok, gen, disc)
    strings = vocab_strings(tok)
    assert strings[:3] == [None, None, None] and report == {"found": 2, "total": 5, "coverage": 0.4}
    dog, cat = tok.stoi["dog"], tok.stoi["Cat"]  # "Cat" falls back to the lowercase entry
    for emb in (gen.embedding.weight, disc.embedding.weight):
        assert emb[dog].tolist() == [1, 2, 3, 4] and emb[cat].tolist() == [0.5] * 4
    rest = [i for i in range(tok.vocab_size) if i not in (dog, cat)]
    assert torch.equal(gen.embedding.weight[rest], before[rest])  # no vector: random init kept

    bad = tmp_path / "bad.txt"
    bad.write_text("dog 1 2 3\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.txt:1: vectors of size 3, expected 4"):
        read_vectors(bad, 4)
    bad.write_text("dog 1 2 3 4\ncat 1 x 3 4\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.txt:2: not a number"):
        read_vectors(bad, 4)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_vectors(tmp_path / "missing.txt", 4)
    disc8 = RNNDiscriminator(tok.vocab_size, 8, 8)
    with pytest.raises(ConfigError, match="discriminator.embed_dim=8"):
        init_embeddings(cfg, tok, gen, disc8)


def test_embeddings_from_a_checkpoint(tmp_path):
    source_tok = WordTokenizer(["runs", "dog", "zebra"])
    torch.manual_seed(0)
    source = LSTMGenerator(source_tok.vocab_size, 4, 8)
    path = save_checkpoint(
        make_checkpoint(Config(), source_tok, source, None, {}, 0, "test"), tmp_path / "m.pt"
    )
    tok = WordTokenizer(["dog", "cat", "runs"])  # other order, one new word
    cfg = Config()
    cfg.scratchgan.embedding_init, cfg.scratchgan.embedding_path = "checkpoint", str(path)
    cfg.scratchgan.embedding_discriminator = False
    gen = LSTMGenerator(tok.vocab_size, 4, 8)
    report = init_embeddings(cfg, tok, gen, RNNDiscriminator(tok.vocab_size, 6, 8))
    assert report["found"] == 3 and report["total"] == 4  # dog, runs, <unk>; not cat
    for word in ("dog", "runs"):
        assert torch.equal(
            gen.embedding.weight[tok.stoi[word]], source.embedding.weight[source_tok.stoi[word]]
        )
