"""Fine-tuning controls of the policy-gradient trainer for pretrained models: group-normalised advantages (GRPO),
the KL penalty to a frozen reference, gradient accumulation, LoRA; the maths by hand, the trainer by parity."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from seqgan.config import ConditionalConfig, ConfigError, SeqGANConfig
from seqgan.losses import group_advantages, kl_to_reference, policy_gradient_loss, sampled_log_probs
from seqgan.models.pair_discriminator import PairDiscriminator
from seqgan.models.seq2seq import Seq2SeqLSTM
from seqgan.sampling import Samples, sample
from seqgan.trainers import PolicyGradientTrainer
from seqgan.trainers.conditional import ConditionalTrainer
from tests.test_policy_gradient import EOS, T, make_models


def test_group_advantages_by_hand():
    rewards = torch.tensor([[1.0, 2.0], [3.0, 2.0], [5.0, 0.0], [5.0, 4.0]])
    mask = torch.tensor([[True, True], [True, True], [True, False], [True, True]])
    adv = group_advantages(rewards, mask, group_size=2, eps=0.0 + 1e-12)
    s = math.sqrt(2.0)  # unbiased std of {1, 3}: sqrt(((1-2)^2 + (3-2)^2) / 1)
    expect = torch.tensor(
        [
            [-1.0 / s, 0.0],  # step 1: {2, 2} has no spread: 0 (not a division by zero)
            [1.0 / s, 0.0],
            [0.0, 0.0],  # step 0: {5, 5} equal; step 1: the row ended (masked)
            [0.0, 0.0],  # step 1: alone in its group at that step
        ]
    )
    torch.testing.assert_close(adv, expect)
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(rewards, mask, 3)


def test_kl_estimators_by_hand():
    log_p = torch.log(torch.tensor([[0.5, 0.5, 0.0]]))  # the third id is excluded (-inf) by both
    log_q = torch.log(torch.tensor([[0.25, 0.75, 0.0]]))
    full = kl_to_reference(log_p, log_q, torch.tensor([0]), "full")
    torch.testing.assert_close(full, torch.tensor([0.5 * math.log(2.0) + 0.5 * math.log(0.5 / 0.75)]))
    k3 = kl_to_reference(log_p, log_q, torch.tensor([0]), "k3")  # d = log(0.25 / 0.5) = -log 2
    torch.testing.assert_close(k3, torch.tensor([0.5 + math.log(2.0) - 1.0]))
    # k3 is unbiased: its expectation over y ~ p is the exact KL
    both = kl_to_reference(log_p.expand(2, 3), log_q.expand(2, 3), torch.tensor([0, 1]), "k3")
    torch.testing.assert_close((both * 0.5).sum(), full[0])


def trainer(batch_size: int = 6, seed: int = 0, **overrides) -> PolicyGradientTrainer:
    gen, disc = make_models("lstm", seed)
    cfg = SeqGANConfig(batch_size=batch_size, num_rollouts=3, rollout_update_rate=0.0, **overrides)
    t = PolicyGradientTrainer(gen, disc, cfg, max_len=T, rng=torch.Generator().manual_seed(seed + 100))
    t.g_optimizer = torch.optim.SGD(gen.parameters(), lr=0.5)
    return t


def test_kl_penalty_is_added_per_token_against_the_frozen_start():
    t = trainer(kl_coef=0.3, kl_estimator="full")
    assert t.reference is not None and not any(p.requires_grad for p in t.reference.parameters())
    first = t.generator_step()
    assert first["generator/kl"] == pytest.approx(0.0, abs=1e-6)  # the policy starts as its reference
    reference = copy.deepcopy(t.reference.state_dict())
    samples, rewards = t.draw()
    loss, parts = t.micro_loss(samples, rewards, int(samples.mask.sum()))
    gen, mask = t.generator, samples.mask
    log_probs, log_dist = sampled_log_probs(gen, samples.tokens, mask, 1.0)
    with torch.no_grad():
        _, ref_dist = sampled_log_probs(t.reference, samples.tokens, mask, 1.0)
    kl = kl_to_reference(log_dist, ref_dist, samples.tokens[mask], "full").mean()
    assert float(kl.detach()) > 1e-4  # the first update moved the policy away
    torch.testing.assert_close(loss, policy_gradient_loss(log_probs, rewards, mask) + 0.3 * kl)
    torch.testing.assert_close(parts["kl"], kl.detach())
    t.generator_step()
    assert all(torch.equal(v, t.reference.state_dict()[k]) for k, v in reference.items())  # stays frozen


def _halves(samples: Samples, rewards: torch.Tensor, n: int):
    return [
        (
            Samples(samples.tokens[i : i + n], samples.log_probs[i : i + n], samples.mask[i : i + n]),
            rewards[i : i + n],
        )
        for i in (0, n)
    ]


@pytest.mark.parametrize(
    "overrides", [{}, {"baseline": "group", "group_size": 3}, {"kl_coef": 0.5, "entropy_coef": 0.1}]
)
def test_accumulating_two_micro_batches_equals_one_double_batch(overrides):
    one, two = trainer(12, **overrides), trainer(6, grad_accum_steps=2, **overrides)
    two.generator.load_state_dict(one.generator.state_dict())
    with torch.no_grad():
        samples = sample(one.generator, 12, T, rng=torch.Generator().manual_seed(5))
        samples.mask[3, 2:] = False  # rows of different lengths: tokens, not rows, are weighted alike
        rewards = torch.rand(samples.tokens.shape, generator=torch.Generator().manual_seed(6))
    one.draw = lambda: (samples, rewards)
    micro = iter(_halves(samples, rewards, 6))
    two.draw = lambda: next(micro)
    m1, m2 = one.generator_step(), two.generator_step()
    for a, b in zip(one.generator.parameters(), two.generator.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for key in ("generator/pg_loss", "generator/entropy", "generator/grad_norm", "rollout/reward_mean"):
        assert m1[key] == pytest.approx(m2[key], rel=1e-5, abs=1e-6)


def test_group_baseline_config_needs_whole_groups():
    with pytest.raises(ConfigError, match="multiple of seqgan.group_size"):
        SeqGANConfig(baseline="group", batch_size=6, group_size=4)


def test_conditional_groups_answer_one_context_each():
    torch.manual_seed(0)
    vocab, n = 16, 24
    g = torch.Generator().manual_seed(0)
    contexts = torch.cat([torch.randint(3, vocab, (n, 4), generator=g), torch.full((n, 1), EOS)], dim=1)
    responses = torch.cat([torch.randint(3, vocab, (n, 3), generator=g), torch.full((n, 1), EOS)], dim=1)
    cfg = SeqGANConfig(batch_size=6, num_rollouts=2, baseline="group", group_size=3, kl_coef=0.1)
    t = ConditionalTrainer(
        Seq2SeqLSTM(vocab, 8, 8), PairDiscriminator(vocab, 8, [1, 2], [4, 4], dropout=0.0, hidden=8), cfg,
        ConditionalConfig(teacher_forcing_every=0), contexts, responses, max_len=5,
        rng=torch.Generator().manual_seed(1), data_rng=torch.Generator().manual_seed(2),
    )  # fmt: skip
    metrics = t.generator_step()
    index = t._last_index
    assert torch.equal(index, index[::3].repeat_interleave(3))  # two contexts, three answers each
    assert math.isfinite(metrics["generator/kl"])


def test_lora_policy_gradient_step_changes_only_the_adapters():
    from seqgan.models.discriminator import CNNDiscriminator
    from seqgan.models.transformer import TransformerGenerator

    torch.manual_seed(0)
    gen = TransformerGenerator.from_config(
        10,
        T,
        0,
        1,
        EOS,
        n_layer=1,
        n_head=2,
        n_embd=16,
        dropout=0.0,
        model_type="llama",
        num_key_value_heads=1,
    ).add_lora(r=2, alpha=4.0)
    disc = CNNDiscriminator(10, embed_dim=8, filter_sizes=(2,), num_filters=(4,), dropout=0.0, pad_id=0)
    t = PolicyGradientTrainer(gen, disc, SeqGANConfig(batch_size=4, num_rollouts=2, g_lr=0.05, kl_coef=0.1),
                              max_len=T, rng=torch.Generator().manual_seed(0))  # fmt: skip
    before = {n: p.detach().clone() for n, p in gen.named_parameters()}
    t.generator_step()
    t.generator_step()  # LoRA's B starts at 0: the second step moves A too
    moved = {n for n, p in gen.named_parameters() if not torch.equal(p, before[n])}
    assert moved == {n for n, p in gen.named_parameters() if "lora_" in n}
