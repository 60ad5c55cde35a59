"""Tests for RelGAN's models (Nie et al., ICLR 2019): the relational-memory generator (its step against its
teacher-forced forward and one memory update against a naive re-implementation of Santoro et al.'s equations,
state selection, spec round trip and meta build, fast decoding) and the multi-representation discriminator (ids
against one-hot input, distinct representations that all train, padding invariance), the configs that select them,
and a tiny end-to-end Gumbel run resumed exactly (tiny models, CPU)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from seqgan.checkpoint import CheckpointError, build_checked
from seqgan.config import ConfigError, GumbelConfig, load_config
from seqgan.models import (
    RelGANDiscriminator,
    RMCGenerator,
    build_discriminator,
    build_generator,
    discriminator_class,
    generator_class,
)
from seqgan.rollout import MonteCarloRollout
from seqgan.trainers import GumbelTrainer, build_trainer
from seqgan.trainers.gumbel import inverse_temperature

VOCAB, PAD, BOS, EOS = 12, 0, 1, 2


def make_rmc(seed: int = 0, **kw) -> RMCGenerator:
    torch.manual_seed(seed)
    args = {"embed_dim": 6, "mem_slots": 2, "num_heads": 2, "head_size": 4, "pad_id": PAD, "bos_id": BOS}
    return RMCGenerator(VOCAB, **{**args, **kw})


def make_disc(seed: int = 0, **kw) -> RelGANDiscriminator:
    torch.manual_seed(seed)
    args = {"embed_dim": 8, "num_rep": 4, "filter_sizes": (2, 3), "num_filters": (5, 4), "dropout": 0.0}
    return RelGANDiscriminator(VOCAB, **{**args, "pad_id": PAD, "eos_id": EOS, **kw})


def padded_ids(seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (4, 7), generator=g)
    ids[0, 3], ids[0, 4:] = EOS, PAD
    ids[1, 5], ids[1, 6:] = EOS, PAD
    ids[2, 1], ids[2, 2:] = EOS, PAD
    return ids  # row 3: full length, no EOS


# ---------------------------------------------------------------------------------------------------------
# the relational-memory generator


def test_step_equals_teacher_forced_forward():
    gen = make_rmc().eval()
    tokens = padded_ids()
    inputs = gen.teacher_inputs(tokens)
    full = gen(inputs)  # (B, T, V)
    state, steps = gen.init_state(4), []
    for t in range(inputs.shape[1]):
        logits, state = gen.step(inputs[:, t], state)
        steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, dim=1), full, rtol=0, atol=1e-5)
    mask = tokens != PAD
    torch.testing.assert_close(gen.masked_logits(inputs, mask), full[mask], rtol=0, atol=1e-6)
    with torch.no_grad(), gen.fast_decoder(1.0) as decoder:  # the fused path steps the same memory
        feats, fast_state = decoder.step(inputs[:, 0], decoder.init(4))
        torch.testing.assert_close(feats @ gen.proj.weight.T + gen.proj.bias, full[:, 0], rtol=0, atol=1e-5)


def _layer_norm(x, norm):
    mean = sum(x) / len(x)
    var = sum((v - mean) ** 2 for v in x) / len(x)
    return [(v - mean) / math.sqrt(var + norm.eps) * float(g) + float(b)
            for v, g, b in zip(x, norm.weight, norm.bias, strict=True)]  # fmt: skip


def _linear(layer, x, rows=None):
    """``layer(x)`` with Python loops; ``rows``: only these output units."""
    rows = range(layer.out_features) if rows is None else rows
    bias = layer.bias if layer.bias is not None else [0.0] * layer.out_features
    return [sum(float(layer.weight[o, i]) * x[i] for i in range(len(x))) + float(bias[o]) for o in rows]


def _naive_core(gen: RMCGenerator, memory: list[list[float]], token: int) -> list[list[float]]:
    """One RMC update written from Santoro et al.'s equations, one memory row and one head at a time."""
    w, h, d = gen.mem_size, gen.num_heads, gen.head_size
    sigmoid = lambda v: 1.0 / (1.0 + math.exp(-v))  # noqa: E731
    x = _linear(gen.input_proj, [float(v) for v in gen.embedding.weight[token]])
    rows = [*memory, x]  # [M; x]
    keys = [_linear(gen.key_value, r, range(w)) for r in rows]
    values = [_linear(gen.key_value, r, range(w, 2 * w)) for r in rows]
    gates_x = _linear(gen.gate_input, x)
    new = []
    for m in memory:
        q = _linear(gen.query, m)
        attended = []
        for j in range(h):  # head j: units j * d .. (j + 1) * d
            cols = range(j * d, (j + 1) * d)
            scores = [sum(q[c] * k[c] for c in cols) / math.sqrt(d) for k in keys]
            top = max(scores)
            e = [math.exp(s - top) for s in scores]
            probs = [v / sum(e) for v in e]
            attended += [sum(p * v[c] for p, v in zip(probs, values, strict=True)) for c in cols]
        cand = _layer_norm([a + b for a, b in zip(m, attended, strict=True)], gen.norm_attention)
        hidden = [max(v, 0.0) for v in _linear(gen.mlp[0], cand)]
        cand = _layer_norm(
            [a + b for a, b in zip(cand, _linear(gen.mlp[2], hidden), strict=True)], gen.norm_mlp
        )
        gates_m = _linear(gen.gate_memory, [math.tanh(v) for v in m])
        row = []
        for u in range(w):
            i_gate = sigmoid(gates_m[u] + gates_x[u])
            f_gate = sigmoid(gates_m[w + u] + gates_x[w + u] + 1.0)  # forget bias 1
            row.append(i_gate * math.tanh(cand[u]) + f_gate * m[u])
        new.append(row)
    return new


