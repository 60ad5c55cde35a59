"""Conditional generation: pair data, seq2seq generators, context-conditioned rollouts, the trainer, metrics."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from seqgan.config import ConditionalConfig, ConfigError, SeqGANConfig, load_config
from seqgan.data.datasets import DataError
from seqgan.data.pairs import Pairs, chitchat_pairs, encode_pairs, load_pairs, mismatched_indices
from seqgan.data.tokenizers import WordTokenizer
from seqgan.metrics.responses import evaluator_scores, pair_bleu, response_metrics
from seqgan.models import (
    BoundDiscriminator,
    BoundGenerator,
    PairDiscriminator,
    Seq2SeqLSTM,
    Seq2SeqTransformer,
)
from seqgan.rollout import MonteCarloRollout
from seqgan.sampling import sample
from seqgan.trainers import ConditionalTrainer
from seqgan.trainers.conditional import pair_negatives

PAD, BOS, EOS = 0, 1, 2


# ---------------------------------------------------------------------------------------------- data
def test_tsv_loader_and_errors(tmp_path):
    f = tmp_path / "p.tsv"
    f.write_text("hi there\thello\n\nhow are you?\tfine thanks\n", encoding="utf-8")
    pairs = load_pairs(f)
    assert pairs.contexts == ["hi there", "how are you?"] and pairs.responses == ["hello", "fine thanks"]
    f.write_text("ok\tfine\nno tab here\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"p\.tsv: line 2 has 0 TABs"):
        load_pairs(f)
    f.write_text("ok\t \n", encoding="utf-8")
    with pytest.raises(DataError, match="line 1 has an empty response"):
        load_pairs(f)


def test_chatterbot_yaml_pairs_are_consecutive_utterances(tmp_path):
    (tmp_path / "a.yml").write_text(
        "categories: [x]\nconversations:\n- - Hello\n  - Hi\n  - How are   you?\n- just a string\n- - 42\n  - yes\n",
        encoding="utf-8",
    )
    pairs = load_pairs(tmp_path)  # a folder of YAML files
    assert list(zip(pairs.contexts, pairs.responses, strict=True)) == [
        ("Hello", "Hi"),
        ("Hi", "How are you?"),
        ("42", "yes"),
    ]
    (tmp_path / "b.yml").write_text("- not a mapping\n", encoding="utf-8")
    with pytest.raises(DataError, match="b.yml: expected a mapping"):
        load_pairs(tmp_path)


def test_shipped_pairs_load(root):
    train = load_pairs(root / "data/chat/chatterbot_train.tsv")
    test = load_pairs(root / "data/chat/chatterbot_test.tsv")
    assert (len(train), len(test)) == (943, 104)
    assert len(set(zip(train.contexts, train.responses, strict=True))) == 943  # deduplicated


def test_encode_pairs_keeps_the_end_of_long_contexts():
    tok = WordTokenizer.train(["a b c d e f", "x y"], split="whitespace")
    enc = encode_pairs(Pairs(["a b c d e f", "x"], ["x y", "a b c d e f"]), tok, max_len=4, context_max_len=3)
    ids = tok.encode
    assert enc.contexts[0].tolist() == ids("d e f")  # last 3 tokens, no room for EOS
    assert enc.contexts[1].tolist() == ids("x") + [tok.eos_id, tok.pad_id]
    assert enc.responses[0].tolist() == ids("x y") + [tok.eos_id, tok.pad_id]
    assert enc.responses[1].tolist() == ids("a b c d")  # truncated to max_len
    assert (enc.truncated_contexts, enc.truncated_responses) == (1, 1)
    dropped = encode_pairs(Pairs(["a", "x"], ["x y", "a b c d e f"]), tok, 4, 3, overlong="drop")
    assert dropped.kept == [0] and dropped.dropped == 1


def test_mismatched_negatives_never_pair_a_context_with_its_own_response():
    # contexts 0 and 1 are the same text with two answers; responses 2 and 3 are identical strings
    c = torch.tensor([[5, 2], [5, 2], [6, 2], [7, 2], [8, 2], [9, 2]])
    r = torch.tensor([[10, 2], [11, 2], [12, 2], [12, 2], [13, 2], [14, 2]])
    own = {0: {10, 11}, 1: {10, 11}, 2: {12}, 3: {12}, 4: {13}, 5: {14}}
    g = torch.Generator().manual_seed(0)
    index = torch.arange(6).repeat(200)
    j = mismatched_indices(c, r, index, g)
    for i, jj in zip(index.tolist(), j.tolist(), strict=True):
        assert jj != i and int(r[jj, 0]) not in own[i]
    # every allowed response does occur (uniform over the allowed pool, not a fixed choice)
    assert {int(r[jj, 0]) for jj in j[index == 0].tolist()} == {12, 13, 14}
    with pytest.raises(ValueError, match="no mismatched response"):
        mismatched_indices(c[:2], r[:2], torch.tensor([0]), g)


def test_chitchat_preparation_splits_by_conversation(tmp_path):
    def conv(*turns):
        return {"messages": [[{"text": t} for t in turn] for turn in turns]}

    data = {
        f"c{i}": conv(["hi", f"there {i}"], ["yo"], [" ".join(["w"] * 30)], ["ok  then"]) for i in range(40)
    }
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    splits = chitchat_pairs(path)
    # 40 conversations: the last 2 (40 // 20) are test; the 30-word turn drops the two pairs that touch it
    assert (len(splits["train"]), len(splits["test"])) == (38, 2)
    assert splits["train"].contexts[0] == "hi there 0" and splits["train"].responses[0] == "yo"
    assert splits["test"].contexts == ["hi there 38", "hi there 39"]


def test_seq2seq_config_needs_pairs():
    with pytest.raises(ConfigError, match="set conditional.train"):
        load_config(None, ["generator.kind=seq2seq"])
    with pytest.raises(ConfigError, match="mismatch_fraction"):
        load_config(None, ["conditional.mismatch_fraction=1.5"])


# ---------------------------------------------------------------------------------------------- models
def _contexts() -> torch.Tensor:
    return torch.tensor([[5, 6, 7, EOS, PAD], [8, EOS, PAD, PAD, PAD], [9, 9, 5, 6, EOS]])


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_step_matches_teacher_forcing_and_ignores_context_padding(kind):
    torch.manual_seed(0)
    model = Seq2SeqLSTM(12, 8, 8) if kind == "lstm" else Seq2SeqTransformer(12, 16, 1, 2, 8)
    model.eval()
    ctx = _contexts()
    inputs = torch.tensor([[BOS, 4, 5, 6], [BOS, 7, 3, 3], [BOS, 10, 11, 4]])
    full = model(ctx, inputs)  # (3, 4, V)
    state = model.init_state(ctx)
    for t in range(inputs.shape[1]):
        logits, state = model.step(inputs[:, t], state)
        torch.testing.assert_close(logits, full[:, t], atol=1e-5, rtol=1e-5)
    wider = torch.cat([ctx, torch.full((3, 3), PAD)], dim=1)  # more padding: same outputs
    torch.testing.assert_close(model(wider, inputs), full, atol=1e-5, rtol=1e-5)
    # select_state repeats rows with their contexts
    s0 = model.init_state(ctx)
    _, s1 = model.step(inputs[:, 0], s0)
    rep = model.select_state(s1, torch.tensor([2, 2, 0]))
    logits, _ = model.step(inputs[[2, 2, 0], 1], rep)
    torch.testing.assert_close(logits, full[[2, 2, 0], 1], atol=1e-5, rtol=1e-5)


def test_bound_generator_masked_logits_and_nll_match_forward():
    torch.manual_seed(0)
    model = Seq2SeqLSTM(12, 8, 8)
    bound = BoundGenerator(model, _contexts())
    targets = torch.tensor([[4, 5, EOS, PAD], [7, EOS, PAD, PAD], [10, 11, 4, 6]])
    inputs, mask = bound.teacher_inputs(targets), targets != PAD
    torch.testing.assert_close(bound.masked_logits(inputs, mask), bound(inputs)[mask])
    from seqgan.losses import sequence_nll

    total, count = sequence_nll(bound, targets)
    logp = torch.log_softmax(model(_contexts(), inputs), dim=-1).gather(2, targets[:, :, None]).squeeze(2)
    assert count == 9
    torch.testing.assert_close(total, -logp[mask].sum())


def test_bound_generator_refuses_chunked_rollouts():
    torch.manual_seed(0)
    model = Seq2SeqLSTM(12, 8, 8)
    bound = BoundGenerator(model, _contexts())
    assert bound.init_state(3)[0].shape == (1, 3, 8)
    assert BoundGenerator(model, _contexts()[:1]).init_state(5)[2].shape[0] == 5  # one context for every row
    with pytest.raises(ValueError, match="decoded in one piece"):
        bound.init_state(2)
    disc = BoundDiscriminator(PairDiscriminator(12, 4, [1, 2], [3, 3], hidden=4), _contexts())
    tokens = sample(bound, 3, 4).tokens
    rollout = MonteCarloRollout(bound, update_rate=0.0, max_rows=5)  # 1 sample per chunk
    with pytest.raises(ValueError, match="decoded in one piece"):
        rollout(tokens, disc, 2)


# ---------------------------------------------------------------------------------------------- rollouts
class ContextWordDiscriminator(nn.Module):
    """Hand-built D(c, x): +10 if the context holds ``word`` and (when ``match_first``) the response starts with
    the context's first token, else -10."""

    def __init__(self, word: int, match_first: bool) -> None:
        super().__init__()
        self.word, self.match_first = word, match_first
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, contexts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        ok = (contexts == self.word).any(dim=1)
        if self.match_first:
            ok = ok & (responses[:, 0] == contexts[:, 0])
        return torch.where(ok, 10.0, -10.0)


