"""Any Hugging Face causal LM with a key / value cache as a generator: the fast decoding path on tiny random Llama
and GPT-2 models against the reference ``step`` path, its fallback, and tokenizers whose padding is their EOS."""

from __future__ import annotations

import warnings

import pytest
import torch

from seqgan.decoding import StepDecoder, make_decoder
from seqgan.models.cnn_scorer import CNNScorer
from seqgan.models.discriminator import CNNDiscriminator
from seqgan.models.pair_discriminator import PairDiscriminator
from seqgan.models.transformer import TransformerGenerator
from seqgan.rollout import MonteCarloRollout
from seqgan.sampling import sample

VOCAB, MAX_LEN = 24, 10
FAMILIES = {  # the two families the issue names; Llama with grouped-query attention
    "gpt2": {},
    "llama": {"num_key_value_heads": 2},
}


def tiny(model_type: str, seed: int = 0, pad: int = 0, bos: int = 1, eos: int = 2) -> TransformerGenerator:
    torch.manual_seed(seed)
    return TransformerGenerator.from_config(
        VOCAB, MAX_LEN, pad, bos, eos, n_layer=2, n_head=4, n_embd=32, dropout=0.0, model_type=model_type,
        **FAMILIES[model_type],
    ).eval()  # fmt: skip


def rng(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_slot_decoder_matches_step_for_each_family(family):
    """The fast decoder's features through the LM head equal ``step``'s logits while rows are copied and
    dropped, for GPT-2 and Llama alike (nothing recognises a model by its class)."""
    from seqgan.decoding.hf import SlotTransformerDecoder

    gen = tiny(family, seed=3)
    decoder = make_decoder(gen, 1.0)
    assert isinstance(decoder, SlotTransformerDecoder)
    head = gen.model.get_output_embeddings()
    g = rng(1)
    with torch.no_grad(), decoder:
        state, ref = decoder.init(3, capacity=12, seq_len=MAX_LEN), gen.init_state(3)
        for s in range(6):
            tokens = torch.randint(3, VOCAB, (state.pool.n,), generator=g)
            feats, state = decoder.step(tokens, state)
            logits, ref = gen.step(tokens, ref)
            torch.testing.assert_close(head(feats), logits, rtol=1e-5, atol=1e-5)
            rows = state.pool.n
            if s == 1:
                src = torch.tensor([2, 0])
                state = decoder.rearrange(state, rows, None, src)
                ref = gen.select_state(ref, torch.cat([torch.arange(rows), src]))
            elif s == 3:
                keep, src = torch.tensor([1, 3, 4]), torch.tensor([0])
                state = decoder.rearrange(state, rows, keep, src)
                ref = gen.select_state(ref, torch.cat([keep, src]))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_fast_sampling_log_probs_equal_teacher_forcing(family):
    gen = tiny(family, seed=4)
    with torch.no_grad():
        gen.model.get_output_embeddings().weight[2] *= 0  # EOS: logit 0, drawn often enough to end rows early
    out = sample(gen, 48, MAX_LEN, temperature=0.8, rng=rng(2))
    assert out.lengths.min() < MAX_LEN
    with torch.no_grad():
        logits = gen(gen.teacher_inputs(out.tokens)) / 0.8
        logits[..., gen.never_sample] = float("-inf")
        ref = torch.log_softmax(logits, -1).gather(2, out.tokens[..., None]).squeeze(-1)
    torch.testing.assert_close(out.log_probs[out.mask], ref[out.mask], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_fast_and_reference_rollouts_agree(family):
    """Rollout rewards through the slot decoder and CNN scorer equal those of ``step`` and the module on the
    same random stream (draws can differ only at CDF boundaries, by float rounding)."""
    gen = tiny(family, seed=5)
    disc = CNNDiscriminator(VOCAB, embed_dim=8, filter_sizes=(2, 3), num_filters=(6, 5), pad_id=0).eval()
    tokens = sample(gen, 6, 8, rng=rng(3)).tokens
    fast = MonteCarloRollout(gen, update_rate=0.0, fast=True, parts=1)(tokens, disc, 40, rng=rng(4))
    slow = MonteCarloRollout(gen, update_rate=0.0, fast=False)(tokens, disc, 40, rng=rng(4))
    torch.testing.assert_close(fast, slow, rtol=0, atol=2e-2)
    assert float(fast.std()) > 0


def test_a_saved_llama_reloads_with_equal_logits(tmp_path):
    gen = tiny("llama", seed=6)
    gen.model.save_pretrained(tmp_path)
    loaded = TransformerGenerator.from_pretrained(tmp_path).eval()
    x = torch.randint(3, VOCAB, (2, MAX_LEN + 1))
    x[:, 0] = 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), gen(x), rtol=0, atol=1e-6)
    assert loaded.fast_decoder(1.0) is not None


