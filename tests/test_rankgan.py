"""Tests for RankGAN (Lin et al. 2017, arXiv 1705.11001): the rank score, the ranker's loss and update, the
rewards through the rollouts, the trainer's updates, the config and a tiny end-to-end run with --resume."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch

from seqgan.config import ConfigError, RankGANConfig, load_config
from seqgan.losses import log_rank_scores, ranker_loss
from seqgan.models import build_discriminator, discriminator_class
from seqgan.models.ranker import Ranker
from seqgan.rollout import MonteCarloRollout
from seqgan.trainers import RankGANTrainer, build_trainer
from seqgan.trainers.steps import PRETRAIN_OBJECTIVES, draw_references, ranker_step
from tests.test_policy_gradient import PAD, VOCAB, T, changed, make_models, real_batch, snapshot


def make_ranker(seed: int = 0, dropout: float = 0.0) -> Ranker:
    torch.manual_seed(seed)
    return Ranker(VOCAB, embed_dim=8, filter_sizes=(2, 3), num_filters=(6, 6), dropout=dropout, pad_id=PAD)


def make(**overrides) -> RankGANTrainer:
    gen, _ = make_models()
    cfg = RankGANConfig(
        **{"batch_size": 6, "num_rollouts": 3, "num_references": 3, "comparison_size": 4, "gamma": 2.0,
           "d_num_negatives": 12, "d_batch_size": 4, **overrides}
    )  # fmt: skip
    return RankGANTrainer(gen, make_ranker(), cfg, max_len=T, rng=torch.Generator().manual_seed(100))


def naive_log_rank(s, refs, comparison, gamma) -> float:
    """log R(s | U, C) by the paper's formulas, one reference at a time, in plain Python."""

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
            sum(x * x for x in a) * sum(y * y for y in b)
        )

    total = 0.0
    for u in refs:
        denom = sum(math.exp(gamma * cos(c, u)) for c in [s, *comparison])
        total += math.log(math.exp(gamma * cos(s, u)) / denom)
    return total / len(refs)


# ---------------------------------------------------------------------------------------------- the maths
def test_log_rank_score_by_hand():
    s = torch.tensor([[1.0, 0.0]])
    refs = torch.tensor([[1.0, 0.0], [0.0, 3.0]])  # cos(s, u1) = 1, cos(s, u2) = 0
    comparison = torch.tensor([[0.0, 2.0], [1.0, 1.0]])  # cos with u1: 0, 1/sqrt2; with u2: 1, 1/sqrt2
    gamma, r2 = 2.0, 1 / math.sqrt(2)
    by_u1 = 2.0 - math.log(math.exp(2.0) + math.exp(0.0) + math.exp(2 * r2))  # log P(s | u1, C)
    by_u2 = 0.0 - math.log(math.exp(0.0) + math.exp(2.0) + math.exp(2 * r2))  # log P(s | u2, C)
    got = log_rank_scores(s, refs, comparison, gamma)
    assert got.shape == (1,) and float(got) == pytest.approx((by_u1 + by_u2) / 2, abs=1e-6)
    # cosine: the scale of a feature vector does not matter
    assert torch.allclose(log_rank_scores(5 * s, 0.1 * refs, 3 * comparison, gamma), got)
    # every relevance equal: the uniform rank 1 / (|C| + 1)
    flat = log_rank_scores(torch.ones(1, 2), torch.ones(4, 2), torch.ones(7, 2), gamma)
    assert float(flat) == pytest.approx(-math.log(8), abs=1e-6)


def test_log_rank_scores_of_several_rows_against_the_naive_formula():
    g = torch.Generator().manual_seed(0)
    feats, refs, comparison = (torch.randn(n, 5, generator=g) for n in (4, 3, 6))
    got = log_rank_scores(feats, refs, comparison, 1.5)
    want = [naive_log_rank(f.tolist(), refs.tolist(), comparison.tolist(), 1.5) for f in feats]
    assert torch.allclose(got, torch.tensor(want), atol=1e-5)
    # each row is ranked among C with itself added, not among the other ranked rows
    assert float(log_rank_scores(feats[1:2], refs, comparison, 1.5)) == pytest.approx(float(got[1]), abs=1e-6)