@pytest.mark.parametrize("match_first", [False, True])
@pytest.mark.parametrize("update_rate", [0.0, 0.8])
def test_rollout_rewards_are_conditioned_on_the_context(match_first, update_rate):
    torch.manual_seed(0)
    vocab = 8
    model = Seq2SeqLSTM(vocab, 8, 8)
    # 12 contexts: half contain word 7; first tokens 3..6 so that some responses start with them
    ctx = torch.tensor([[3 + i % 4, 7 if i % 2 else 5, EOS] for i in range(12)])
    bound = BoundGenerator(model, ctx)
    rollout = MonteCarloRollout(bound, update_rate=update_rate, max_rows=None, score_batch=7)
    if update_rate:
        rollout.policy.rebind(ctx)
    disc = BoundDiscriminator(ContextWordDiscriminator(7, match_first), ctx)
    g = torch.Generator().manual_seed(1)
    samples = sample(bound, 12, 6, rng=g)
    tokens, mask = samples.tokens, samples.mask
    rewards = rollout(tokens, disc, num_rollouts=3, rng=g)
    expect = (ctx == 7).any(dim=1)
    if match_first:
        expect = expect & (tokens[:, 0] == ctx[:, 0])
    assert bool(expect.any()) and bool((~expect).any())
    target = torch.where(expect, torch.sigmoid(torch.tensor(10.0)), torch.sigmoid(torch.tensor(-10.0)))
    full = target[:, None].expand_as(rewards)
    torch.testing.assert_close(rewards[mask], full[mask])
    assert bool((rewards[~mask] == 0).all())


