"""MaliGAN: the normalised importance weights by hand, the rollout's mean odds against a direct computation, the
update against the paper's formula computed naively (basic and per-prefix weights, with and without the batch
baseline), and an end-to-end run resumed exactly."""

from __future__ import annotations

import math

import pytest
import torch

from seqgan.config import ConfigError, MaliGANConfig, SeqGANConfig, load_config
from seqgan.losses import sampled_log_probs
from seqgan.rollout import MonteCarloRollout
from seqgan.trainers import MaliGANTrainer, build_trainer
from seqgan.trainers.maligan import importance_rewards
from tests.test_policy_gradient import T, make_models, snapshot


def make(seed: int = 0, **overrides) -> MaliGANTrainer:
    gen, disc = make_models("lstm", seed)
    cfg = MaliGANConfig(**{"batch_size": 6, "num_rollouts": 3, **overrides})
    return MaliGANTrainer(gen, disc, cfg, max_len=T, rng=torch.Generator().manual_seed(seed + 100))


def test_importance_rewards_by_hand():
    # odds r = D / (1 - D) = exp(logit): 1, 2, 0.5 -> weights r / 3.5, rewards 3 r / 3.5
    log_odds = torch.tensor([0.0, math.log(2.0), math.log(0.5)])[:, None].expand(3, 4)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]).bool()
    rewards, stats = importance_rewards(log_odds, mask)
    expected = torch.tensor([1.0, 2.0, 0.5]) * 3 / 3.5
    torch.testing.assert_close(rewards[:, 0], expected)
    torch.testing.assert_close(rewards, expected[:, None].expand(3, 4).masked_fill(~mask, 0.0))
    w = torch.tensor([1.0, 2.0, 0.5]) / 3.5
    assert stats["maligan/ess"] == pytest.approx(float(1 / (w.square().sum() * 3)))
    assert stats["maligan/weight_max"] == pytest.approx(6 / 3.5)
    # a saturated discriminator (logit 1000: D rounds to 1, exp overflows): the confident samples share the weight
    huge, _ = importance_rewards(
        torch.tensor([[1000.0], [1000.0], [0.0]]), torch.ones(3, 1, dtype=torch.bool)
    )
    torch.testing.assert_close(huge[:, 0], torch.tensor([1.5, 1.5, 0.0]))
    # per-step normalisation: each column on its own
    cols = torch.tensor([[0.0, 0.0], [0.0, math.log(3.0)]])
    r, _ = importance_rewards(cols, torch.ones(2, 2, dtype=torch.bool))
    torch.testing.assert_close(r, torch.tensor([[1.0, 0.5], [1.0, 1.5]]))


def test_rollout_mean_odds_against_a_direct_computation():
    """``score="logit"`` averages the odds exp(logit) of a prefix's completions: log((e^a + e^b) / 2)."""
    gen, _ = make_models()
    ro = MonteCarloRollout(gen, update_rate=0.0)
    tokens = torch.tensor([[4, 5, 6]])  # one sample, prefixes t = 1, 2 with R = 2 completions each
    completions = torch.arange(4)[:, None].expand(4, 3).contiguous()  # row k stands for completion k
    logits = torch.tensor([2.0, -1.0, 30.0, 0.5])

    def scorer(seqs, b, t):
        return logits[seqs[:, 0]]

    means = ro._score(scorer, tokens, torch.tensor([3]), completions, 2, score="logit")
    expected = [
        math.log((math.exp(2.0) + math.exp(-1.0)) / 2),
        math.log((math.exp(30.0) + math.exp(0.5)) / 2),
    ]
    assert means[0].tolist() == pytest.approx(expected)
    probs = ro._score(scorer, tokens, torch.tensor([3]), completions, 2)  # SeqGAN's: the mean probability
    assert probs[0].tolist() == pytest.approx(
        [float(torch.sigmoid(logits[:2]).mean()), float(torch.sigmoid(logits[2:]).mean())]
    )


def test_one_rollout_gives_the_logit_of_seqgans_reward():
    gen, disc = make_models()
    ro = MonteCarloRollout(gen, update_rate=0.0)
    tokens = torch.tensor([[4, 5, 6, 2, 0, 0], [7, 3, 8, 9, 4, 5]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]]).bool()
    prob = ro(tokens, disc, 1, rng=torch.Generator().manual_seed(3))
    odds = ro(tokens, disc, 1, rng=torch.Generator().manual_seed(3), score="logit")
    torch.testing.assert_close(odds[mask], torch.logit(prob[mask].double()).float(), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="score"):
        ro(tokens, disc, 1, score="odds")