def test_ranker_loss_by_hand():
    g = torch.Generator().manual_seed(1)
    real, fake, refs = (torch.randn(n, 4, generator=g) for n in (3, 2, 2))
    gamma = 3.0
    lr_real = [naive_log_rank(s, refs.tolist(), fake.tolist(), gamma) for s in real.tolist()]  # among C-
    lr_fake = [naive_log_rank(s, refs.tolist(), real.tolist(), gamma) for s in fake.tolist()]  # among C+
    want = -(sum(lr_real) / 3 + sum(math.log(1 - math.exp(x)) for x in lr_fake) / 2)
    loss, got_real, got_fake = ranker_loss(real, fake, refs, gamma)
    assert float(loss) == pytest.approx(want, abs=1e-5)
    assert torch.allclose(got_real, torch.tensor(lr_real), atol=1e-5)
    assert torch.allclose(got_fake, torch.tensor(lr_fake), atol=1e-5)


def test_ranker_update_is_a_step_on_the_naive_loss():
    ranker, lr, gamma = make_ranker(), 0.5, 2.0
    real, fake, refs = real_batch(4, seed=1), real_batch(3, seed=2), real_batch(2, seed=3)
    twin = copy.deepcopy(ranker)
    # the naive loss: each sentence encoded alone, the paper's formulas written out with autograd ops
    feats = {
        k: [twin(x[i : i + 1])[0] for i in range(len(x))] for k, x in (("r", real), ("f", fake), ("u", refs))
    }

    def log_r(s, comparison):
        terms = []
        for u in feats["u"]:
            rel = [gamma * torch.nn.functional.cosine_similarity(c, u, dim=0) for c in [s, *comparison]]
            terms.append(rel[0] - torch.logsumexp(torch.stack(rel), 0))
        return sum(terms) / len(terms)

    naive = -(
        sum(log_r(s, feats["f"]) for s in feats["r"]) / 4
        + sum(torch.log(1 - torch.exp(log_r(s, feats["r"]))) for s in feats["f"]) / 3
    )
    naive.backward()
    metrics = ranker_step(ranker, torch.optim.SGD(ranker.parameters(), lr=lr), real, fake, refs, gamma)
    assert metrics["discriminator/loss"] == pytest.approx(float(naive.detach()), abs=1e-5)
    for p, q in zip(ranker.parameters(), twin.parameters(), strict=True):
        want = q.detach() - lr * (q.grad if q.grad is not None else torch.zeros_like(q))
        assert torch.allclose(p, want, atol=1e-6)
    assert changed(snapshot(twin), ranker)


def test_reference_sets_leave_out_the_ranked_rows():
    rng = torch.Generator().manual_seed(0)
    for _ in range(20):
        batch = torch.randperm(10, generator=rng)[:4]
        refs = draw_references(10, batch, 5, rng)
        assert len(set(refs.tolist())) == 5 and not set(refs.tolist()) & set(batch.tolist())
    with pytest.raises(ValueError, match="num_references"):
        draw_references(10, torch.arange(8), 3, rng)


# ---------------------------------------------------------------------------------------------- rewards
def test_value_score_averages_the_outputs_themselves():
    gen, disc = make_models()
    tokens = real_batch(5, seed=4)

    class SigmoidOf(torch.nn.Module):
        def __init__(self, d):
            super().__init__()
            self.d = d

        def forward(self, x):
            return torch.sigmoid(self.d(x))

    rollout = MonteCarloRollout(gen, update_rate=0.0)
    want = rollout(tokens, disc, 4, rng=torch.Generator().manual_seed(7))  # mean sigmoid(D) (default)
    got = rollout(tokens, SigmoidOf(disc), 4, rng=torch.Generator().manual_seed(7), score="value")
    assert torch.allclose(got, want, atol=1e-6) and bool((want != 0).any())
    with pytest.raises(ValueError, match="value"):
        rollout(tokens, disc, 4, score="odds")