def test_one_memory_update_matches_a_naive_reimplementation():
    gen = make_rmc(seed=3, mem_slots=2, num_heads=2, head_size=3).eval()
    start = gen.init_state(2)
    assert torch.equal(start[0], torch.eye(2, 6))  # the identity memory, zero-padded
    torch.manual_seed(4)
    memory = start + 0.5 * torch.randn(start.shape)  # a memory that is not the identity
    tokens = torch.tensor([5, 9])
    with torch.no_grad():
        logits, new = gen.step(tokens, memory)
        gen.requires_grad_(False)  # plain floats for the naive version
    for b in range(2):
        ref = torch.tensor(_naive_core(gen, memory[b].tolist(), int(tokens[b])))
        torch.testing.assert_close(new[b], ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(logits, gen.proj(new.reshape(2, -1)), rtol=0, atol=0)


def test_select_state_takes_rows_in_order_with_repeats():
    """Decoding on from selected rows equals decoding the whole batch and selecting the same rows (the step is
    batched row by row)."""
    gen = make_rmc().eval()
    index = torch.tensor([2, 0, 2, 1])
    with torch.no_grad():
        _, state = gen.step(torch.tensor([3, 4, 5]), gen.init_state(3))
        chosen = gen.select_state(state, index)
        assert chosen.shape == (4, 2, 8) and torch.equal(chosen[0], chosen[2])
        nxt = torch.tensor([6, 7, 8])
        logits, after = gen.step(nxt, state)
        logits_sel, after_sel = gen.step(nxt[index], chosen)
    torch.testing.assert_close(logits_sel, logits[index], rtol=0, atol=1e-6)
    torch.testing.assert_close(after_sel, gen.select_state(after, index), rtol=0, atol=1e-6)
    assert not torch.allclose(after[0], after[1])  # rows really differ, so the order is checked


def test_generator_spec_round_trip_and_meta_build():
    gen = make_rmc(dropout=0.1, eos_id=None)
    spec = gen.spec()
    assert spec["kind"] == "rmc" and generator_class("rmc") is RMCGenerator
    with torch.device("meta"):
        meta = RMCGenerator.from_spec(spec)
        assert meta.init_state(2).shape == (2, 2, 8)
    loaded = build_checked(
        generator_class(spec["kind"]).from_spec, spec, gen.state_dict(), "generator", "x.pt"
    )
    assert loaded.spec() == spec
    inputs = torch.tensor([[BOS, 4, 5, 6]])
    torch.testing.assert_close(loaded.eval()(inputs), gen.eval()(inputs), rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="do not match its spec"):  # sizes that do not fit the weights
        build_checked(RMCGenerator.from_spec, {**spec, "head_size": 5}, gen.state_dict(), "generator", "x.pt")


def test_fast_and_generic_rollouts_agree():
    """The fused RMC decoder vs the plain step path (same RNG), scored by the RelGAN discriminator."""
    gen, disc = make_rmc(eos_id=EOS), make_disc().eval()
    tokens = padded_ids()
    g = lambda: torch.Generator().manual_seed(8)  # noqa: E731
    fast = MonteCarloRollout(gen, update_rate=0.0, fast=True)(tokens, disc, 64, rng=g())
    slow = MonteCarloRollout(gen, update_rate=0.0, fast=False)(tokens, disc, 64, rng=g())
    assert fast.shape == tokens.shape
    torch.testing.assert_close(fast, slow, rtol=0, atol=5e-3)


# ---------------------------------------------------------------------------------------------------------
# the multi-representation discriminator


def test_ids_and_exact_one_hot_give_the_same_logits():
    disc = make_disc().eval()
    ids = padded_ids()
    one_hot = F.one_hot(ids, VOCAB).float()
    by_ids = disc(ids, per_rep=True)
    assert by_ids.shape == (4, 4)
    torch.testing.assert_close(disc(one_hot, disc.lengths(ids), per_rep=True), by_ids, rtol=0, atol=1e-6)
    torch.testing.assert_close(disc(ids), by_ids.mean(dim=1), rtol=0, atol=1e-6)  # one logit: the mean
    full = ids[3:]  # no padding: one-hot needs no lengths
    torch.testing.assert_close(disc(F.one_hot(full, VOCAB).float()), disc(full), rtol=0, atol=1e-6)
    # padding never counts: more of it, or a different padding id value at those positions, changes nothing
    longer = torch.cat([ids, torch.full((4, 5), PAD)], dim=1)
    torch.testing.assert_close(disc(longer), disc(ids), rtol=0, atol=1e-6)
    vectors = one_hot.clone()
    vectors[0, 5] = torch.softmax(torch.randn(VOCAB), 0)  # what lies past a row's end is never read
    torch.testing.assert_close(disc(vectors, disc.lengths(ids)), disc(ids), rtol=0, atol=1e-6)


def test_representations_are_distinct_matrices_that_all_get_gradient():
    disc = make_disc(num_rep=4, embed_dim=8)
    assert disc.embeddings.shape == (VOCAB, 4, 2)
    mats = [disc.embeddings[:, r] for r in range(4)]
    assert all(not torch.allclose(mats[a], mats[b]) for a in range(4) for b in range(a + 1, 4))
    soft = torch.softmax(torch.randn(3, 6, VOCAB), dim=2).requires_grad_(True)
    disc(soft, per_rep=True).sum().backward()
    grad = disc.embeddings.grad
    assert all(float(grad[:, r].abs().sum()) > 0 for r in range(4))
    assert float(soft.grad.abs().sum()) > 0  # the relaxed input is differentiable
    # representation r's logit reads only matrix r (the CNN is shared): change matrix 1, only column 1 moves
    ids = padded_ids()
    before = disc.eval()(ids, per_rep=True)
    with torch.no_grad():
        disc.embeddings[:, 1] += 1.0
    after = disc(ids, per_rep=True)
    assert torch.equal(after[:, [0, 2, 3]], before[:, [0, 2, 3]])
    assert not torch.allclose(after[:, 1], before[:, 1])


def test_discriminator_spec_round_trip_meta_build_and_spectral_norm():
    disc = make_disc(spectral_norm=True)
    spec = disc.spec()
    assert spec["kind"] == "relgan" and discriminator_class("relgan") is RelGANDiscriminator
    with torch.device("meta"):
        RelGANDiscriminator.from_spec({**spec, "num_rep": 4, "embed_dim": 4096})  # sizes allocate nothing
    loaded = build_checked(RelGANDiscriminator.from_spec, spec, disc.state_dict(), "discriminator", "x.pt")
    ids = padded_ids()
    torch.testing.assert_close(loaded.eval()(ids), disc.eval()(ids), rtol=0, atol=0)
    with pytest.raises(ValueError, match="multiple of num_rep"):
        RelGANDiscriminator(VOCAB, embed_dim=6, num_rep=4)


# ---------------------------------------------------------------------------------------------------------
# configs and the Gumbel trainer


def test_config_kinds_and_methods(root):
    cfg = load_config(
        None,
        ["generator.kind=rmc", "generator.head_size=4", "discriminator.kind=relgan", "discriminator.num_rep=8",
         "discriminator.embed_dim=16", "adversarial.method=gumbel"],
    )  # fmt: skip

    class Tok:
        vocab_size, pad_id, bos_id, eos_id = VOCAB, PAD, BOS, EOS

    gen, disc = build_generator(cfg, Tok()), build_discriminator(cfg, Tok())
    assert isinstance(gen, RMCGenerator) and gen.mem_size == 8 and gen.mem_slots == 1
    assert isinstance(disc, RelGANDiscriminator) and disc.num_rep == 8 and disc.rep_dim == 2
    for method in ("seqgan", "coldgan"):
        load_config(None, ["discriminator.kind=relgan", f"adversarial.method={method}"])
    with pytest.raises(ConfigError, match="discriminator.kind"):
        load_config(None, ["discriminator.kind=relgan", "adversarial.method=scratchgan"])
    with pytest.raises(ConfigError, match="multiple of discriminator.num_rep"):
        load_config(None, ["discriminator.kind=relgan", "discriminator.num_rep=48"])
    for name in ("oracle_relgan", "coco_relgan"):
        shipped = load_config(root / f"recipes/configs/{name}.yaml")
        assert shipped.generator.kind == "rmc" and shipped.discriminator_kind == "relgan"
        assert shipped.adversarial.method == "gumbel" and shipped.gumbel.loss == "rsgan"
        assert shipped.gumbel.temperature_schedule == "exp"


def test_gumbel_trainer_scores_every_representation():
    gen, disc = make_rmc(eos_id=EOS), make_disc()
    with torch.no_grad():
        gen.proj.bias[EOS] += 1.0
    config = GumbelConfig(batch_size=4)
    trainer = GumbelTrainer(
        gen, disc, config, max_len=7, rng=torch.Generator().manual_seed(0), total_steps=10
    )
    ids = padded_ids()
    assert torch.equal(trainer._score(ids), disc(ids, per_rep=True))
    before = {k: v.clone() for k, v in gen.state_dict().items()}
    g = trainer.generator_step(ids)
    d_before = {k: v.clone() for k, v in disc.state_dict().items()}
    d = trainer.discriminator_step(ids)
    assert math.isfinite(g["generator/loss"]) and math.isfinite(d["discriminator/loss"])
    assert any(not torch.equal(before[k], v) for k, v in gen.state_dict().items())
    assert any(not torch.equal(d_before[k], v) for k, v in disc.state_dict().items())


def test_relgan_end_to_end_resumes_exactly(tmp_path, root):
    """MLE pretraining of the RMC, then Gumbel training against the RelGAN discriminator; 2 epochs straight
    equal 1 epoch then --resume for 1 more."""
    from seqgan.stages import adversarial, pretrain

    def cfg(out, epochs):
        return load_config(
            root / "recipes/configs/tiny.yaml",
            [
                f"out_dir={out}",
                f"data.train={root / 'data/tiny/train.txt'}",
                f"data.test={root / 'data/tiny/test.txt'}",
                f"adversarial.pretrain_checkpoint={tmp_path / 'mle' / 'pretrain.pt'}",
                "generator.kind=rmc",
                "generator.head_size=8",
                "discriminator.kind=relgan",
                "discriminator.num_rep=4",
                "adversarial.method=gumbel",
                f"adversarial.epochs={epochs}",
                "adversarial.eval_num_samples=20",
                "gumbel.batch_size=8",
                "gumbel.steps_per_epoch=2",
                "gumbel.anneal_steps=4",
                "gumbel.g_lr=0.01",
                "pretrain.num_print_samples=0",
                "pretrain.d_rounds=0",  # RelGAN pretrains the generator only
            ],
        )

    pre = torch.load(pretrain(cfg(tmp_path / "mle", 2)), weights_only=True)
    assert pre["generator"]["spec"]["kind"] == "rmc" and pre["discriminator"]["spec"]["kind"] == "relgan"
    straight = adversarial(cfg(tmp_path / "straight", 2))
    adversarial(cfg(tmp_path / "resumed", 1))
    resumed = adversarial(cfg(tmp_path / "resumed", 2), resume=True)
    a = torch.load(straight, weights_only=True)
    b = torch.load(resumed, weights_only=True)
    assert a["epoch"] == b["epoch"] == 2 and a["trainer"]["g_steps"] == 4
    for what in ("generator", "discriminator"):
        sa, sb = a[what]["state_dict"], b[what]["state_dict"]
        assert all(torch.equal(sa[k], sb[k]) for k in sa), what
    mle = pre["generator"]["state_dict"]
    assert any(not torch.equal(mle[k], a["generator"]["state_dict"][k]) for k in mle)
    assert isinstance(build_trainer(cfg(tmp_path / "x", 1), make_rmc(), make_disc()), GumbelTrainer)


def test_the_exp_schedule_is_relgans():
    """RelGAN's 'exp' adaptation, beta_max ** (i / N), and its 'lin' one, 1 + (beta_max - 1) i / N."""
    for beta_max, n in ((100.0, 300), (1000.0, 5000)):
        for i in (0, 1, n // 3, n // 2, n - 1, n, 2 * n):
            x = min(i / n, 1.0)
            assert inverse_temperature("exp", i, n, beta_max) == pytest.approx(beta_max**x, rel=1e-12)
            assert inverse_temperature("linear", i, n, beta_max) == pytest.approx(1 + (beta_max - 1) * x)