def _naive_update(tr, monkeypatch, log_odds_of):
    """One generator step with fixed log-odds (``log_odds_of(samples) -> (B, T)``) and plain SGD at lr 1; returns
    the drawn samples, the parameters before the step and the step's metrics."""
    tr.g_optimizer = torch.optim.SGD(tr.generator.parameters(), lr=1.0)
    drawn = {}
    original = tr.draw_batch

    def keep():
        drawn["s"] = original()
        return drawn["s"]

    monkeypatch.setattr(tr, "draw_batch", keep)
    monkeypatch.setattr(tr, "log_odds", log_odds_of)
    before = snapshot(tr.generator)
    metrics = tr.generator_step()
    return drawn["s"], before, metrics


def _check_change(tr, before, ref_gen, loss):
    grads = torch.autograd.grad(loss, list(ref_gen.parameters()), allow_unused=True)
    for b, p, g in zip(before, tr.generator.parameters(), grads, strict=True):
        expected = b - (g if g is not None else torch.zeros_like(b))
        assert torch.allclose(p.detach(), expected, atol=1e-6)


@pytest.mark.parametrize("baseline", ["batch", "none"])
def test_basic_update_is_the_papers_formula(monkeypatch, baseline):
    """Algorithm 1: grad = sum_i (w_i - b) grad log p(x_i), w_i = r_i / sum_j r_j, b = 1/m; the loss here is that
    times m over the N real tokens (per-token scale)."""
    tr = make(baseline=baseline, grad_clip=0.0)
    z = torch.tensor([0.3, -1.2, 2.0, 0.0, -0.4, 1.1])  # one logit per sample
    samples, before, metrics = _naive_update(tr, monkeypatch, lambda s: z[:, None].expand_as(s.tokens))
    ref_gen, _ = make_models("lstm", 0)
    log_p, _ = sampled_log_probs(ref_gen, samples.tokens, samples.mask, 1.0)
    r = [math.exp(v) for v in z.tolist()]  # D / (1 - D)
    m, n_tok = len(r), int(samples.mask.sum())
    b = 1.0 / m if baseline == "batch" else 0.0
    loss = 0.0
    for i in range(m):
        w_i = r[i] / sum(r)
        loss = loss - m * (w_i - b) * log_p[i][samples.mask[i]].sum() / n_tok
    _check_change(tr, before, ref_gen, loss)
    d = torch.sigmoid(z)
    assert metrics["maligan/d_prob"] == pytest.approx(float(d.mean()), abs=1e-6)
    assert metrics["rollout/reward_last"] == pytest.approx(1.0, abs=1e-5)  # m w_i averages to 1


def test_rollout_update_weights_each_prefix_over_the_batch(monkeypatch):
    """With rollouts, token t of sample i is weighted by Q_{i,t} / sum_j Q_{j,t} (a sample that ended before t
    takes part with its final odds), minus 1/m."""
    tr = make(rollouts=True, grad_clip=0.0)
    torch.manual_seed(5)
    table = torch.randn(6, T)  # log of the mean odds of each prefix's completions

    def rollout_call(self, tokens, disc, num_rollouts, rng=None, score="sigmoid"):
        assert score == "logit" and num_rollouts == 3
        return table[: tokens.shape[0], : tokens.shape[1]].clone()

    monkeypatch.setattr(MonteCarloRollout, "__call__", rollout_call)
    tr.g_optimizer = torch.optim.SGD(tr.generator.parameters(), lr=1.0)
    drawn = {}
    original = tr.draw_batch

    def keep():
        drawn["s"] = original()
        return drawn["s"]

    monkeypatch.setattr(tr, "draw_batch", keep)
    before = snapshot(tr.generator)
    tr.generator_step()
    s = drawn["s"]
    lengths = s.mask.sum(dim=1).tolist()
    assert min(lengths) < T  # the case exercises ended samples
    ref_gen, _ = make_models("lstm", 0)
    log_p, _ = sampled_log_probs(ref_gen, s.tokens, s.mask, 1.0)
    m, n_tok = 6, int(s.mask.sum())
    loss = 0.0
    for t in range(s.tokens.shape[1]):
        q = [math.exp(float(table[j, min(t, lengths[j] - 1)])) for j in range(m)]  # ended: its final odds
        for i in range(m):
            if t < lengths[i]:
                loss = loss - m * (q[i] / sum(q) - 1.0 / m) * log_p[i, t] / n_tok
    _check_change(tr, before, ref_gen, loss)


