"""DPGAN: the novelty rewards by hand from a language model's log-probabilities, the discriminator's objective
by hand, which parameters each update moves (and that the generator's is the policy gradient of those rewards),
the pretraining objective (maximum likelihood on real sentences), and an end-to-end run resumed exactly, whose MLE
generator is SeqGAN's."""

from __future__ import annotations

import math

import pytest
import torch

from seqgan.config import ConfigError, DPGANConfig, load_config
from seqgan.losses import dpgan_discriminator_loss, novelty_rewards, sampled_log_probs
from seqgan.trainers import DPGANTrainer, build_trainer
from seqgan.trainers.steps import PRETRAIN_OBJECTIVES
from tests.test_cot import make_lm, naive_log_probs
from tests.test_policy_gradient import T, changed, make_models, real_batch, snapshot

ln = math.log


def test_novelty_rewards_by_hand():
    """Word-level r_t = -log D(y_t | y_<t); sentence-level R = mean r_t; Q_t = R * sum_{s>=t} gamma^(s-t) r_s."""
    log_probs = torch.tensor([[ln(0.5), ln(0.25), ln(0.125)], [ln(0.5), ln(0.5), 0.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    word, sentence, q = novelty_rewards(log_probs, mask, discount=0.5)
    a = ln(2)  # r = (a, 2a, 3a) and (a, a, padding)
    assert torch.allclose(word, torch.tensor([[a, 2 * a, 3 * a], [a, a, 0.0]]))
    assert sentence.tolist() == pytest.approx([2 * a, a])
    q1 = [2 * a * (a + 0.5 * 2 * a + 0.25 * 3 * a), 2 * a * (2 * a + 0.5 * 3 * a), 2 * a * 3 * a]
    q2 = [a * (a + 0.5 * a), a * a, 0.0]
    assert torch.allclose(q, torch.tensor([q1, q2]))
    _, _, undiscounted = novelty_rewards(log_probs, mask, discount=1.0)
    assert undiscounted[0].tolist() == pytest.approx([2 * a * 6 * a, 2 * a * 5 * a, 2 * a * 3 * a])


def test_rewards_come_from_the_language_model_in_eval_mode():
    tr = make()
    tr.discriminator.train()
    x = real_batch()
    mask = tr.discriminator.mask(x)
    word, sentence, _ = tr.rewards(x, mask)
    for i in range(len(x)):
        by_hand = [-v for v in naive_log_probs(make_lm(1), x[i][mask[i]].tolist())]
        assert word[i][mask[i]].tolist() == pytest.approx(by_hand, abs=1e-5)
        assert float(sentence[i]) == pytest.approx(sum(by_hand) / len(by_hand), abs=1e-5)
    assert tr.discriminator.training  # its mode is restored


def test_discriminator_objective_by_hand():
    """E_G[R] - w * E_data[R]: mean cross-entropy per token of each sentence, averaged over each batch."""
    real = torch.tensor([[ln(0.5), ln(0.25)], [ln(0.125), 0.0]])
    real_mask = torch.tensor([[True, True], [True, False]])
    fake = torch.tensor([[ln(0.5), ln(0.5)]])
    fake_mask = torch.ones(1, 2, dtype=torch.bool)
    a = ln(2)  # real: R = 1.5a and 3a (mean 2.25a); generated: R = a
    assert float(dpgan_discriminator_loss(real, real_mask, fake, fake_mask)) == pytest.approx(a - 2.25 * a)
    assert float(dpgan_discriminator_loss(real, real_mask, fake, fake_mask, 0.1)) == pytest.approx(
        a - 0.225 * a
    )


def make(seed: int = 0, **overrides) -> DPGANTrainer:
    gen, _ = make_models("lstm", seed)
    cfg = DPGANConfig(**{"batch_size": 6, "d_num_negatives": 12, "d_batch_size": 4, **overrides})
    return DPGANTrainer(gen, make_lm(seed + 1), cfg, max_len=T, rng=torch.Generator().manual_seed(seed + 100))


@pytest.mark.parametrize("baseline", ["none", "mean"])
def test_generator_step_is_the_policy_gradient_of_the_novelty_rewards(monkeypatch, baseline):
    """Plain SGD at lr 1, no clipping: the generator moves by minus the gradient of -sum_t log G(y_t) (Q_t - b_t)
    / N over the same samples, Q_t from the language model; the language model does not move."""
    tr = make(grad_clip=0.0, discount=0.9, baseline=baseline)
    tr.g_optimizer = torch.optim.SGD(tr.generator.parameters(), lr=1.0)
    drawn = {}
    original = tr.sample
    monkeypatch.setattr(tr, "sample", lambda n: drawn.setdefault("s", original(n)))
    gen_before, lm_before = snapshot(tr.generator), snapshot(tr.discriminator)
    ref_gen, _ = make_models("lstm", 0)
    metrics = tr.generator_step()

    s = drawn["s"]
    ref_lm = make_lm(1)
    q = torch.zeros(s.tokens.shape)
    for i in range(len(s.tokens)):
        r = [-v for v in naive_log_probs(ref_lm, s.tokens[i][s.mask[i]].tolist())]
        for t in range(len(r)):
            q[i, t] = sum(r) / len(r) * sum(0.9 ** (u - t) * r[u] for u in range(t, len(r)))
    if baseline == "mean":  # each step's mean over the rows that reach it
        for t in range(q.shape[1]):
            col = s.mask[:, t]
            q[col, t] -= q[col, t].mean()
    log_p, _ = sampled_log_probs(ref_gen, s.tokens, s.mask, 1.0)
    loss = -(log_p * q)[s.mask].sum() / s.mask.sum()
    assert metrics["generator/pg_loss"] == pytest.approx(float(loss.detach()), rel=1e-4, abs=1e-5)
    grads = torch.autograd.grad(loss, list(ref_gen.parameters()))
    for b, p, g in zip(gen_before, tr.generator.parameters(), grads, strict=True):
        assert torch.allclose(p.detach(), b - g, atol=1e-5)
    assert not changed(lm_before, tr.discriminator) and tr.g_steps == 1


def test_discriminator_step_moves_the_language_model_only():
    tr = make()
    gen_before, lm_before = snapshot(tr.generator), snapshot(tr.discriminator)
    real = real_batch()
    x_fake = tr.sample(6).tokens
    with torch.no_grad():
        tr.discriminator.eval()
        before = (float(-tr.discriminator(real).mean()), float(-tr.discriminator(x_fake).mean()))
    for _ in range(20):
        metrics = tr.discriminator_step(real)
    assert set(metrics) == {"discriminator/loss", "discriminator/reward_real", "discriminator/reward_fake"}
    assert changed(lm_before, tr.discriminator) and not changed(gen_before, tr.generator)
    with torch.no_grad():
        tr.discriminator.eval()
        after = (float(-tr.discriminator(real).mean()), float(-tr.discriminator(x_fake).mean()))
    assert after[0] > before[0]  # the real sentences' reward (cross-entropy) rose
    assert after[1] < before[1]  # the generated ones' fell
    assert tr.d_steps == 20


def test_train_epoch_counts_its_discriminator_updates():
    tr = make(d_steps=2, d_epochs=2)  # 12 negatives in batches of 4: 3 updates per epoch
    metrics = tr.train_epoch(real_batch(20, seed=3), torch.Generator().manual_seed(0))
    assert tr.g_steps == 1 and tr.d_steps == 2 * 2 * 3
    assert {"reward/q_mean", "discriminator/reward_real", "nan/skipped_steps"} <= set(metrics)


def test_pretraining_is_maximum_likelihood_on_real_sentences():
    obj = PRETRAIN_OBJECTIVES[load_config(None, ["adversarial.method=dpgan"]).method.d_pretrain]
    assert not obj.needs_samples
    lm = make_lm()
    real = real_batch(32, seed=1)
    mask = lm.mask(real)
    with torch.no_grad():
        nll0 = float(-lm.token_log_probs(real)[mask].mean())
    opt = torch.optim.SGD(lm.parameters(), lr=0.0)  # no move: the reported loss is the NLL itself
    metrics = obj.train(lm, opt, real, None, 1, 32, torch.Generator().manual_seed(0), None)
    assert metrics == {"discriminator/nll_real": pytest.approx(nll0, abs=1e-5)}
    opt = torch.optim.Adam(lm.parameters(), lr=0.05)
    obj.train(lm, opt, real, None, 5, 8, torch.Generator().manual_seed(0), None)
    assert obj.heldout(lm, real, real)["discriminator/eval_nll_real"] < nll0


def test_config_section_and_discriminator_kind():
    cfg = load_config(None, ["adversarial.method=dpgan", "dpgan.discount=0.5", "dpgan.baseline=ema"])
    assert cfg.method_config is cfg.dpgan and cfg.discriminator_kind == "lm" and cfg.dpgan.discount == 0.5
    gen, _ = make_models()
    assert isinstance(build_trainer(cfg, gen, make_lm()), DPGANTrainer)
    with pytest.raises(TypeError, match="discriminator.kind=lm"):
        build_trainer(cfg, *make_models())
    for bad in ("dpgan.discount=1.5", "dpgan.real_weight=-1", "discriminator.kind=rnn"):
        with pytest.raises(ConfigError, match=bad.split("=")[0].split(".")[-1]):
            load_config(None, ["adversarial.method=dpgan", bad])


def test_end_to_end_resumes_exactly_from_seqgans_mle_generator(tmp_path, root):
    from seqgan.stages import adversarial, pretrain

    def cfg(out, epochs, method="dpgan"):
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
                "dpgan.batch_size=16",
                "dpgan.baseline=ema",
                "dpgan.d_num_negatives=64",
                "pretrain.num_print_samples=0",
            ],
        )

    pretrain(cfg(tmp_path / "mle", 2))
    pretrain(cfg(tmp_path / "seqgan_mle", 2, method="seqgan"))  # the CNN discriminator: same MLE generator
    pre = torch.load(tmp_path / "mle" / "pretrain.pt", weights_only=True)
    other = torch.load(tmp_path / "seqgan_mle" / "pretrain.pt", weights_only=True)
    assert pre["discriminator"]["spec"]["kind"] == "lm" and other["discriminator"]["spec"]["kind"] == "cnn"
    mle = pre["generator"]["state_dict"]
    assert all(torch.equal(mle[k], other["generator"]["state_dict"][k]) for k in mle)
    assert "discriminator/nll_real" in (tmp_path / "mle" / "metrics.jsonl").read_text()

    straight = adversarial(cfg(tmp_path / "straight", 2))
    adversarial(cfg(tmp_path / "resumed", 1))
    resumed = adversarial(cfg(tmp_path / "resumed", 2), resume=True)
    a = torch.load(straight, weights_only=True)
    b = torch.load(resumed, weights_only=True)
    assert a["epoch"] == b["epoch"] == 2 and a["trainer"]["g_steps"] == 2
    assert torch.equal(a["trainer"]["baseline"]["ema"], b["trainer"]["baseline"]["ema"])
    for what in ("generator", "discriminator"):
        sa, sb = a[what]["state_dict"], b[what]["state_dict"]
        assert all(torch.equal(sa[k], sb[k]) for k in sa), what
    assert any(not torch.equal(mle[k], a["generator"]["state_dict"][k]) for k in mle)
