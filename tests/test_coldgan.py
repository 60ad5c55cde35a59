"""ColdGAN-style training: the clipped importance weights by hand, the proposal's log-probabilities against a
direct computation, the update against the formula, SeqGAN's update when the proposal is the policy, and an
end-to-end run resumed exactly."""

from __future__ import annotations

import math

import pytest
import torch

from seqgan.config import ColdGANConfig, ConfigError, SeqGANConfig, load_config
from seqgan.decoding.samplers import filter_logits
from seqgan.losses import sampled_log_probs
from seqgan.trainers import ColdGANTrainer, PolicyGradientTrainer, build_trainer
from seqgan.trainers.coldgan import importance_weights
from tests.test_policy_gradient import T, make_models, snapshot


def make(cls=ColdGANTrainer, seed: int = 0, **overrides):
    gen, disc = make_models("lstm", seed)
    cfg_cls = ColdGANConfig if cls is ColdGANTrainer else SeqGANConfig
    cfg = cfg_cls(**{"batch_size": 6, "num_rollouts": 3, **overrides})
    return cls(gen, disc, cfg, max_len=T, rng=torch.Generator().manual_seed(seed + 100))


def test_importance_weights_by_hand():
    log_p = torch.tensor([[math.log(0.5), math.log(0.2), 0.0]])
    log_q = torch.tensor([[math.log(0.25), math.log(0.4), -5.0]])
    mask = torch.tensor([[True, True, False]])
    w, stats = importance_weights(log_p, log_q, mask, clip=1.0)
    assert w[0].tolist() == pytest.approx([1.0, 0.5, 0.0])  # 2 -> clipped to 1; 0.5; padding 0
    assert stats == pytest.approx({"coldgan/weight_mean": 1.25, "coldgan/clipped_fraction": 0.5})
    w, _ = importance_weights(log_p, log_q, mask, clip=3.0)
    assert w[0].tolist() == pytest.approx([2.0, 0.5, 0.0])


def test_the_batch_comes_from_the_proposal_with_its_log_probabilities():
    tr = make(proposal_temperature=0.5, proposal_top_p=0.8)
    samples = tr.draw_batch()
    tokens, mask = samples.tokens, samples.mask
    gen = tr.generator
    gen.eval()
    with torch.no_grad():
        logits = gen.masked_logits(gen.teacher_inputs(tokens), mask).float()  # (N, V)
    logits = logits.index_fill(1, torch.tensor(gen.never_sample), float("-inf"))
    log_q = filter_logits(logits / 0.5, 0, 0.8).log_softmax(-1).gather(1, tokens[mask][:, None]).squeeze(1)
    assert torch.allclose(samples.log_probs[mask], log_q, atol=1e-5)
    assert torch.isfinite(samples.log_probs[mask]).all()  # every drawn token is inside the nucleus


def test_generator_update_is_the_weighted_policy_gradient(monkeypatch):
    """With fixed rewards, plain SGD at lr 1 and no clipping of the gradient, the parameter change is minus the
    gradient of -sum_t w_t Q_t log p(y_t) / N computed here from the same batch."""
    tr = make(proposal_temperature=0.6, weight_clip=1.0, grad_clip=0.0)
    tr.g_optimizer = torch.optim.SGD(tr.generator.parameters(), lr=1.0)
    rewards = torch.linspace(0.1, 0.9, T).expand(6, T).contiguous()
    monkeypatch.setattr(
        type(tr.rollout),
        "__call__",
        lambda self, tokens, *a, **k: rewards[: tokens.shape[0], : tokens.shape[1]],
    )
    drawn = {}
    original = tr.draw_batch

    def keep():
        drawn["s"] = original()
        return drawn["s"]

    monkeypatch.setattr(tr, "draw_batch", keep)
    before = snapshot(tr.generator)
    ref_gen, _ = make_models("lstm", 0)  # same initial weights
    metrics = tr.generator_step()

    s = drawn["s"]
    log_p, _ = sampled_log_probs(ref_gen, s.tokens, s.mask, 1.0)
    w = (log_p.detach() - s.log_probs).exp().clamp(max=1.0)
    q = rewards[:, : s.tokens.shape[1]]
    loss = -(w * q * log_p)[s.mask].sum() / s.mask.sum()
    grads = torch.autograd.grad(loss, list(ref_gen.parameters()), allow_unused=True)
    for b, p, g in zip(before, tr.generator.parameters(), grads, strict=True):
        expected = b - (g if g is not None else torch.zeros_like(b))
        assert torch.allclose(p.detach(), expected, atol=1e-6)
    assert 0 < metrics["coldgan/clipped_fraction"] < 1  # the case exercises the clip
    assert metrics["coldgan/weight_mean"] > 0


def test_with_the_policy_as_proposal_the_update_is_seqgans():
    cold = make(proposal_temperature=1.0, proposal_top_p=1.0)
    plain = make(PolicyGradientTrainer)
    m_cold, m_plain = cold.generator_step(), plain.generator_step()
    for a, b in zip(cold.generator.parameters(), plain.generator.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert m_cold["coldgan/weight_mean"] == pytest.approx(1.0, abs=1e-4)
    assert m_cold["rollout/reward_mean"] == pytest.approx(m_plain["rollout/reward_mean"])


def test_config_section_and_method():
    cfg = load_config(None, ["adversarial.method=coldgan", "coldgan.proposal_temperature=0.5"])
    assert cfg.method_config is cfg.coldgan and cfg.coldgan.proposal_temperature == 0.5
    assert cfg.coldgan.num_rollouts == SeqGANConfig().num_rollouts  # SeqGAN's settings, its own section
    gen, disc = make_models()
    assert isinstance(build_trainer(cfg, gen, disc), ColdGANTrainer)
    for bad in ("coldgan.proposal_top_p=0", "coldgan.weight_clip=0", "coldgan.proposal_temperature=-1"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            load_config(None, ["adversarial.method=coldgan", bad])


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
                "adversarial.method=coldgan",
                f"adversarial.epochs={epochs}",
                "coldgan.batch_size=16",
                "coldgan.num_rollouts=2",
                "coldgan.d_num_negatives=64",
                "coldgan.proposal_temperature=0.7",
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