def test_basic_weights_are_the_discriminators_odds_and_no_rollout_runs(monkeypatch):
    tr = make()
    samples = tr.draw_batch()

    def no_rollout(*a, **k):
        raise AssertionError("the basic version decodes no rollout")

    monkeypatch.setattr(MonteCarloRollout, "__call__", no_rollout)
    tr.discriminator.eval()
    with torch.no_grad():
        logits = tr.discriminator(samples.tokens)
    torch.testing.assert_close(tr.log_odds(samples), logits[:, None].expand_as(samples.tokens))
    assert tr.discriminator.training is False  # the mode it had is restored
    tr.discriminator.train()
    tr.log_odds(samples)
    assert tr.discriminator.training


def test_steps_change_the_generator_only_and_are_deterministic():
    a, b = make(rollouts=True), make(rollouts=True)
    d_before = snapshot(a.discriminator)
    ma, mb = a.generator_step(), b.generator_step()
    assert ma == mb
    for p, q in zip(a.generator.parameters(), b.generator.parameters(), strict=True):
        assert torch.equal(p, q)
    assert all(torch.equal(x, y) for x, y in zip(d_before, a.discriminator.parameters(), strict=True))
    assert any(
        not torch.equal(x, y)
        for x, y in zip(snapshot(make().generator), a.generator.parameters(), strict=True)
    )


def test_config_section_and_method():
    cfg = load_config(None, ["adversarial.method=maligan", "maligan.rollouts=true", "maligan.baseline=none"])
    assert cfg.method_config is cfg.maligan and cfg.maligan.rollouts and cfg.maligan.baseline == "none"
    assert cfg.maligan.num_rollouts == SeqGANConfig().num_rollouts  # SeqGAN's settings, its own section
    assert cfg.maligan.rollout_update_rate == 0.0  # the current generator completes the prefixes
    gen, disc = make_models()
    assert isinstance(build_trainer(cfg, gen, disc), MaliGANTrainer)
    for bad in ("maligan.baseline=ema", "maligan.rollout_update_rate=1.0"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            load_config(None, ["adversarial.method=maligan", bad])


def test_end_to_end_from_an_mle_checkpoint_resumes_exactly(tmp_path, root):
    from seqgan.stages import adversarial, pretrain

    def cfg(out, epochs):
        return load_config(
            root / "recipes/configs/tiny.yaml",
            [
                f"out_dir={out}",
                f"data.train={root / 'data/tiny/train.txt'}",
                f"data.test={root / 'data/tiny/test.txt'}",
                f"adversarial.pretrain_checkpoint={tmp_path / 'mle' / 'pretrain.pt'}",
                "adversarial.method=maligan",
                f"adversarial.epochs={epochs}",
                "maligan.batch_size=16",
                "maligan.rollouts=true",
                "maligan.num_rollouts=2",
                "maligan.d_num_negatives=64",
                "pretrain.num_print_samples=0",
            ],
        )

    pretrain(cfg(tmp_path / "mle", 2))
    straight = adversarial(cfg(tmp_path / "straight", 2))
    adversarial(cfg(tmp_path / "resumed", 1))
    resumed = adversarial(cfg(tmp_path / "resumed", 2), resume=True)
    a = torch.load(straight, weights_only=True)
    b = torch.load(resumed, weights_only=True)
    assert a["epoch"] == b["epoch"] == 2 and a["trainer"]["g_steps"] == 2
    for what in ("generator", "discriminator"):
        sa, sb = a[what]["state_dict"], b[what]["state_dict"]
        assert all(torch.equal(sa[k], sb[k]) for k in sa), what
    mle = torch.load(tmp_path / "mle" / "pretrain.pt", weights_only=True)["generator"]["state_dict"]
    assert any(not torch.equal(mle[k], a["generator"]["state_dict"][k]) for k in mle)
