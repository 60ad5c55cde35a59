"""DGSAN: sequence probabilities and D = p_new / (p_new + p_old) computed by hand from two tiny models, the loss on
hand-computed values, the update against the objective computed naively, the refresh schedule of the old copy,
and an end-to-end run resumed exactly (the old copy included)."""

from __future__ import annotations

import math

import pytest
import torch

from seqgan.config import ConfigError, DGSANConfig, load_config
from seqgan.sampling import sample
from seqgan.trainers import DGSANTrainer, build_trainer
from seqgan.trainers.dgsan import dgsan_loss, sequence_log_probs
from tests.test_policy_gradient import EOS, T, make_models, real_batch, snapshot


def make(seed: int = 0, **overrides) -> DGSANTrainer:
    gen, disc = make_models("lstm", seed)
    cfg = DGSANConfig(**{"batch_size": 4, **overrides})
    return DGSANTrainer(gen, disc, cfg, max_len=T, rng=torch.Generator().manual_seed(seed + 100))


def naive_sequence_prob(gen, row: list[int]) -> float:
    """p(y) of one sequence by stepping the model token by token: the product of softmax probabilities over its
    real tokens (up to and including the first EOS), with PAD and BOS excluded from the distribution."""
    gen.eval()
    state = gen.init_state(1)
    prev = torch.tensor([gen.bos_id])
    prob = 1.0
    with torch.no_grad():
        for tok in row:
            logits, state = gen.step(prev, state)
            logits = logits[0].double()
            logits[gen.never_sample] = float("-inf")
            prob *= float(torch.softmax(logits, 0)[tok])
            if tok == EOS:
                break
            prev = torch.tensor([tok])
    return prob


ROWS = [[4, 5, EOS, 0, 0, 0], [7, 3, 8, 9, 4, 5], [6, EOS, 0, 0, 0, 0]]


def test_sequence_probability_and_d_by_hand_from_two_models():
    new, _ = make_models("lstm", 0)
    old, _ = make_models("lstm", 1)
    tokens = torch.tensor(ROWS)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1] * 6, [1, 1, 0, 0, 0, 0]]).bool()
    p_new = [naive_sequence_prob(new, r) for r in ROWS]
    p_old = [naive_sequence_prob(old, r) for r in ROWS]
    lp_new = sequence_log_probs(new, tokens, mask)
    lp_old = sequence_log_probs(old, tokens, mask)
    assert lp_new.tolist() == pytest.approx([math.log(p) for p in p_new], abs=1e-5)
    d_code = torch.sigmoid(lp_new - lp_old)
    d_hand = [a / (a + b) for a, b in zip(p_new, p_old, strict=True)]
    assert d_code.tolist() == pytest.approx(d_hand, abs=1e-5)
    _, parts = dgsan_loss(lp_new, lp_old, lp_new[:2], lp_old[:2])
    assert float(parts["d_real"]) == pytest.approx(sum(d_hand) / 3, abs=1e-5)
    assert float(parts["d_fake"]) == pytest.approx(sum(d_hand[:2]) / 2, abs=1e-5)


def test_loss_by_hand_and_stable_at_any_length():
    # real: p_new = 0.2, p_old = 0.05 -> D = 0.8; fake: p_new = 0.01, p_old = 0.03 -> D = 0.25
    new_real, old_real = torch.tensor([math.log(0.2)]), torch.tensor([math.log(0.05)])
    new_fake, old_fake = torch.tensor([math.log(0.01)]), torch.tensor([math.log(0.03)])
    loss, parts = dgsan_loss(new_real, old_real, new_fake, old_fake)
    assert float(loss) == pytest.approx(-math.log(0.8) - math.log(1 - 0.25))
    assert float(parts["d_real"]) == pytest.approx(0.8) and float(parts["d_fake"]) == pytest.approx(0.25)
    # sequences of probability e^-2000 (underflow as probabilities): the ratio is what counts
    loss, parts = dgsan_loss(
        torch.tensor([-2000.0]), torch.tensor([-2001.0]), torch.tensor([-3000.0]), torch.tensor([-2990.0])
    )
    expected = -math.log(1 / (1 + math.exp(-1))) - math.log(1 - 1 / (1 + math.exp(10)))
    assert float(loss) == pytest.approx(expected) and math.isfinite(float(loss))