# ---------------------------------------------------------------------------------------------- trainer
def _trainer(tf_every=1, mismatch=0.5, seed=0, kind="lstm"):
    torch.manual_seed(seed)
    vocab = 16
    g = torch.Generator().manual_seed(seed)
    n = 24
    contexts = torch.cat([torch.randint(3, vocab, (n, 4), generator=g), torch.full((n, 1), EOS)], dim=1)
    responses = torch.cat([torch.randint(3, vocab, (n, 3), generator=g), torch.full((n, 1), EOS)], dim=1)
    model = Seq2SeqLSTM(vocab, 8, 8) if kind == "lstm" else Seq2SeqTransformer(vocab, 8, 1, 2, 8)
    disc = PairDiscriminator(vocab, 8, [1, 2], [4, 4], dropout=0.0, hidden=8)
    cfg = SeqGANConfig(
        batch_size=6,
        num_rollouts=2,
        g_lr=1e-2,
        d_lr=1e-2,
        d_steps=1,
        d_epochs=1,
        d_num_negatives=12,
        d_batch_size=6,
    )
    conditional = ConditionalConfig(mismatch_fraction=mismatch, teacher_forcing_every=tf_every)
    rng, data_rng = torch.Generator().manual_seed(seed + 1), torch.Generator().manual_seed(seed + 2)
    trainer = ConditionalTrainer(
        model, disc, cfg, conditional, contexts, responses, max_len=5, rng=rng, data_rng=data_rng
    )
    return trainer, model, disc


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before: dict, module: nn.Module) -> set[str]:
    return {k for k, v in module.state_dict().items() if not torch.equal(before[k], v)}


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_generator_step_updates_the_generator_only(kind):
    trainer, model, disc = _trainer(tf_every=2, kind=kind)
    g0, d0, p0 = _snapshot(model), _snapshot(disc), _snapshot(trainer.rollout.policy)
    m1 = trainer.generator_step()
    assert _changed(g0, model) == set(g0)  # every generator parameter moved (attention included)
    assert not _changed(d0, disc)
    assert _changed(p0, trainer.rollout.policy)  # the lagged policy moved towards the generator ...
    policy = trainer.rollout.policy.model.state_dict()
    assert not torch.equal(policy["proj.weight"], model.state_dict()["proj.weight"])  # ... but lags it
    assert "generator/teacher_forcing_nll" not in m1  # every 2nd step only
    m2 = trainer.generator_step()
    assert math.isfinite(m2["generator/teacher_forcing_nll"]) and 0 < m2["rollout/reward_mean"] < 1


