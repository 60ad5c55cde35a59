"""Tests for ``seqgan.rollout.MonteCarloRollout`` (tiny models, CPU)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seqgan.data.datasets import sequence_mask
from seqgan.decoding import FusedSampler, LSTMDecoder, StepDecoder, draw, make_decoder
from seqgan.models.cnn_scorer import CNNScorer
from seqgan.models.discriminator import CNNDiscriminator
from seqgan.models.lstm import LSTMGenerator
from seqgan.rollout import MonteCarloRollout

VOCAB, PAD, BOS, EOS = 12, 0, 1, 2
KINDS = ["lstm", "transformer"]


def make_generator(kind: str, seed: int = 0, max_len: int = 8):
    torch.manual_seed(seed)
    if kind == "lstm":
        return LSTMGenerator(VOCAB, embed_dim=8, hidden_dim=16, pad_id=PAD, bos_id=BOS, eos_id=EOS)
    from seqgan.models.transformer import TransformerGenerator

    return TransformerGenerator.from_config(
        VOCAB, max_len, PAD, BOS, EOS, n_layer=2, n_head=2, n_embd=16, dropout=0.0
    )


def rng(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class PositionDiscriminator(nn.Module):
    """Logit ``+scale`` if ``tokens[:, pos] == token`` else ``-scale`` (``CNNDiscriminator`` call signature)."""

    def __init__(self, pos: int, token: int, scale: float = 200.0) -> None:
        super().__init__()
        self.pos, self.token, self.scale = pos, token, scale

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hit = tokens[:, self.pos] == self.token
        return torch.where(hit, self.scale, -self.scale).float()


class FirstTokenDiscriminator(nn.Module):
    """Scores each row by its own first token: ``logit = table[tokens[:, 0]]``."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = table

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.table[tokens[:, 0]]