def test_fallback_is_reported_once_and_decodes_through_step():
    torch.manual_seed(0)
    gen = TransformerGenerator.from_config(
        VOCAB, MAX_LEN, 0, 1, 2, n_layer=1, n_head=2, n_embd=16, dropout=0.0, model_type="mistral",
        num_key_value_heads=2, sliding_window=4,
    ).eval()  # fmt: skip
    with pytest.warns(RuntimeWarning, match="sliding-window") as record:
        assert isinstance(make_decoder(gen, 1.0), StepDecoder)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            sample(gen, 4, 5, rng=rng(0))
            make_decoder(gen, 1.0)
    assert len([w for w in record if "fast decoding path" in str(w.message)]) == 1


# ---------------------------------------------------------------------------------------------- pad = bos = eos
EOS = 2  # GPT-2 style: padding, BOS and EOS are one id


def eos_disc(**kwargs) -> CNNDiscriminator:
    torch.manual_seed(0)
    return CNNDiscriminator(
        VOCAB, embed_dim=8, filter_sizes=(2, 3), num_filters=(5, 4), dropout=0.0, pad_id=EOS, eos_id=EOS,
        **kwargs,
    ).eval()  # fmt: skip


def test_padding_that_is_eos_keeps_the_eos_visible():
    d = eos_disc()
    ended = torch.tensor([[5, 6, EOS, EOS, EOS, EOS]])  # "y1 y2 EOS" padded with EOS ids
    assert d.visible(ended).tolist() == [[5, 6, EOS, VOCAB, VOCAB, VOCAB]]
    assert d.lengths(ended).tolist() == [3]
    assert d.lengths(torch.tensor([[5, 6, 7, 8, 9, 10]])).tolist() == [6]  # cut at max_len: no EOS
    with torch.no_grad():
        assert d.embedding.weight[EOS].abs().sum() > 0  # EOS has a real embedding
        assert d.embedding.weight[VOCAB].abs().sum() == 0  # the discriminator's own padding row
        # the EOS changes the score, and trailing padding does not
        cut = d(torch.tensor([[5, 6, VOCAB - 1, VOCAB - 1, VOCAB - 1, VOCAB - 1]]))
        assert not torch.allclose(d(ended), d(ended[:, :2].repeat(1, 3)))
        torch.testing.assert_close(d(ended), d(torch.cat([ended, torch.full((1, 4), EOS)], 1)))
        assert torch.isfinite(cut).all()
    # EOS trains, the padding row does not
    d.train()
    d(torch.cat([ended, torch.tensor([[7, 8, 9, EOS, EOS, EOS]])])).sum().backward()
    assert d.embedding.weight.grad[EOS].abs().sum() > 0 and d.embedding.weight.grad[VOCAB].abs().sum() == 0
    # the spec rebuilds it (one more embedding row than the vocabulary)
    twin = CNNDiscriminator.from_spec(d.spec())
    twin.load_state_dict(d.state_dict())
    assert d.spec()["eos_id"] == EOS and "eos_id" not in CNNDiscriminator(VOCAB, pad_id=0, eos_id=2).spec()


def test_cnn_scorer_is_exact_when_padding_is_eos():
    d = eos_disc()
    tokens = torch.randint(3, VOCAB, (4, 9), generator=rng(0))
    tokens[1, 4], tokens[1, 5:] = EOS, EOS
    t = torch.tensor([1, 2, 2, 4, 7, 8])
    b = torch.tensor([0, 1, 3, 2, 0, 3])
    seqs = torch.randint(3, VOCAB, (6, 9), generator=rng(1))
    seqs = torch.where(torch.arange(9)[None, :] < t[:, None], tokens[b], seqs)
    seqs[2, 5:] = EOS  # a completion that ended
    lengths = d.lengths(tokens)
    with torch.no_grad():
        scorer = CNNScorer.create(d, tokens, lengths)
        assert scorer is not None
        torch.testing.assert_close(scorer(seqs, b, t), d(seqs), rtol=1e-5, atol=1e-5)


def test_rollouts_and_pair_discriminator_with_padding_that_is_eos():
    gen = tiny("gpt2", seed=7, pad=EOS, bos=EOS, eos=EOS)
    assert gen.never_sample == []  # nothing to ban: the one special id is EOS
    d = eos_disc()
    tokens = sample(gen, 4, 8, rng=rng(5)).tokens
    fast = MonteCarloRollout(gen, update_rate=0.0, parts=1)(tokens, d, 30, rng=rng(6))
    slow = MonteCarloRollout(gen, update_rate=0.0, fast=False)(tokens, d, 30, rng=rng(6))
    torch.testing.assert_close(fast, slow, rtol=0, atol=2e-2)
    pair = PairDiscriminator(VOCAB, 8, (2,), (4,), pad_id=EOS, eos_id=EOS).eval()
    ctx = torch.tensor([[5, 6, EOS, EOS], [5, 6, 7, 8]])
    assert pair.context_encoder.lengths(ctx).tolist() == [3, 4]
    twin = PairDiscriminator.from_spec(pair.spec()).eval()
    twin.load_state_dict(pair.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(twin(ctx, tokens[:2]), pair(ctx, tokens[:2]))
