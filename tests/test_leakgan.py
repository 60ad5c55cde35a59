"""LeakGAN: the goal/worker combination by hand, the rescaled activation by hand, the Manager's and the Worker's
losses against naive loops, step-by-step decoding against teacher forcing, the leak itself (the discriminator
changes the generator's next-token distribution, also through the rollout policy's copy), which parameters each
objective trains, spec / meta rebuilds, and an end-to-end run resumed exactly."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F

from seqgan.checkpoint import build_checked
from seqgan.config import ConfigError, LeakGANConfig, load_config
from seqgan.losses import (
    goal_directions,
    goal_rewards,
    intrinsic_rewards,
    leakgan_manager_loss,
    rescaled_activation,
)
from seqgan.models import CNNDiscriminator, LeakGANGenerator, bind_leak, build_generator, generator_class
from seqgan.sampling import sample
from seqgan.trainers import LeakGANTrainer, build_trainer
from seqgan.trainers.leakgan import leakgan_losses

V, T, PAD, BOS, EOS = 12, 7, 0, 1, 2


def make_models(seed: int = 0, step_size: int = 3):
    torch.manual_seed(seed)
    disc = CNNDiscriminator(V, embed_dim=6, filter_sizes=(2, 3), num_filters=(4, 5), dropout=0.0, pad_id=PAD)
    gen = LeakGANGenerator(
        V, disc.feature_dim, embed_dim=5, hidden_dim=6, manager_hidden_dim=7, goal_size=3, step_size=step_size,
        pad_id=PAD, bos_id=BOS, eos_id=EOS,
    )  # fmt: skip
    bind_leak(gen, disc)
    return gen, disc


def tokens_batch() -> torch.Tensor:
    x = torch.randint(3, V, (4, T), generator=torch.Generator().manual_seed(1))
    x[1, 2], x[1, 3:] = EOS, PAD
    return x


# ---------------------------------------------------------------------------------------------- the generator
def test_goal_and_worker_combine_as_the_paper_says():
    """logits_t = O_t w_t with O_t = reshape(W_O h_t + b_O, (V, k)) and w_t = W_psi (sum of the last c goals),
    goal_init standing in for the goals before the first step; checked step by step against the module."""
    gen, _ = make_models()
    gen.eval()
    c, k = gen.step_size, gen.goal_size
    h = torch.randn(2, gen.hidden_dim)
    w = torch.randn(2, k)
    o = (h @ gen.worker_out.weight.t() + gen.worker_out.bias).view(2, V, k)  # (B, V, k)
    assert torch.allclose(gen.token_logits(h, w), torch.einsum("bvk,bk->bv", o, w), atol=1e-6)
    assert torch.allclose(gen.worker_matrix(h), o)

    tokens = tokens_batch()[:2]
    state = gen.init_state(2)
    goals, hm, hw = [], None, None
    init = F.normalize(gen.goal_init.detach(), dim=0)
    with torch.no_grad():
        for t in range(4):
            x = torch.full((2,), BOS) if t == 0 else tokens[:, t - 1]
            logits, state = gen.step(x, state)
            f = disc_features(gen, tokens[:, :t])
            out, hm = gen.manager(f[:, None], hm)
            g = F.normalize(gen.goal_head(out[:, 0]), dim=-1)
            past = [goals[t - i] if t - i >= 0 else init.expand(2, -1) for i in range(1, c + 1)]
            w_t = sum(past) @ gen.psi.weight.t()  # psi has no bias
            hid, hw = gen.worker(gen.embedding(x)[:, None], hw)
            o_t = gen.worker_matrix(hid[:, 0])
            assert torch.allclose(logits, torch.einsum("bvk,bk->bv", o_t, w_t), atol=1e-5), t
            assert torch.allclose(g.norm(dim=-1), torch.ones(2))  # unit goals
            goals.append(g)
    assert gen.psi.bias is None


def disc_features(gen: LeakGANGenerator, prefix: torch.Tensor) -> torch.Tensor:
    """f of a prefix, by the discriminator directly (zero embeddings after it)."""
    disc = gen.__dict__["_leak"].source
    b, t = prefix.shape
    padded = torch.cat([prefix, torch.full((b, 1), PAD)], dim=1)
    return disc.prefix_features(padded, torch.full((b,), t))


def test_prefix_features_ignore_what_follows_the_prefix():
    _, disc = make_models()
    a, b = tokens_batch(), tokens_batch().flip(1)
    b[:, :3] = a[:, :3]
    lengths = torch.full((4,), 3)
    assert torch.allclose(disc.prefix_features(a, lengths), disc.prefix_features(b, lengths))
    assert disc.prefix_features(a, torch.zeros(4, dtype=torch.long)).shape == (4, disc.feature_dim)


def test_step_by_step_decoding_equals_teacher_forcing():
    gen, _ = make_models()
    gen.eval()
    tokens = tokens_batch()
    inputs = gen.teacher_inputs(tokens)
    with torch.no_grad():
        full = gen(inputs)  # (B, T, V)
        state = gen.init_state(tokens.shape[0])
        steps = []
        for t in range(T):
            logits, state = gen.step(inputs[:, t], state)
            steps.append(logits)
        mask = inputs != -1
        assert torch.allclose(gen.masked_logits(inputs, mask), full[mask], atol=1e-5)
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-5)
    # reordering rows of the state (what rollouts and compaction do) keeps each row's distribution
    with torch.no_grad():
        state = gen.init_state(4)
        for t in range(3):
            _, state = gen.step(inputs[:, t], state)
        index = torch.tensor([2, 0, 2])
        picked, _ = gen.step(inputs[index, 3], gen.select_state(state, index))
    assert torch.allclose(picked, full[index, 3], atol=1e-5)


def test_sampled_log_probs_are_those_of_the_trajectory():
    gen, _ = make_models()
    s = sample(gen, 6, T, temperature=0.8, rng=torch.Generator().manual_seed(0))
    gen.eval()
    traj = gen.trajectory(s.tokens, temperature=0.8)
    assert torch.allclose(traj.log_probs[s.mask], s.log_probs[s.mask], atol=1e-5)
    assert traj.features.shape == (6, T + 1, gen.feature_dim) and traj.goals.shape == (6, T, gen.feature_dim)


def test_the_discriminator_leaks_into_the_next_token_distribution():
    gen, disc = make_models()
    gen.eval()
    tokens = tokens_batch()
    policy = copy.deepcopy(gen)  # the rollout policy's copy shares the leak, not a frozen discriminator
    assert policy.__dict__["_leak"] is gen.__dict__["_leak"]
    with torch.no_grad():
        before, before_copy = gen(gen.teacher_inputs(tokens)), policy(gen.teacher_inputs(tokens))
        disc.convs[0].weight.mul_(-2.0)
        after, after_copy = gen(gen.teacher_inputs(tokens)), policy(gen.teacher_inputs(tokens))
    # the first token reads no goal yet (goal_init); from the second on the goals carry the features
    assert torch.allclose(before[:, 0], after[:, 0])
    assert (before[:, 1:] - after[:, 1:]).abs().amax() > 1e-4
    assert (before_copy[:, 1:] - after_copy[:, 1:]).abs().amax() > 1e-4
    unbound = LeakGANGenerator.from_spec(gen.spec())
    with pytest.raises(RuntimeError, match="bind"):
        unbound(gen.teacher_inputs(tokens))


def test_spec_round_trip_and_meta_build():
    gen, disc = make_models()
    again = build_checked(LeakGANGenerator.from_spec, gen.spec(), gen.state_dict(), "generator", "x.pt")
    bind_leak(again, disc)
    tokens = tokens_batch()
    with torch.no_grad():
        assert torch.equal(again(gen.teacher_inputs(tokens)), gen(gen.teacher_inputs(tokens)))
    assert generator_class("leakgan") is LeakGANGenerator
    with pytest.raises(ValueError, match="features"):
        bind_leak(LeakGANGenerator(V, disc.feature_dim + 1), disc)


# ---------------------------------------------------------------------------------------------- the maths
def test_rescaled_activation_by_hand():
    rewards = torch.tensor([[0.9, 0.2], [0.1, 0.7], [0.5, 0.0], [0.3, 0.4]])
    mask = torch.tensor([[True, True], [True, True], [True, False], [True, True]])
    out = rescaled_activation(rewards, mask, delta=12.0)
    sig = lambda r, b: 1 / (1 + math.exp(-12.0 * (0.5 - r / b)))  # noqa: E731
    # column 0: ranks 1, 4, 2, 3 of 4; column 1: row 2 is padding, ranks 3, 1, -, 2 of 3
    expected = [[sig(1, 4), sig(3, 3)], [sig(4, 4), sig(1, 3)], [sig(2, 4), 0.0], [sig(3, 4), sig(2, 3)]]
    assert torch.allclose(out, torch.tensor(expected), atol=1e-6)


def test_directions_manager_loss_and_intrinsic_rewards_against_naive_loops():
    torch.manual_seed(3)
    b, t, f, c = 3, 6, 4, 2
    feats = torch.randn(b, t + 1, f)
    goals = F.normalize(torch.randn(b, t, f), dim=-1).requires_grad_()
    lengths = torch.tensor([6, 3, 1])
    mask = torch.arange(t)[None, :] < lengths[:, None]
    weights = torch.rand(b, t)
    cos = lambda u, v: float(F.cosine_similarity(u, v, dim=0, eps=1e-8))  # noqa: E731

    directions = goal_directions(feats, lengths, c)
    total, n = 0.0, 0
    for i in range(b):
        for s in range(int(lengths[i])):
            d = feats[i, min(s + c, int(lengths[i]))] - feats[i, s]
            assert torch.allclose(directions[i, s], d)
            total += float(weights[i, s]) * cos(d, goals[i, s].detach())
            n += 1
    loss = leakgan_manager_loss(goals, directions, weights, mask)
    assert loss.item() == pytest.approx(-total / n, abs=1e-6)

    intrinsic = intrinsic_rewards(feats, goals, c, mask)
    for i in range(b):
        for s in range(1, t + 1):  # token y_s, column s - 1
            if s > lengths[i]:
                assert intrinsic[i, s - 1] == 0.0
                continue
            terms = [
                cos(feats[i, s] - feats[i, s - j], goals[i, s - j].detach()) for j in range(1, min(c, s) + 1)
            ]
            assert intrinsic[i, s - 1].item() == pytest.approx(sum(terms) / len(terms), abs=1e-6)
    assert not intrinsic.requires_grad

    values = torch.rand(b, t)
    q = goal_rewards(values, lengths, c)
    for i in range(b):
        for s in range(int(lengths[i])):
            assert q[i, s] == values[i, min(s + c, int(lengths[i])) - 1]


def test_worker_and_manager_losses_against_the_formulas():
    gen, _ = make_models()
    gen.eval()
    tokens = tokens_batch()
    traj = gen.trajectory(tokens)
    rewards = torch.rand(tokens.shape, generator=torch.Generator().manual_seed(2))
    manager, worker, _ = leakgan_losses(traj, rewards, gen.step_size, 12.0, 0.5)
    mask = traj.mask
    scaled = rescaled_activation(rewards, mask, 12.0)
    r = intrinsic_rewards(traj.features, traj.goals, gen.step_size, mask) + 0.5 * scaled
    expected_worker = -(traj.log_probs * r)[mask].sum() / mask.sum()
    assert worker.item() == pytest.approx(expected_worker.item(), abs=1e-6)
    lengths = mask.sum(1)
    dirs = goal_directions(traj.features, lengths, gen.step_size)
    cos = F.cosine_similarity(dirs, traj.goals, dim=-1, eps=1e-8)
    expected_manager = -(cos * goal_rewards(scaled, lengths, gen.step_size))[mask].sum() / mask.sum()
    assert manager.item() == pytest.approx(expected_manager.item(), abs=1e-6)


def test_each_objective_trains_its_own_module():
    gen, _ = make_models()
    tokens = tokens_batch()
    traj = gen.trajectory(tokens)
    manager, worker, _ = leakgan_losses(traj, torch.rand(tokens.shape), gen.step_size, 12.0, 1.0)
    extra = gen.mle_extra_loss(tokens)  # the Manager's pretraining objective
    names = {id(p): n for n, p in gen.named_parameters()}
    manager_names = {names[id(p)] for p in gen.manager_parameters()}
    worker_names = {names[id(p)] for p in gen.worker_parameters()}
    assert manager_names and worker_names and not manager_names & worker_names

    def trained(loss) -> set[str]:
        grads = torch.autograd.grad(loss, list(gen.parameters()), retain_graph=True, allow_unused=True)
        return {
            n for (n, _), g in zip(gen.named_parameters(), grads, strict=True) if g is not None and g.any()
        }

    assert trained(manager) == manager_names
    assert trained(extra) == manager_names
    assert trained(worker) == worker_names


def test_a_generator_step_changes_the_generator_and_not_the_discriminator():
    gen, disc = make_models()
    cfg = LeakGANConfig(batch_size=5, num_rollouts=2, mle_every=1, mle_steps=1, d_steps=0)
    tr = LeakGANTrainer(gen, disc, cfg, max_len=T, rng=torch.Generator().manual_seed(0))
    g0 = {n: p.detach().clone() for n, p in gen.named_parameters()}
    d0 = [p.detach().clone() for p in disc.parameters()]
    metrics = tr.generator_step()
    assert all(torch.equal(a, b) for a, b in zip(d0, disc.parameters(), strict=True))
    changed = {n for n, p in gen.named_parameters() if not torch.equal(g0[n], p)}
    assert {
        "manager.weight_ih_l0",
        "goal_head.weight",
        "worker.weight_ih_l0",
        "psi.weight",
        "worker_out.weight",
    } <= changed
    assert tr.g_steps == 1 and math.isfinite(metrics["generator/manager_loss"])
    assert -1.0 <= metrics["generator/goal_cos"] <= 1.0
    # the rollout policy moved towards the generator and reads the same leak
    assert tr.rollout.policy.__dict__["_leak"] is gen.__dict__["_leak"]
    out = tr.train_epoch(tokens_batch(), torch.Generator().manual_seed(0))  # with an interleaved MLE round
    assert math.isfinite(out["mle/train_nll"]) and tr.epochs_done == 1


def test_config_and_registry():
    cfg = load_config(
        None, ["adversarial.method=leakgan", "generator.kind=leakgan", "leakgan.num_rollouts=2"]
    )
    assert cfg.method_config is cfg.leakgan and cfg.discriminator_kind == "cnn"
    with pytest.raises(ConfigError, match="generator.kind=leakgan"):
        load_config(None, ["adversarial.method=leakgan"])
    with pytest.raises(ConfigError, match="discriminator.kind=cnn"):
        load_config(
            None, ["generator.kind=leakgan", "discriminator.kind=rnn", "adversarial.method=scratchgan"]
        )

    class Tok:
        vocab_size, pad_id, bos_id, eos_id = V, PAD, BOS, EOS

    gen = build_generator(cfg, Tok())
    assert isinstance(gen, LeakGANGenerator) and gen.feature_dim == sum(cfg.discriminator.num_filters)
    _, disc = make_models()
    gen2, _ = make_models()
    assert isinstance(build_trainer(cfg, gen2, disc), LeakGANTrainer)


# ---------------------------------------------------------------------------------------------- end to end
def test_end_to_end_from_an_mle_checkpoint_resumes_exactly(tmp_path, root):
    from seqgan.runs import load_run
    from seqgan.stages import adversarial, pretrain

    def cfg(out, epochs):
        return load_config(
            root / "recipes/configs/tiny.yaml",
            [
                f"out_dir={out}",
                f"data.train={root / 'data/tiny/train.txt'}",
                f"data.test={root / 'data/tiny/test.txt'}",
                "data.max_len=10",
                f"adversarial.pretrain_checkpoint={tmp_path / 'mle' / 'pretrain.pt'}",
                "adversarial.method=leakgan",
                "generator.kind=leakgan",
                "generator.goal_size=4",
                "generator.manager_hidden_dim=8",
                f"adversarial.epochs={epochs}",
                "adversarial.eval_num_samples=20",
                "leakgan.batch_size=8",
                "leakgan.num_rollouts=1",
                "leakgan.d_num_negatives=32",
                "leakgan.mle_every=1",
                "leakgan.mle_steps=2",
                "pretrain.num_print_samples=0",
                "pretrain.d_num_negatives=64",
                "pretrain.oracle_eval_samples=20",
            ],
        )

    pretrain(cfg(tmp_path / "mle", 2))
    records = [json.loads(line) for line in (tmp_path / "mle" / "metrics.jsonl").read_text().splitlines()]
    kinds = [("d_round" in r, "epoch" in r) for r in records]
    assert kinds.index((True, False)) < kinds.index((False, True))  # the discriminator is pretrained first
    straight = adversarial(cfg(tmp_path / "straight", 2))
    adversarial(cfg(tmp_path / "resumed", 1))
    resumed = adversarial(cfg(tmp_path / "resumed", 2), resume=True)
    a = torch.load(straight, weights_only=True)
    b = torch.load(resumed, weights_only=True)
    assert a["epoch"] == b["epoch"] == 2 and a["trainer"]["g_steps"] == 2
    assert a["trainer"]["epochs_done"] == 2
    for what in ("generator", "discriminator"):
        sa, sb = a[what]["state_dict"], b[what]["state_dict"]
        assert all(torch.equal(sa[k], sb[k]) for k in sa), what
    mle = torch.load(tmp_path / "mle" / "pretrain.pt", weights_only=True)["generator"]["state_dict"]
    assert any(not torch.equal(mle[k], a["generator"]["state_dict"][k]) for k in mle)
    # a loaded run decodes with its own discriminator's features (the sampling tool's path)
    run = load_run(straight)
    out = sample(run.generator, 3, run.cfg.data.max_len, rng=torch.Generator().manual_seed(0))
    assert out.tokens.shape == (3, 10)