class RecordingDiscriminator(nn.Module):
    """Wraps a discriminator and keeps every batch it scores."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.seen: list[torch.Tensor] = []

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        self.seen.append(tokens.clone())
        return self.inner(tokens)


def fixed_distribution_lstm(probs: torch.Tensor) -> LSTMGenerator:
    """An LSTM whose next-token distribution is ``probs`` at every step, whatever the prefix."""
    gen = LSTMGenerator(VOCAB, embed_dim=4, hidden_dim=4, pad_id=PAD, bos_id=BOS, eos_id=EOS)
    with torch.no_grad():
        gen.proj.weight.zero_()
        gen.proj.bias.copy_(torch.log(probs.clamp(min=1e-30)))
    return gen


def hand_tokens() -> torch.Tensor:
    """Rows ending at EOS at different places, one without EOS, one that is EOS only."""
    return torch.tensor(
        [
            [5, 6, 7, 8, 9, 10, 11, 3],
            [4, 5, EOS, PAD, PAD, PAD, PAD, PAD],
            [EOS, PAD, PAD, PAD, PAD, PAD, PAD, PAD],
            [9, 3, 4, 5, 6, 7, EOS, PAD],
        ]
    )


# ---------------------------------------------------------------------------------------------- naive reference
@torch.no_grad()
def naive_rewards(gen, tokens, disc, num_rollouts, generator_rng, group: int = 250) -> torch.Tensor:
    """Independent reference: for every group of rollouts and every prefix length t, re-run the prefix from
    scratch with ``step``, decode the rest with ``step`` + softmax + ``draw``, and score with ``disc``.
    A group of ``group`` rollouts is decoded as ``group`` copies of the batch."""
    gen.eval()
    batch, seq_len = tokens.shape
    mask = sequence_mask(tokens, gen.eos_id)
    lengths = mask.sum(1)
    banned = torch.tensor(gen.never_sample)
    rewards = torch.zeros(batch, seq_len)
    done = 0
    while done < num_rollouts:
        k = min(group, num_rollouts - done)
        rep = tokens.repeat(k, 1)  # (k * B, T), row j * B + b is rollout j of sample b
        inputs = gen.teacher_inputs(rep)
        for t in range(1, seq_len):
            state = gen.init_state(rep.shape[0])
            for s in range(t + 1):  # BOS, y_1 .. y_t from scratch
                logits, state = gen.step(inputs[:, s], state)
            seq = rep.clone()
            alive = torch.ones(rep.shape[0], dtype=torch.bool)
            for s in range(t, seq_len):
                probs = torch.softmax(logits.index_fill(1, banned, float("-inf")), dim=-1)
                tok = draw(probs, generator_rng)
                seq[:, s] = torch.where(alive, tok, PAD)
                alive &= tok != EOS
                if s < seq_len - 1:
                    logits, state = gen.step(tok, state)
            scores = torch.sigmoid(disc(seq).float()).view(k, batch)
            rewards[:, t - 1] += scores.sum(0)
        done += k
    rewards /= num_rollouts
    rewards[:, :-1] *= (torch.arange(1, seq_len)[None, :] < lengths[:, None]).float()
    rewards.scatter_(1, (lengths - 1)[:, None], torch.sigmoid(disc(tokens).float())[:, None])
    rewards[~mask] = 0.0
    return rewards


# ---------------------------------------------------------------------------------------------- layout
@pytest.mark.parametrize("kind", KINDS)
def test_rows_are_not_mixed_up(kind):
    """TextGAN-PyTorch reshape trap: every reward of row b must come from row b's own completions."""
    gen = make_generator(kind)
    tokens = torch.tensor(
        [[3, 4, 5, 6, 7, 8], [9, 10, 11, 3, 4, 5], [6, 7, 8, 9, 10, 11], [11, 5, EOS, 0, 0, 0]]
    )
    table = torch.linspace(-3.0, 3.0, VOCAB)
    disc = FirstTokenDiscriminator(table)
    rewards = MonteCarloRollout(gen, update_rate=0.0)(tokens, disc, 3, rng=rng(0))
    mask = sequence_mask(tokens, EOS)
    expected = torch.sigmoid(table[tokens[:, 0]])[:, None].expand_as(rewards) * mask
    torch.testing.assert_close(rewards, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_masking_and_reward_at_eos(kind):
    gen = make_generator(kind)
    tokens = hand_tokens()
    disc = CNNDiscriminator(VOCAB, embed_dim=8, filter_sizes=(2, 3), num_filters=(6, 5), pad_id=PAD)
    rewards = MonteCarloRollout(gen, update_rate=0.0)(tokens, disc, 4, rng=rng(1))
    mask = sequence_mask(tokens, EOS)
    lengths = mask.sum(1)
    assert rewards.shape == tokens.shape and rewards.dtype == torch.float32
    assert torch.all(rewards[~mask] == 0)
    with torch.no_grad():
        whole = torch.sigmoid(disc.eval()(tokens))
    torch.testing.assert_close(rewards.gather(1, (lengths - 1)[:, None]).squeeze(1), whole)
    assert torch.all(rewards[mask] > 0)


def test_zero_rollouts_give_every_real_token_the_sequence_reward():
    gen = make_generator("lstm")
    tokens = hand_tokens()  # lengths 8, 3, 1, 7
    table = torch.zeros(VOCAB)
    table[5], table[4], table[EOS], table[9] = 1.0, -2.0, 0.5, 3.0
    disc = RecordingDiscriminator(FirstTokenDiscriminator(table))
    rewards = MonteCarloRollout(gen, update_rate=0.0)(tokens, disc, 0, rng=rng(1))
    s = torch.sigmoid(torch.tensor([1.0, -2.0, 0.5, 3.0]))
    expected = torch.tensor([[s[0]] * 8, [s[1]] * 3 + [0.0] * 5, [s[2]] + [0.0] * 7, [s[3]] * 7 + [0.0]])
    torch.testing.assert_close(rewards, expected)
    assert len(disc.seen) == 1 and torch.equal(disc.seen[0], tokens)  # one call, no completions


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fast", [True, False])
def test_completions_keep_prefix_stop_at_eos_and_only_needed_prefixes(kind, fast):
    gen = make_generator(kind)
    with torch.no_grad():  # make EOS frequent so that completions end early
        if kind == "lstm":
            gen.proj.bias[EOS] += 2.0
        else:
            gen.model.get_output_embeddings().weight[EOS] *= 0.0
    tokens = hand_tokens()
    r = 5
    disc = RecordingDiscriminator(PositionDiscriminator(0, 5, scale=1.0))
    MonteCarloRollout(gen, update_rate=0.0, fast=fast)(tokens, disc, r, rng=rng(2))
    whole, *batches = disc.seen
    assert torch.equal(whole, tokens)
    scored = torch.cat(batches)
    lengths = sequence_mask(tokens, EOS).sum(1)
    assert scored.shape[0] == int((lengths - 1).sum()) * r  # no completion for t >= L_b
    # each completion continues a prefix of some sample and is padded after its first EOS
    m = sequence_mask(scored, EOS)
    assert torch.all(scored[~m] == PAD)
    assert torch.all(scored[m] != PAD) and torch.all(scored[m] != BOS)
    prefixes = {
        tuple(row[:t].tolist()) for row, n in zip(tokens, lengths, strict=True) for t in range(1, int(n))
    }
    for row in scored:
        assert any(tuple(row[:t].tolist()) in prefixes for t in range(1, len(row)))
    assert (scored == EOS).any()  # the EOS path was exercised


def test_position_discriminator_exact_rewards_and_known_distribution():
    """D looks only at column p: prefixes covering p get exactly 0 or 1; shorter prefixes estimate P(y_p = k)."""
    p, k = 3, 5
    probs = torch.zeros(VOCAB)
    probs[3:] = 1.0
    probs[k] = 3.0  # P(k) = 3 / 11 at every step, no EOS
    probs /= probs.sum()
    gen = fixed_distribution_lstm(probs)
    tokens = torch.tensor([[3, 4, 6, 5, 7, 8], [5, 5, 5, 6, 5, 5], [9, 10, 11, 5, 3, 4]])
    disc = PositionDiscriminator(p, k)
    rewards = MonteCarloRollout(gen, update_rate=0.0)(tokens, disc, 4000, rng=rng(3))
    hit = (tokens[:, p] == k).float()[:, None]
    # prefixes t >= p + 1 (columns p .. T-1): the sampled y_p decides, exactly
    assert torch.equal(rewards[:, p:], hit.expand(-1, tokens.shape[1] - p))
    # prefixes t <= p (columns 0 .. p-1): Monte-Carlo estimate of P(y_p = k) = 3/11 (sd ~0.007 per entry)
    est = rewards[:, :p]
    assert torch.all((est - probs[k]).abs() < 0.04), est
    assert abs(float(est.mean()) - float(probs[k])) < 0.015


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic_generator_gives_exact_rewards(kind):
    """A generator that always emits token k: every completion of a prefix shorter than p + 1 has k at column p
    (reward exactly 1); longer prefixes keep the sample's own y_p (exactly 1 or 0)."""
    gen = make_generator(kind)
    k, p = 7, 4
    with torch.no_grad():
        head = gen.proj if kind == "lstm" else gen.model.get_output_embeddings()
        head.weight.zero_()
        if kind == "lstm":
            head.bias.fill_(-60.0)
            head.bias[k] = 60.0
        else:  # no bias: make the final hidden state constant and the head one-hot
            gen.model.transformer.ln_f.weight.zero_()
            gen.model.transformer.ln_f.bias.fill_(1.0)
            head.weight.fill_(-60.0)
            head.weight[k] = 60.0
    tokens = torch.tensor([[3, 4, 6, 9, 9, 8], [5, 5, 5, 6, k, EOS]])
    rewards = MonteCarloRollout(gen, update_rate=0.0)(tokens, PositionDiscriminator(p, k), 6, rng=rng(4))
    expected = torch.ones(2, 6)
    expected[0, p:] = 0.0  # row 0 has y_p = 9: prefixes covering column p score 0; shorter ones always get k
    torch.testing.assert_close(rewards, expected, rtol=0, atol=0)


@pytest.mark.parametrize(("kind", "k"), [("lstm", 9), ("transformer", 4)])
def test_matches_naive_reference_in_expectation(kind, k):
    """Batched engine vs the naive loop that re-runs each prefix, with a prefix-dependent generator and a
    discriminator that depends on a sampled column."""
    gen = make_generator(kind, seed=5, max_len=5)
    with torch.no_grad():  # sharpen the distributions so that they depend strongly on the prefix
        for prm in gen.parameters():
            prm.mul_(3.0)
    tokens = torch.tensor([[3, 4, 5, 6, 7], [8, 9, EOS, PAD, PAD], [10, 3, 3, 11, 4]])
    disc = PositionDiscriminator(3, k, scale=3.0)
    ours = MonteCarloRollout(gen, update_rate=0.0)(tokens, disc, 4000, rng=rng(6))
    ref = naive_rewards(gen, tokens, disc, 4000, rng(7), group=1000)
    # completion scores are 0.047 or 0.953: sd of a 4000-rollout mean <= 0.0072, of the difference <= 0.0102
    torch.testing.assert_close(ours, ref, rtol=0, atol=0.045)
    est = ours[[0, 0, 0, 1, 1, 2, 2, 2], [0, 1, 2, 0, 1, 0, 1, 2]]  # Monte-Carlo entries (prefixes before p)
    assert float(est.max() - est.min()) > 0.1  # the generator's P(y_p = k | prefix) really varies


@pytest.mark.parametrize("kind", KINDS)
def test_fast_and_generic_paths_agree(kind):
    """Fused decoder / CNN scorer vs the plain ``step`` / ``discriminator(ids)`` paths, same RNG: identical draws up
    to float rounding at CDF boundaries."""
    gen = make_generator(kind)
    assert make_decoder(gen, 1.0, True).fused
    tokens = hand_tokens()
    disc = CNNDiscriminator(VOCAB, embed_dim=8, filter_sizes=(2, 3, 4), num_filters=(6, 5, 4), pad_id=PAD)
    fast = MonteCarloRollout(gen, update_rate=0.0, fast=True)(tokens, disc, 500, rng=rng(8))
    slow = MonteCarloRollout(gen, update_rate=0.0, fast=False)(tokens, disc, 500, rng=rng(8))
    torch.testing.assert_close(fast, slow, rtol=0, atol=5e-3)


def test_cnn_scorer_is_exact():
    torch.manual_seed(0)
    disc = CNNDiscriminator(
        VOCAB, embed_dim=8, filter_sizes=(2, 3, 5), num_filters=(7, 6, 5), pad_id=PAD
    ).eval()
    tokens = torch.randint(3, VOCAB, (4, 9))
    tokens[1, 4:] = PAD
    t = torch.tensor([1, 2, 2, 4, 7, 8])
    b = torch.tensor([0, 1, 3, 2, 0, 3])
    seqs = torch.randint(2, VOCAB, (6, 9))
    col = torch.arange(9)
    seqs = torch.where(col[None, :] < t[:, None], tokens[b], seqs)
    seqs[2, 6:] = PAD
    with torch.no_grad():
        scorer = CNNScorer(disc, tokens)
        torch.testing.assert_close(scorer(seqs, b, t), disc(seqs), rtol=1e-5, atol=1e-5)


def test_fused_sampler_distribution():
    torch.manual_seed(0)
    vocab, hidden = 150, 6  # 3 blocks of 64, the last one padded
    weight, bias = torch.randn(vocab, hidden), torch.randn(vocab)
    x = torch.randn(1, hidden)
    sampler = FusedSampler(weight, bias, temperature=0.7, banned=[0, 1])
    draws = sampler(x.expand(20000, hidden), 1, rng(9)).squeeze(1)
    probs = torch.softmax((x @ weight.T + bias)[0] / 0.7, dim=0)
    probs[:2] = 0.0
    probs /= probs.sum()
    freq = torch.bincount(draws, minlength=vocab).float() / draws.numel()
    assert int(draws.max()) < vocab and not bool(((draws == 0) | (draws == 1)).any())
    assert float((freq - probs).abs().sum()) < 0.08  # total variation, sampling noise ~0.03
    # overflowing logits (beyond float32 exp range) fall back to the shifted computation
    big = FusedSampler(weight * 500.0, bias, temperature=1.0, banned=[])
    out = big(x, 5, rng(10))
    assert torch.all(out == torch.argmax(x @ weight.T * 500.0 + bias, dim=1)[:, None])


# ---------------------------------------------------------------------------------------------- policy lag
@pytest.mark.parametrize("kind", KINDS)
def test_update_policy_is_exact_lagged_average(kind):
    gen = make_generator(kind)
    rollout = MonteCarloRollout(gen, update_rate=0.8)
    assert rollout.policy is not gen
    old = [p.detach().clone() for p in rollout.policy.parameters()]
    for p in rollout.policy.parameters():
        assert not p.requires_grad
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(torch.randn_like(p))
    rollout.update_policy(gen)
    for p, o, g in zip(rollout.policy.parameters(), old, gen.parameters(), strict=True):
        assert torch.equal(p, 0.8 * o + (1 - 0.8) * g)
    # rate 0: the policy is the generator itself
    current = MonteCarloRollout(gen, update_rate=0.0)
    assert current.policy is gen
    other = make_generator(kind, seed=1)
    current.update_policy(other)
    assert current.policy is other


def test_lagged_policy_is_used_for_rollouts():
    """With rate 0.8 the completions come from the lagged copy, not from the (changed) generator."""
    probs = torch.zeros(VOCAB)
    probs[3:] = 1.0
    gen = fixed_distribution_lstm(probs / probs.sum())
    rollout = MonteCarloRollout(gen, update_rate=0.8)
    with torch.no_grad():  # the generator now always emits 5; the copy is still uniform
        gen.proj.bias.fill_(-60.0)
        gen.proj.bias[5] = 60.0
    tokens = torch.tensor([[3, 4, 6, 7]])
    rewards = rollout(tokens, PositionDiscriminator(3, 5), 2000, rng=rng(11))
    assert abs(float(rewards[0, :3].mean()) - 1 / 9) < 0.03


def test_rollout_state_dict_round_trip():
    gen = make_generator("lstm")
    a = MonteCarloRollout(gen, update_rate=0.5)
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(1.0)
    a.update_policy(gen)
    b = MonteCarloRollout(make_generator("lstm", seed=3), update_rate=0.5)
    b.load_state_dict(a.state_dict())
    for p, q in zip(a.policy.parameters(), b.policy.parameters(), strict=True):
        assert torch.equal(p, q)
    with pytest.raises(ValueError):
        MonteCarloRollout(gen, update_rate=0.0).load_state_dict(a.state_dict())


@pytest.mark.parametrize("kind", KINDS)
def test_modes_restored_and_chunking(kind):
    gen = make_generator(kind).train()
    disc = PositionDiscriminator(2, 4, scale=2.0).train()
    tokens = hand_tokens()
    one = MonteCarloRollout(gen, update_rate=0.0, max_rows=None)(tokens, disc, 1000, rng=rng(12))
    assert gen.training and disc.training
    # one sample per chunk and small score batches: different draw order, same expectation
    many = MonteCarloRollout(gen, update_rate=0.0, max_rows=1, score_batch=7)(tokens, disc, 1000, rng=rng(13))
    assert torch.equal(one == 0, many == 0)
    torch.testing.assert_close(one, many, rtol=0, atol=0.05)  # sd of a difference <= 0.018


@pytest.mark.parametrize("kind", KINDS)
def test_completion_layout(kind):
    """``_complete``: completion (b, t, r) is row (b * (T - 1) + t - 1) * R + r, prefix first, pad after EOS."""
    gen = make_generator(kind)
    with torch.no_grad():
        if kind == "lstm":
            gen.proj.bias[EOS] += 2.0
    tokens = hand_tokens()
    batch, seq_len = tokens.shape
    r = 4
    rollout = MonteCarloRollout(gen, update_rate=0.0)
    lengths = sequence_mask(tokens, EOS).sum(1)
    with torch.no_grad(), make_decoder(gen.eval(), 1.0) as decoder:
        comp = rollout._complete(gen, decoder, tokens, lengths, r, rng(14)).view(
            batch, seq_len - 1, r, seq_len
        )
    for b in range(batch):
        for t in range(1, int(lengths[b])):
            rows = comp[b, t - 1]  # (R, T)
            assert torch.equal(rows[:, :t], tokens[b, :t].expand(r, t))
            m = sequence_mask(rows, EOS)
            assert torch.all(rows[~m] == PAD) and torch.all(rows[m] > BOS)


@pytest.mark.parametrize("kind", KINDS)
def test_fast_and_generic_paths_agree_with_early_stops(kind):
    """Many completions end at EOS and teacher rows retire at different steps, so rows are dropped and the
    state is compacted while new completions keep joining: the fast path must still continue every completion
    from its own prefix."""
    gen = make_generator(kind, seed=3)
    with torch.no_grad():
        for prm in gen.parameters():
            prm.mul_(2.0)
        head = gen.proj if kind == "lstm" else gen.model.get_output_embeddings()
        head.weight[EOS] *= 0.0
        if kind == "lstm":
            head.bias[EOS] = 1.0
    tokens = torch.tensor(
        [
            [5, EOS, 0, 0, 0, 0, 0, 0],
            [6, 7, 8, EOS, 0, 0, 0, 0],
            [9, 10, 11, 3, 4, 5, 6, 7],
            [3, 4, 5, 6, 7, EOS, 0, 0],
            [11, 11, EOS, 0, 0, 0, 0, 0],
        ]
    )
    disc = PositionDiscriminator(5, 9, scale=2.0)
    # one part: the fused and the generic decoders consume the same uniforms, so the draws coincide
    fast = MonteCarloRollout(gen, update_rate=0.0, fast=True, parts=1)(tokens, disc, 300, rng=rng(15))
    slow = MonteCarloRollout(gen, update_rate=0.0, fast=False)(tokens, disc, 300, rng=rng(15))
    torch.testing.assert_close(fast, slow, rtol=0, atol=5e-3)


@pytest.mark.parametrize("kind", KINDS)
def test_parts_run_concurrently_with_the_same_draws_for_any_thread_count(kind):
    """With ``parts=2`` the two halves of the batch have their own random streams: two threads (one part each)
    and one thread (the parts in turn) give the same rewards, which agree in distribution with one part."""
    gen = make_generator(kind, seed=4)
    tokens = hand_tokens()
    disc = PositionDiscriminator(2, 5, scale=1.5)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = MonteCarloRollout(gen, update_rate=0.0, parts=2, parallel=True)(tokens, disc, 400, rng=rng(16))
        assert torch.get_num_threads() == 2  # restored after the parallel section
        torch.set_num_threads(1)
        one = MonteCarloRollout(gen, update_rate=0.0, parts=2)(tokens, disc, 400, rng=rng(16))
        single = MonteCarloRollout(gen, update_rate=0.0, parts=1)(tokens, disc, 400, rng=rng(16))
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(two, one, rtol=0, atol=1e-6)
    assert not torch.equal(one, single)  # other streams
    torch.testing.assert_close(one, single, rtol=0, atol=0.08)  # same expectation (R = 400)


@pytest.mark.parametrize("kind", KINDS)
def test_parallel_parts_give_bit_identical_rewards_and_leave_the_thread_count_alone(kind):
    """``parallel=True`` decodes the parts on a thread pool (torch switched to one thread meanwhile),
    ``parallel=False`` in turn: the same rewards bit for bit, and the caller's thread count afterwards."""
    gen = make_generator(kind, seed=9)
    tokens = hand_tokens()
    disc = CNNDiscriminator(VOCAB, embed_dim=8, filter_sizes=(2, 3), num_filters=(6, 5), pad_id=PAD)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        rewards = {}
        for parallel in (True, False):
            rollout = MonteCarloRollout(gen, update_rate=0.0, parts=2, parallel=parallel)
            rewards[parallel] = rollout(tokens, disc, 16, rng=rng(21))
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(rewards[True], rewards[False])
    assert MonteCarloRollout(gen).parallel is False  # the library leaves process-wide state alone by default


def test_fast_decoder_only_for_generators_that_keep_the_decoding_methods():
    """A subclass that overrides ``step`` (or ``forward`` / ``init_state``) decodes through its own ``step``;
    one that also provides ``fast_decoder`` gets that."""

    class OwnStep(LSTMGenerator):
        def step(self, tokens, state):
            return super().step(tokens, state)

    class OwnStepAndFastPath(OwnStep):
        def fast_decoder(self, temperature):
            return LSTMDecoder(self, temperature)

    kwargs = dict(embed_dim=4, hidden_dim=4, pad_id=PAD, bos_id=BOS, eos_id=EOS)
    assert isinstance(make_decoder(LSTMGenerator(VOCAB, **kwargs), 1.0), LSTMDecoder)
    assert isinstance(make_decoder(LSTMGenerator(VOCAB, **kwargs), 1.0, fast=False), StepDecoder)
    assert isinstance(make_decoder(OwnStep(VOCAB, **kwargs), 1.0), StepDecoder)
    assert isinstance(make_decoder(OwnStepAndFastPath(VOCAB, **kwargs), 1.0), LSTMDecoder)


def test_slot_pool_rearrange_matches_a_gather():
    """``rearrange(keep, src)``: rows ``keep`` then copies of rows ``src``, all indices in the *old* layout."""
    from seqgan.decoding.hf import SlotPool

    pool = SlotPool(num_layers=1, capacity=12, max_len=4)
    pool.n, pool.lo, pool.hi = 6, 0, 6
    for pos in range(3):
        keys = torch.arange(6 * 2 * 3, dtype=torch.float32).view(6, 2, 1, 3) + 100 * pos
        pool.write(0, keys, -keys)
        pool.length += 1
    old = pool.keys[0][:6, :, :3].clone()
    keep, src = torch.tensor([1, 3, 4]), torch.tensor([3, 3, 5, 1])
    pool.rearrange(keep, src)
    assert pool.n == 7
    torch.testing.assert_close(pool.keys[0][:7, :, :3], old[torch.cat([keep, src])])
    torch.testing.assert_close(pool.values[0][:7, :, :3], -old[torch.cat([keep, src])])
    pool.rearrange(None, torch.tensor([0, 6]))  # append only
    torch.testing.assert_close(pool.keys[0][:9, :, :3], old[torch.cat([keep, src, keep[:1], src[-1:]])])


def test_cnn_scorer_with_parts_matches_the_module_on_the_same_draws():
    """Parts score through one scorer built for the whole batch: sample indices are offset per part."""

    class ModuleOnly(CNNDiscriminator):  # an overridden forward: scored by calling the module
        def forward(self, inputs, lengths=None):
            return super().forward(inputs, lengths)

    torch.manual_seed(1)
    disc = CNNDiscriminator(VOCAB, embed_dim=8, filter_sizes=(2, 3), num_filters=(6, 5), pad_id=PAD)
    twin = ModuleOnly(VOCAB, embed_dim=8, filter_sizes=(2, 3), num_filters=(6, 5), pad_id=PAD)
    twin.load_state_dict(disc.state_dict())
    with torch.no_grad():
        for prm in disc.parameters():  # larger weights: scores spread over (0.5, 0.95), sample-dependent
            prm.mul_(1.5)
        for prm, src in zip(twin.parameters(), disc.parameters(), strict=True):
            prm.copy_(src)
    gen = make_generator("lstm", seed=6)
    tokens = hand_tokens()
    fast = MonteCarloRollout(gen, update_rate=0.0, parts=2)(tokens, disc, 8, rng=rng(17))
    module = MonteCarloRollout(gen, update_rate=0.0, parts=2)(tokens, twin, 8, rng=rng(17))
    torch.testing.assert_close(fast, module, rtol=1e-5, atol=1e-5)
    assert float(fast.std()) > 0.05


def test_slot_decoder_matches_step_across_joins_compaction_and_reused_slots():
    """The transformer fast path (masked attention over whole key / value slots, slots reused by the next
    chunk) gives ``generator.step``'s logits while rows join as copies, rows are dropped, and after a first
    chunk has left other keys / values in the slots; the model's attention is restored afterwards."""
    from seqgan.decoding.hf import SlotTransformerDecoder

    gen = make_generator("transformer", seed=8).eval()
    head = gen.model.get_output_embeddings()
    decoder = make_decoder(gen, 1.0)
    assert isinstance(decoder, SlotTransformerDecoder)
    attn = gen.model.config._attn_implementation
    g = rng(20)
    with torch.no_grad(), decoder:
        for chunk, n in enumerate((4, 3)):  # the second chunk reuses the first chunk's (dirty) slots
            state = decoder.init(n, capacity=16, seq_len=8)
            ref = gen.init_state(n)
            for s in range(6):
                tokens = torch.randint(3, VOCAB, (state.pool.n,), generator=g)
                feats, state = decoder.step(tokens, state)
                logits, ref = gen.step(tokens, ref)
                torch.testing.assert_close(head(feats), logits, rtol=1e-5, atol=1e-5)
                rows = state.pool.n
                if s == 1:  # append copies of rows 0 and 0 and 1
                    src = torch.tensor([0, 0, 1])
                    state = decoder.rearrange(state, rows, None, src)
                    ref = gen.select_state(ref, torch.cat([torch.arange(rows), src]))
                elif s == 3:  # drop rows 0 and 2, copy row 3
                    keep = torch.tensor([r for r in range(rows) if r not in (0, 2)])
                    src = torch.tensor([3])
                    state = decoder.rearrange(state, rows, keep, src)
                    ref = gen.select_state(ref, torch.cat([keep, src]))
            assert chunk == 0 or state.pool is decoder._pool
        # a teacher-forced pass by other code meanwhile is plain causal attention
        inputs = torch.randint(3, VOCAB, (2, 6), generator=g)
        inside = gen(inputs)
    assert gen.model.config._attn_implementation == attn
    torch.testing.assert_close(inside, gen(inputs), rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError, match="inside `with decoder:`"):  # unmasked slots would be attended
        decoder.step(torch.full((2,), 3), decoder.init(2, capacity=4, seq_len=8))


def test_slot_pool_mask_marks_filled_positions_on_the_decoding_device():
    """The attention mask admits positions ``0..length`` and lives on the tokens' device, even before the first
    key / value write has allocated the slots (a mask left on the CPU would break, and silently disable, the
    fast path on an accelerator)."""
    from seqgan.decoding.hf import SlotPool

    pool = SlotPool(num_layers=2, capacity=4, max_len=6)
    pool.reset(3)
    assert pool.mask(torch.device("cpu")).flatten().tolist() == [True] + [False] * 5
    pool.length = 2
    assert pool.mask(torch.device("cpu")).flatten().tolist() == [True] * 3 + [False] * 3
    meta = pool.mask(torch.device("meta"))
    assert meta.device.type == "meta" and meta.shape == (1, 1, 1, 6)