def test_update_is_the_objective_computed_naively():
    """After one refresh-free step (SGD at lr 1, no clipping) the generator moved by minus the gradient of
    -mean log D(real) - mean log(1 - D(fake)), D = p_new / (p_new + p_old), computed here with the sequences' own
    probabilities and the fake batch drawn from the old copy with the trainer's random stream."""
    tr = make(grad_clip=0.0)
    tr.g_optimizer = torch.optim.SGD(tr.generator.parameters(), lr=1.0)
    with torch.no_grad():  # p_old differs from the generator, as it does after some updates
        for p in tr.old.parameters():
            p.add_(0.3 * torch.randn_like(p))
    real = real_batch(4)
    rng = torch.Generator().manual_seed(0)
    rng.set_state(tr.rng.get_state())
    fake = sample(tr.old, 4, T, temperature=1.0, rng=rng)
    ref_gen, _ = make_models("lstm", 0)
    before, old_before = snapshot(tr.generator), snapshot(tr.old)
    metrics = tr.generator_step(real)

    def log_p(model, tokens, mask):
        return sequence_log_probs(model, tokens, mask)

    from seqgan.data.datasets import sequence_mask

    rmask = sequence_mask(real, EOS)
    new_r, new_f = log_p(ref_gen, real, rmask), log_p(ref_gen, fake.tokens, fake.mask)
    with torch.no_grad():
        old_r, old_f = log_p(tr.old, real, rmask), log_p(tr.old, fake.tokens, fake.mask)
    d_real = new_r.exp() / (new_r.exp() + old_r.exp())  # probabilities of length <= 6: no underflow
    d_fake = new_f.exp() / (new_f.exp() + old_f.exp())
    loss = -d_real.log().mean() - (1 - d_fake).log().mean()
    grads = torch.autograd.grad(loss, list(ref_gen.parameters()), allow_unused=True)
    for b, p, g in zip(before, tr.generator.parameters(), grads, strict=True):
        assert torch.allclose(p.detach(), b - (g if g is not None else torch.zeros_like(b)), atol=1e-5)
    assert metrics["dgsan/loss"] == pytest.approx(float(loss.detach()), abs=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(old_before, tr.old.parameters(), strict=True))  # frozen
    assert all(p.grad is None for p in tr.old.parameters())


def test_at_the_start_d_is_one_half():
    tr = make()
    metrics = tr.generator_step(real_batch(4))
    assert metrics["dgsan/d_real"] == pytest.approx(0.5) and metrics["dgsan/d_fake"] == pytest.approx(0.5)
    assert metrics["dgsan/loss"] == pytest.approx(2 * math.log(2))


def test_old_copy_refreshes_every_n_epochs():
    tr = make(refresh_every=2, steps_per_epoch=2)
    start = snapshot(tr.old)
    real, rng = real_batch(10), torch.Generator().manual_seed(0)
    m1 = tr.train_epoch(real, rng)
    assert m1["dgsan/refreshed"] == 0.0 and tr.g_steps == 2
    assert all(torch.equal(a, b) for a, b in zip(start, tr.old.parameters(), strict=True))
    m2 = tr.train_epoch(real, rng)
    assert m2["dgsan/refreshed"] == 1.0 and m2["dgsan/refreshes"] == 1.0 and tr.since_refresh == 0
    assert all(torch.equal(a, b) for a, b in zip(tr.generator.parameters(), tr.old.parameters(), strict=True))
    assert all(not p.requires_grad for p in tr.old.parameters())


def test_one_epoch_is_one_pass_over_the_data_by_default():
    tr = make(batch_size=4)
    tr.train_epoch(real_batch(10), torch.Generator().manual_seed(0))
    assert tr.g_steps == 3  # 4 + 4 + 2 rows


