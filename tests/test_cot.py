"""CoT (cooperative training) and the language-model discriminator it uses as its mediator: the KL over the
vocabulary by hand and its gradient against the closed form, the mediator's loss on the balanced mix by hand and
against a step-by-step language model, which parameters each update moves, the model's checkpoint round trip,
the pretraining objective, and an end-to-end run resumed exactly."""

from __future__ import annotations

import math

import pytest
import torch

from seqgan.checkpoint import build_checked
from seqgan.config import ConfigError, CoTConfig, load_config
from seqgan.losses import mediator_loss, sampled_log_probs, vocabulary_kl
from seqgan.models import LMDiscriminator, build_discriminator, discriminator_class
from seqgan.trainers import CoTTrainer, build_trainer
from seqgan.trainers.cot import cot_generator_loss
from seqgan.trainers.steps import PRETRAIN_OBJECTIVES, lm_mixture_objective
from tests.test_policy_gradient import BOS, EOS, PAD, VOCAB, T, changed, make_models, real_batch, snapshot

NEG = float("-inf")


def make_lm(seed: int = 1, **kw) -> LMDiscriminator:
    torch.manual_seed(seed)
    return LMDiscriminator(VOCAB, embed_dim=8, hidden_dim=12, pad_id=PAD, bos_id=BOS, eos_id=EOS, **kw)


def naive_log_probs(lm: LMDiscriminator, row: list[int]) -> list[float]:
    """log D(y_t | y_<t) of one row, one LSTM step at a time from BOS, renormalised over the scored ids."""
    lm.eval()
    out, state, prev = [], None, BOS
    allowed = [v for v in range(VOCAB) if v not in (PAD, BOS)]
    with torch.no_grad():
        for y in row:
            h, state = lm.lstm(lm.embedding(torch.tensor([[prev]])), state)
            logits = lm.out(h[0, 0])
            z = torch.logsumexp(logits[allowed], dim=0)
            out.append(float(logits[y] - z))
            if y == EOS:
                break
            prev = y
    return out


# ---------------------------------------------------------------------------------------------- the maths
def test_vocabulary_kl_by_hand():
    p = torch.tensor([[0.5, 0.25, 0.25, 0.0], [0.7, 0.2, 0.1, 0.0]])
    q = torch.tensor([[0.25, 0.25, 0.25, 0.25], [0.1, 0.1, 0.4, 0.4]])
    kl = vocabulary_kl(p.log(), q.log())  # p's last id is outside its support: adds nothing
    expected_2 = 0.7 * math.log(7) + 0.2 * math.log(2) + 0.1 * math.log(0.25)
    assert kl.tolist() == pytest.approx([0.5 * math.log(2), expected_2], abs=1e-6)
    assert vocabulary_kl(q.log(), q.log()).tolist() == pytest.approx([0.0, 0.0], abs=1e-7)