def test_reward_of_a_complete_sentence_is_its_log_rank_score():
    tr = make()
    real = real_batch(tr.real_rows_per_step, seed=5)
    tr.bound = tr.discriminator.bind(real[:3], real[3:], tr.config.gamma)
    samples, rewards = tr.draw()  # (B, T)
    tr.bound.eval()
    with torch.no_grad():
        whole = tr.bound(samples.tokens)  # (B,)
    lengths = samples.mask.sum(dim=1)
    last = rewards.gather(1, (lengths - 1)[:, None]).squeeze(1)
    assert torch.allclose(last, whole, atol=1e-6)
    # the same by the formula, from the ranker's features of the sets
    with torch.no_grad():
        feats, refs, comp = (
            tr.discriminator(samples.tokens),
            tr.discriminator(real[:3]),
            tr.discriminator(real[3:]),
        )
    want = [naive_log_rank(f.tolist(), refs.tolist(), comp.tolist(), 2.0) for f in feats]
    assert torch.allclose(whole, torch.tensor(want), atol=1e-5)
    # every real token's reward is a log rank score: negative, at least log(1 / (1 + M e^(2 gamma)))
    r = rewards[samples.mask]
    assert bool((r < 0).all()) and bool((r >= -math.log(1 + 4 * math.exp(4.0)) - 1e-5).all())
    assert bool((rewards[~samples.mask] == 0).all())


def test_fast_rollout_scorer_equals_the_bound_ranker():
    ranker = make_ranker(seed=3)
    tokens = real_batch(5, seed=11)
    tokens[2, 5:] = PAD  # a shorter sample: one padding column
    tokens[2, 4] = 2
    bound = ranker.bind(real_batch(3, seed=12), real_batch(4, seed=13), 1.5).eval()
    lengths = (tokens != PAD).sum(dim=1)
    scorer = bound.rollout_scorer(tokens, lengths, fast=True)
    assert not isinstance(scorer, type(lambda: 0))  # the CNN scorer applies here
    g = torch.Generator().manual_seed(0)
    b = torch.tensor([0, 0, 1, 2, 3, 4, 4, 2])
    t = torch.tensor([1, 3, 2, 4, 5, 1, 5, 3])
    seqs = tokens[b].clone()
    for i in range(len(b)):  # a completion: the sample's first t tokens, then other tokens
        seqs[i, t[i] :] = torch.randint(3, VOCAB, (T - int(t[i]),), generator=g)
    seqs[1, 4:] = PAD  # a completion that ended
    with torch.no_grad():
        assert torch.allclose(scorer(seqs, b, t), bound(seqs), atol=1e-5)
        assert not scorer.fallback


# ---------------------------------------------------------------------------------------------- the trainer
def test_generator_step_moves_the_generator_only():
    tr = make()
    gen_before, ranker_before = snapshot(tr.generator), snapshot(tr.discriminator)
    metrics = tr.generator_step(real_batch(tr.real_rows_per_step, seed=6))
    assert changed(gen_before, tr.generator) and not changed(ranker_before, tr.discriminator)
    assert tr.g_steps == 1 and tr.bound is None and tr.discriminator.training
    assert metrics["rollout/reward_mean"] < 0 and metrics["rankgan/chance_log_rank"] == -math.log(5)
    with pytest.raises(ValueError, match="num_references"):
        tr.generator_step(real_batch(4))
    with pytest.raises(RuntimeError, match="bound"):
        tr.draw()


def test_generator_step_depends_on_the_reference_and_comparison_sets():
    a, b = make(), make()
    a.generator_step(real_batch(a.real_rows_per_step, seed=7))
    b.generator_step(real_batch(b.real_rows_per_step, seed=8))  # same samples, other sets: other rewards
    assert changed(snapshot(a.generator), b.generator)