def test_teacher_forcing_is_an_mle_step_on_the_human_responses():
    # with teacher forcing and without, from the same state: the parameters differ by exactly one MLE update
    trainer_tf, model_tf, _ = _trainer(tf_every=1)
    trainer_no, model_no, _ = _trainer(tf_every=0)
    index = torch.arange(6)
    trainer_tf.generator_step(index)
    trainer_no.generator_step(index)
    diff = _changed(_snapshot(model_no), model_tf)
    assert diff == set(_snapshot(model_no))
    # replaying the MLE step on the no-teacher-forcing trainer reproduces the teacher-forced parameters
    from seqgan.trainers.steps import mle_step

    trainer_no.bind(trainer_no.contexts[index])
    mle_step(
        trainer_no.bound, trainer_no.g_optimizer, trainer_no.responses[index], trainer_no.config.grad_clip
    )
    for k, v in model_tf.state_dict().items():
        torch.testing.assert_close(model_no.state_dict()[k], v)


def test_discriminator_step_updates_the_discriminator_only_and_mixes_negatives():
    trainer, model, disc = _trainer(mismatch=0.5)
    g0, d0 = _snapshot(model), _snapshot(disc)
    m = trainer.discriminator_step(torch.arange(6))
    assert not _changed(g0, model)
    assert _changed(d0, disc) == set(d0)
    assert {"discriminator/acc_mismatch", "discriminator/acc_generated"} <= set(m)
    ctx, neg, is_mis = pair_negatives(
        model, trainer.contexts, trainer.responses, torch.arange(8), 0.25, 5, torch.Generator().manual_seed(0)
    )
    assert is_mis.tolist() == [True, True] + [False] * 6
    assert torch.equal(ctx, trainer.contexts[:8])
    for i in range(2):  # the mismatched ones are human responses of other contexts
        assert any(torch.equal(neg[i], r) for r in trainer.responses) and not torch.equal(
            neg[i], trainer.responses[i]
        )


def test_train_epoch_and_state_roundtrip_are_deterministic():
    a, _, _ = _trainer(seed=3)
    m = a.train_epoch()
    assert {"rollout/reward_mean", "discriminator/loss", "time/generator_s"} <= set(m)
    b, model_b, disc_b = _trainer(seed=3)
    b.train_epoch()
    for k, v in a.generator.state_dict().items():
        assert torch.equal(v, model_b.state_dict()[k])
    state = a.state_dict()
    c, model_c, _ = _trainer(seed=4)
    c.load_state_dict(state)
    assert torch.equal(c.data_rng.get_state(), a.data_rng.get_state())
    for k, v in a.generator.state_dict().items():
        assert torch.equal(v, model_c.state_dict()[k])


# ---------------------------------------------------------------------------------------------- metrics
def test_pair_bleu_matches_nltk_per_reference():
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    hyps = [["i", "am", "fine"], ["hello", "there", "friend", "ok"], ["no"]]
    refs = [["i", "am", "fine", "thanks"], ["hi", "there", "friend"], ["yes", "indeed"]]
    got = pair_bleu(hyps, refs, orders=(1, 2, 4))
    sm = SmoothingFunction().method1
    for n in (1, 2, 4):
        want = (
            sum(
                sentence_bleu([r], h, weights=(1 / n,) * n, smoothing_function=sm)
                for h, r in zip(hyps, refs, strict=True)
            )
            / 3
        )
        assert got[n] == pytest.approx(want, abs=1e-12)
    m = response_metrics([["a"], ["a"], ["a", "b"], ["c"]], [["a"], ["b"], ["c"], ["d"]], top_k=1)
    assert m["generic_share"] == 0.5 and m["avg_len"] == 1.25 and m["distinct1"] == 3 / 5


def test_evaluator_scores_hand_built():
    ev = ContextWordDiscriminator(7, match_first=False)  # "human" iff the context holds word 7
    ctx = torch.tensor([[7, EOS], [7, EOS], [5, EOS], [5, EOS]])
    x = torch.tensor([[3, EOS]] * 4)
    s = evaluator_scores(ev, ctx, x, x)
    assert s == {"adversarial_success": 0.5, "evaluator_acc_human": 0.5, "evaluator_error": 0.5}