def test_kl_gradient_is_the_closed_form():
    """d KL(softmax(z) || m) / d z_j = p_j (log p_j - log m_j - KL), and 0 at the excluded ids."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 6, generator=g, requires_grad=True)
    banned = torch.tensor([0, 1])
    log_p = z.index_fill(1, banned, NEG).log_softmax(-1)
    log_m = torch.randn(3, 6, generator=g).index_fill(1, banned, NEG).log_softmax(-1)
    kl = vocabulary_kl(log_p, log_m)
    (grad,) = torch.autograd.grad(kl.sum(), z)
    log_p, kl, p = log_p.detach(), kl.detach(), log_p.detach().exp()
    for n in range(3):
        for j in range(6):
            expected = 0.0 if j in (0, 1) else p[n, j] * (log_p[n, j] - log_m[n, j] - kl[n])
            assert float(grad[n, j]) == pytest.approx(float(expected), abs=1e-6)


def test_generator_loss_is_half_the_kl_per_sentence():
    p = torch.tensor([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]).log()
    m = torch.tensor([[0.25, 0.75], [0.5, 0.5], [0.2, 0.8]]).log()
    kls = [
        0.5 * math.log(2) + 0.5 * math.log(2 / 3),
        0.9 * math.log(1.8) + 0.1 * math.log(0.2),
        0.0,
    ]
    assert float(cot_generator_loss(p, m, num_sentences=2)) == pytest.approx(0.5 * sum(kls) / 2, abs=1e-6)


def test_mediator_loss_by_hand():
    """Two real sentences, one generated: each half weighs 1/2, each sentence its summed log-likelihood."""
    ln = math.log
    real = torch.tensor([[ln(0.5), ln(0.25), 0.0], [ln(0.5), 0.0, 0.0]])
    real_mask = torch.tensor([[True, True, False], [True, False, False]])
    fake = torch.tensor([[ln(0.1), ln(0.5), ln(0.2)]])
    fake_mask = torch.ones(1, 3, dtype=torch.bool)
    # real: (ln 8 + ln 2) / 2 = ln 4; generated: ln 100; the mixture: (ln 4 + ln 100) / 2 = ln 20
    assert float(mediator_loss(real, real_mask, fake, fake_mask)) == pytest.approx(ln(20), abs=1e-6)


# ---------------------------------------------------------------------------------------------- the model
def test_language_model_scores_each_token_as_a_step_by_step_lstm():
    lm = make_lm().eval()
    x = real_batch()  # row 0 ends at EOS, then padding
    with torch.no_grad():
        lp = lm.token_log_probs(x)
    mask = lm.mask(x)
    for i in range(len(x)):
        row = x[i][mask[i]].tolist()
        assert lp[i][mask[i]].tolist() == pytest.approx(naive_log_probs(lm, row), abs=1e-5)
    assert (lp[~mask] == 0).all()
    with torch.no_grad():
        dist = lm.masked_log_probs(x, mask)  # (N, V): PAD and BOS excluded, the rest sums to 1
    assert torch.isneginf(dist[:, [PAD, BOS]]).all()
    assert torch.allclose(dist.exp().sum(-1), torch.ones(len(dist)), atol=1e-5)
    with torch.no_grad():
        score = lm(x)  # mean log-probability per real token
    assert score[0] == pytest.approx(float(lp[0][mask[0]].mean()), abs=1e-6)


def test_language_model_spec_rebuilds_on_meta_and_loads_with_weights_only(tmp_path):
    lm = make_lm(num_layers=2, dropout=0.1)
    assert discriminator_class("lm") is LMDiscriminator
    torch.save({"spec": lm.spec(), "state_dict": lm.state_dict()}, tmp_path / "lm.pt")
    saved = torch.load(tmp_path / "lm.pt", weights_only=True)
    again = build_checked(LMDiscriminator.from_spec, saved["spec"], saved["state_dict"], "discriminator", "x")
    x = real_batch()
    lm.eval(), again.eval()
    assert torch.equal(lm.token_log_probs(x), again.token_log_probs(x))
    cfg = load_config(
        None, ["adversarial.method=cot", "discriminator.embed_dim=8", "discriminator.hidden_dim=12"]
    )

    class Tok:
        vocab_size, pad_id, bos_id, eos_id = VOCAB, PAD, BOS, EOS

    built = build_discriminator(cfg, Tok())
    assert isinstance(built, LMDiscriminator) and built.spec()["hidden_dim"] == 12


# ---------------------------------------------------------------------------------------------- the updates
def make(seed: int = 0, **overrides) -> CoTTrainer:
    gen, _ = make_models("lstm", seed)
    cfg = CoTConfig(**{"batch_size": 6, **overrides})
    return CoTTrainer(gen, make_lm(seed + 1), cfg, max_len=T, rng=torch.Generator().manual_seed(seed + 100))


def test_generator_step_is_the_kl_gradient_and_leaves_the_mediator(monkeypatch):
    """Plain SGD at lr 1, no clipping: the generator moves by minus the gradient of 1/2 sum KL(G || M) / B on
    the same samples, computed here position by position; the mediator does not move."""
    tr = make(grad_clip=0.0)
    tr.g_optimizer = torch.optim.SGD(tr.generator.parameters(), lr=1.0)
    drawn = {}
    original = tr.sample
    monkeypatch.setattr(tr, "sample", lambda n: drawn.setdefault("s", original(n)))
    gen_before, med_before = snapshot(tr.generator), snapshot(tr.discriminator)
    ref_gen, _ = make_models("lstm", 0)
    metrics = tr.generator_step()

    s = drawn["s"]
    _, log_g = sampled_log_probs(ref_gen, s.tokens, s.mask, 1.0)  # (N, V)
    with torch.no_grad():
        log_m = tr.discriminator.eval().masked_log_probs(s.tokens, s.mask)
    p = log_g.exp()
    allowed = [v for v in range(VOCAB) if v not in (PAD, BOS)]
    naive = sum(p[n, v] * (log_g[n, v] - log_m[n, v]) for n in range(len(p)) for v in allowed)
    loss = 0.5 * naive / s.tokens.shape[0]
    assert metrics["generator/loss"] == pytest.approx(float(loss.detach()), rel=1e-5)
    grads = torch.autograd.grad(loss, list(ref_gen.parameters()))
    for b, param, g in zip(gen_before, tr.generator.parameters(), grads, strict=True):
        assert torch.allclose(param.detach(), b - g, atol=1e-6)
    assert not changed(med_before, tr.discriminator)
    assert changed(gen_before, tr.generator) and tr.g_steps == 1


def test_mediator_step_is_maximum_likelihood_on_the_mix_and_leaves_the_generator(monkeypatch):
    tr = make(grad_clip=0.0)
    tr.d_optimizer = torch.optim.SGD(tr.discriminator.parameters(), lr=1.0)
    real = real_batch()
    drawn = {}
    original = tr.sample
    monkeypatch.setattr(tr, "sample", lambda n: drawn.setdefault("s", original(n)))
    ref = make_lm(1)  # the mediator's initial weights
    gen_before, med_before = snapshot(tr.generator), snapshot(tr.discriminator)
    metrics = tr.discriminator_step(real)

    fake = drawn["s"].tokens
    assert len(fake) == len(real)  # an even mix
    nll = [
        -sum(naive_log_probs(ref, rows[i][ref.mask(rows)[i]].tolist()))
        for rows in (real, fake)
        for i in range(6)
    ]
    by_hand = 0.5 * sum(nll[:6]) / 6 + 0.5 * sum(nll[6:]) / 6
    assert metrics["discriminator/loss"] == pytest.approx(by_hand, rel=1e-5)
    ref.train()
    loss, _ = lm_mixture_objective(ref, real, fake)
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    for b, param, g in zip(med_before, tr.discriminator.parameters(), grads, strict=True):
        assert torch.allclose(param.detach(), b - g, atol=1e-6)
    assert not changed(gen_before, tr.generator) and tr.d_steps == 1


def test_pretraining_objective_trains_the_mediator_on_the_mix():
    obj = PRETRAIN_OBJECTIVES[load_config(None, ["adversarial.method=cot"]).method.d_pretrain]
    assert obj.needs_samples
    lm = make_lm()
    opt = torch.optim.Adam(lm.parameters(), lr=0.05)
    real, fake = real_batch(32, seed=1), real_batch(32, seed=2)
    before = obj.heldout(lm, real, fake)
    metrics = obj.train(lm, opt, real, fake, 5, 8, torch.Generator().manual_seed(0), None)
    after = obj.heldout(lm, real, fake)
    assert set(metrics) == {"discriminator/loss", "discriminator/nll_real", "discriminator/nll_fake"}
    assert after["discriminator/eval_nll_real"] < before["discriminator/eval_nll_real"]
    assert after["discriminator/eval_nll_fake"] < before["discriminator/eval_nll_fake"]


def test_config_section_and_discriminator_kind():
    cfg = load_config(None, ["adversarial.method=cot", "cot.mediator_steps=2"])
    assert cfg.method_config is cfg.cot and cfg.discriminator_kind == "lm" and cfg.cot.mediator_steps == 2
    gen, _ = make_models()
    assert isinstance(build_trainer(cfg, gen, make_lm()), CoTTrainer)
    with pytest.raises(TypeError, match="discriminator.kind=lm"):
        build_trainer(cfg, *make_models())  # a CNN is no mediator
    with pytest.raises(ConfigError, match="discriminator.kind=lm"):
        load_config(None, ["adversarial.method=cot", "discriminator.kind=cnn"])
    with pytest.raises(ConfigError, match="adversarial.method=seqgan needs"):
        load_config(None, ["discriminator.kind=lm"])
    with pytest.raises(ConfigError, match="cot.batch_size"):
        load_config(None, ["adversarial.method=cot", "cot.batch_size=0"])


# ---------------------------------------------------------------------------------------------- end to end
def test_end_to_end_pretrains_the_mediator_and_resumes_exactly(tmp_path, root):
    from seqgan.stages import adversarial, pretrain

    def cfg(out, epochs):
        return load_config(
            root / "recipes/configs/tiny.yaml",
            [
                f"out_dir={out}",
                f"data.train={root / 'data/tiny/train.txt'}",
                f"data.test={root / 'data/tiny/test.txt'}",
                f"adversarial.pretrain_checkpoint={tmp_path / 'mle' / 'pretrain.pt'}",
                "adversarial.method=cot",
                f"adversarial.epochs={epochs}",
                "discriminator.dropout=0.0",
                "cot.batch_size=16",
                "cot.steps_per_epoch=2",
                "adversarial.eval_every=5",
                "adversarial.eval_num_samples=50",
                "pretrain.num_print_samples=0",
            ],
        )

    pretrain(cfg(tmp_path / "mle", 2))
    pre = torch.load(tmp_path / "mle" / "pretrain.pt", weights_only=True)
    assert pre["discriminator"]["spec"]["kind"] == "lm"
    log = (tmp_path / "mle" / "metrics.jsonl").read_text()
    assert "discriminator/eval_nll_fake" in log and "discriminator/nll_fake" in log
    straight = adversarial(cfg(tmp_path / "straight", 2))
    adversarial(cfg(tmp_path / "resumed", 1))
    resumed = adversarial(cfg(tmp_path / "resumed", 2), resume=True)
    a = torch.load(straight, weights_only=True)
    b = torch.load(resumed, weights_only=True)
    assert a["epoch"] == b["epoch"] == 2 and a["trainer"]["g_steps"] == a["trainer"]["d_steps"] == 4
    for what in ("generator", "discriminator"):
        sa, sb = a[what]["state_dict"], b[what]["state_dict"]
        assert all(torch.equal(sa[k], sb[k]) for k in sa), what
    mle = pre["generator"]["state_dict"]
    assert any(not torch.equal(mle[k], a["generator"]["state_dict"][k]) for k in mle)