def test_automatic_refresh_rule():
    tr = make(refresh_window=3, refresh_tol=0.01, refresh_min_epochs=2, refresh_max_epochs=6)
    tr.epoch_losses, tr.since_refresh = [1.0, 1.001], 3
    assert not tr.refresh_due()  # the window is not full yet
    tr.epoch_losses = [1.0, 1.001, 1.002]
    tr.since_refresh = 2
    assert not tr.refresh_due()  # not more than refresh_min_epochs since the last refresh
    tr.since_refresh = 3
    assert tr.refresh_due()  # settled: standard deviation 0.0008 < 0.01
    tr.epoch_losses = [1.0, 1.2, 1.4]
    assert not tr.refresh_due()  # still moving
    tr.since_refresh = 6
    assert tr.refresh_due()  # refresh_max_epochs reached
    tr.epoch_losses = [1.0, float("nan"), 1.0]
    tr.since_refresh = 3
    assert not tr.refresh_due()


def test_state_holds_the_old_copy_and_the_schedule():
    a = make(refresh_every=1, steps_per_epoch=1)
    a.train_epoch(real_batch(8), torch.Generator().manual_seed(0))
    a.generator_step(real_batch(4, seed=1))  # the generator moves away from the refreshed copy
    b = make(seed=3, refresh_every=1, steps_per_epoch=1)
    b.load_state_dict(a.state_dict())
    for x, y in zip(a.old.parameters(), b.old.parameters(), strict=True):
        assert torch.equal(x, y)
    assert (b.refreshes, b.since_refresh, b.epoch_losses) == (a.refreshes, a.since_refresh, a.epoch_losses)
    assert any(
        not torch.equal(x, y) for x, y in zip(b.old.parameters(), b.generator.parameters(), strict=True)
    )


def test_config_section_and_method():
    cfg = load_config(None, ["adversarial.method=dgsan", "dgsan.refresh_every=3"])
    assert cfg.method_config is cfg.dgsan and cfg.dgsan.refresh_every == 3
    gen, disc = make_models()
    tr = build_trainer(cfg, gen, disc)
    assert isinstance(tr, DGSANTrainer) and tr.discriminator is disc
    with pytest.raises(ConfigError, match="refresh_min_epochs"):
        load_config(None, ["dgsan.refresh_min_epochs=5", "dgsan.refresh_max_epochs=5"])
    with pytest.raises(ConfigError, match="dgsan.refresh_window"):
        load_config(None, ["dgsan.refresh_window=1"])


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
                "adversarial.method=dgsan",
                f"adversarial.epochs={epochs}",
                "dgsan.batch_size=16",
                "dgsan.steps_per_epoch=2",
                "dgsan.refresh_every=1",  # the resumed epoch learns against the copy refreshed before the stop
                "pretrain.num_print_samples=0",
            ],
        )

    pretrain(cfg(tmp_path / "mle", 2))
    straight = adversarial(cfg(tmp_path / "straight", 2))
    adversarial(cfg(tmp_path / "resumed", 1))
    resumed = adversarial(cfg(tmp_path / "resumed", 2), resume=True)
    a = torch.load(straight, weights_only=True)
    b = torch.load(resumed, weights_only=True)
    assert a["epoch"] == b["epoch"] == 2 and a["trainer"]["g_steps"] == 4
    assert a["trainer"]["refresh"] == b["trainer"]["refresh"] and a["trainer"]["refresh"]["count"] == 2
    for sa, sb in (
        (a["generator"]["state_dict"], b["generator"]["state_dict"]),
        (a["trainer"]["old_generator"], b["trainer"]["old_generator"]),
    ):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    mle = torch.load(tmp_path / "mle" / "pretrain.pt", weights_only=True)
    gen = mle["generator"]["state_dict"]
    assert any(not torch.equal(gen[k], a["generator"]["state_dict"][k]) for k in gen)
    disc = mle["discriminator"]["state_dict"]  # carried through unchanged
    assert all(torch.equal(disc[k], a["discriminator"]["state_dict"][k]) for k in disc)