def test_discriminator_step_moves_the_ranker_only_and_ranks_real_higher():
    tr = make(d_lr=0.01)
    gen_before, ranker_before = snapshot(tr.generator), snapshot(tr.discriminator)
    real, fake = real_batch(9, seed=9), tr.sample(6).tokens
    refs = real[:3]

    def scores():
        tr.discriminator.eval()
        with torch.no_grad():
            f_real, f_fake, f_ref = (tr.discriminator(x) for x in (real[3:], fake, refs))
        tr.discriminator.train()
        return float(log_rank_scores(f_real, f_ref, f_fake, 2.0).mean()), float(
            log_rank_scores(f_fake, f_ref, f_real, 2.0).mean()
        )

    before = scores()
    for _ in range(30):
        metrics = tr.discriminator_step(real)
    assert set(metrics) == {
        "discriminator/loss",
        "discriminator/log_rank_real",
        "discriminator/log_rank_fake",
    }
    assert changed(ranker_before, tr.discriminator) and not changed(gen_before, tr.generator)
    after = scores()
    assert after[0] > before[0] and after[1] < before[1]
    assert tr.d_steps == 30


def test_train_epoch_counts_its_ranker_updates_and_resumes_from_its_state():
    tr = make(d_steps=2, d_epochs=2)  # 12 negatives in batches of 4: 3 updates per epoch
    metrics = tr.train_epoch(real_batch(20, seed=3), torch.Generator().manual_seed(0))
    assert tr.g_steps == 1 and tr.d_steps == 2 * 2 * 3
    assert {"rollout/reward_mean", "discriminator/log_rank_real", "nan/skipped_steps"} <= set(metrics)
    buf = io.BytesIO()
    torch.save(tr.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    other = make()
    other.load_state_dict(state)
    assert not changed(snapshot(tr.generator), other.generator) and other.d_steps == tr.d_steps


# ---------------------------------------------------------------------------------------------- models, config
def test_ranker_kind_spec_and_pretraining_objective():
    cfg = load_config(None, ["adversarial.method=rankgan", "discriminator.filter_sizes=[2]",
                             "discriminator.num_filters=[5]", "discriminator.dropout=0.0"])  # fmt: skip
    assert cfg.discriminator_kind == "ranker" and cfg.method.d_pretrain == "rank"
    from seqgan.data.tokenizers import IdTokenizer

    ranker = build_discriminator(cfg, IdTokenizer(VOCAB, 1))
    assert isinstance(ranker, Ranker) and ranker(real_batch(3)).shape == (3, 5)
    with torch.device("meta"):
        meta = discriminator_class(ranker.spec()["kind"]).from_spec(ranker.spec())
    assert sum(p.numel() for p in meta.parameters()) == sum(p.numel() for p in ranker.parameters())
    buf = io.BytesIO()
    torch.save({"spec": ranker.spec(), "state_dict": ranker.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    again = Ranker.from_spec(saved["spec"])
    again.load_state_dict(saved["state_dict"])
    assert torch.equal(again(real_batch(3)), ranker(real_batch(3)))

    obj = PRETRAIN_OBJECTIVES["rank"]
    assert obj.needs_samples and obj.settings(cfg) == {"num_references": 16, "gamma": 1.0}
    ranker = make_ranker()
    real, fake = real_batch(24, seed=1), real_batch(16, seed=2)
    settings = {"num_references": 4, "gamma": 2.0}
    before = obj.heldout(ranker, real, fake, **settings)
    assert set(before) == {f"discriminator/eval_{k}" for k in ("log_rank_real", "log_rank_fake", "rank_acc")}
    opt = torch.optim.Adam(ranker.parameters(), lr=0.01)
    metrics = obj.train(ranker, opt, real, fake, 10, 8, torch.Generator().manual_seed(0), None, **settings)
    assert set(metrics) == {
        "discriminator/loss",
        "discriminator/log_rank_real",
        "discriminator/log_rank_fake",
    }
    after = obj.heldout(ranker, real, fake, **settings)
    assert after["discriminator/eval_log_rank_real"] > before["discriminator/eval_log_rank_real"]


def test_config_errors():
    gen, disc = make_models()
    cfg = load_config(None, ["adversarial.method=rankgan", "rankgan.gamma=4", "rankgan.comparison_size=8"])
    assert cfg.method_config is cfg.rankgan and cfg.rankgan.gamma == 4.0 and cfg.rankgan.baseline == "mean"
    assert isinstance(build_trainer(cfg, gen, make_ranker()), RankGANTrainer)
    with pytest.raises(TypeError, match="discriminator.kind=ranker"):
        build_trainer(cfg, gen, disc)
    for bad in (
        "rankgan.gamma=0",
        "rankgan.num_references=0",
        "rankgan.comparison_size=0",
        "discriminator.kind=cnn",
    ):
        with pytest.raises(ConfigError, match=bad.split("=")[0].split(".")[-1]):
            load_config(None, ["adversarial.method=rankgan", bad])
    with pytest.raises(ConfigError, match="num_references"):
        load_config(None, ["adversarial.method=rankgan", "rankgan.d_num_negatives=70"])  # 64 + 16 > 70
    with pytest.raises(ConfigError, match="ranker"):
        load_config(None, ["adversarial.method=seqgan", "discriminator.kind=ranker"])


# ---------------------------------------------------------------------------------------------- end to end
def test_end_to_end_resumes_exactly_from_seqgans_mle_generator(tmp_path, root):
    from seqgan.stages import adversarial, pretrain

    def cfg(out, epochs, method="rankgan"):
        return load_config(
            root / "recipes/configs/tiny.yaml",
            [
                f"out_dir={out}",
                f"data.train={root / 'data/tiny/train.txt'}",
                f"data.test={root / 'data/tiny/test.txt'}",
                f"adversarial.pretrain_checkpoint={tmp_path / 'mle' / 'pretrain.pt'}",
                f"adversarial.method={method}",
                f"adversarial.epochs={epochs}",
                "adversarial.eval_every=5",
                "adversarial.eval_num_samples=50",
                "discriminator.dropout=0.0",
                "pretrain.num_print_samples=0",
                "pretrain.d_num_negatives=64",
                "pretrain.d_batch_size=16",
                "rankgan.batch_size=8",
                "rankgan.num_rollouts=2",
                "rankgan.num_references=4",
                "rankgan.comparison_size=8",
                "rankgan.d_num_negatives=32",
                "rankgan.d_batch_size=8",
                "rankgan.d_steps=1",
                "rankgan.d_epochs=1",
            ],
        )

    pretrain(cfg(tmp_path / "mle", 2))
    pretrain(cfg(tmp_path / "seqgan_mle", 2, method="seqgan"))  # the CNN discriminator: same MLE generator
    pre = torch.load(tmp_path / "mle" / "pretrain.pt", weights_only=True)
    other = torch.load(tmp_path / "seqgan_mle" / "pretrain.pt", weights_only=True)
    assert (
        pre["discriminator"]["spec"]["kind"] == "ranker" and other["discriminator"]["spec"]["kind"] == "cnn"
    )
    mle = pre["generator"]["state_dict"]
    assert all(torch.equal(mle[k], other["generator"]["state_dict"][k]) for k in mle)
    assert "discriminator/eval_log_rank_real" in (tmp_path / "mle" / "metrics.jsonl").read_text()

    straight = adversarial(cfg(tmp_path / "straight", 2))
    adversarial(cfg(tmp_path / "resumed", 1))
    resumed = adversarial(cfg(tmp_path / "resumed", 2), resume=True)
    a = torch.load(straight, weights_only=True)
    b = torch.load(resumed, weights_only=True)
    assert a["epoch"] == b["epoch"] == 2 and a["trainer"]["g_steps"] == 2 and a["trainer"]["d_steps"] == 2 * 4
    for what in ("generator", "discriminator"):
        sa, sb = a[what]["state_dict"], b[what]["state_dict"]
        assert all(torch.equal(sa[k], sb[k]) for k in sa), what
    assert any(not torch.equal(mle[k], a["generator"]["state_dict"][k]) for k in mle)
    assert "rollout/reward_mean" in (tmp_path / "straight" / "adversarial_metrics.jsonl").read_text()
