import itertools
import subprocess
import sys

import pytest
import torch

from seqgan.decoding import draw, filter_logits
from seqgan.models import LSTMGenerator
from seqgan.sampling import sample


@pytest.fixture
def gen():
    torch.manual_seed(0)
    return LSTMGenerator(12, 8, 8, pad_id=0, bos_id=1, eos_id=2)


def _rng(seed):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def test_same_seed_same_samples(gen):
    a = sample(gen, 16, 10, rng=_rng(3))
    b = sample(gen, 16, 10, rng=_rng(3))
    c = sample(gen, 16, 10, rng=_rng(4))
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.log_probs, b.log_probs)
    assert not torch.equal(a.tokens, c.tokens)
    chunked = sample(gen, 16, 10, rng=_rng(3), batch_size=5)
    assert torch.equal(sample(gen, 16, 10, rng=_rng(3), batch_size=5).tokens, chunked.tokens)


def test_never_samples_pad_or_bos(gen):
    with torch.no_grad():
        gen.proj.bias[:2] = 5.0  # an untrained model may put mass on PAD and BOS
    s = sample(gen, 64, 8, rng=_rng(0))
    real = s.tokens[s.mask]
    assert not ((real == gen.pad_id) | (real == gen.bos_id)).any()


def test_max_len_eos_and_mask(gen):
    with torch.no_grad():
        gen.proj.bias[2] = 3.0  # make EOS likely so rows end at different places
    s = sample(gen, 64, 7, rng=_rng(0))
    assert s.tokens.shape == (64, 7)
    for row, m in zip(s.tokens.tolist(), s.mask.tolist(), strict=False):
        if 2 in row:
            end = row.index(2)
            assert all(m[: end + 1]) and not any(m[end + 1 :])
            assert all(t == 0 for t in row[end + 1 :])  # padding after EOS
        else:
            assert all(m)
    assert (s.log_probs[~s.mask] == 0).all() and (s.log_probs[s.mask] < 0).all()
    assert s.lengths.max() <= 7


def test_log_probs_match_teacher_forcing(gen):
    s = sample(gen, 8, 6, rng=_rng(1))
    with torch.no_grad():  # the sampling distribution excludes PAD and BOS
        logits = gen(gen.teacher_inputs(s.tokens))
        logits[..., gen.never_sample] = float("-inf")
        logp = torch.log_softmax(logits, -1)
    chosen = logp.gather(2, s.tokens[..., None]).squeeze(-1)
    torch.testing.assert_close(chosen[s.mask], s.log_probs[s.mask], atol=1e-5, rtol=1e-5)


def test_top_k_top_p_filtering():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.7)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.85)).tolist() == [[False, False, False, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.1)).tolist() == [[False, True, True, True]]


def test_top_k_sampling_only_draws_top_tokens(gen):
    s = sample(gen, 200, 5, top_k=1, rng=_rng(0))
    again = sample(gen, 200, 5, top_k=1, rng=_rng(9))
    assert torch.equal(s.tokens, again.tokens)  # top-1 is greedy
    assert torch.allclose(s.log_probs[s.mask], torch.zeros(()))


def test_inverse_cdf_draw_matches_distribution():
    probs = torch.tensor([[0.1, 0.0, 0.6, 0.3]]).repeat(40000, 1)
    counts = torch.bincount(draw(probs, _rng(0)), minlength=4).float() / 40000
    assert counts[1] == 0
    torch.testing.assert_close(counts, probs[0], atol=0.01, rtol=0)


def test_temperature_must_be_positive(gen):
    with pytest.raises(ValueError, match="temperature"):
        sample(gen, 2, 3, temperature=0.0)


def _transformer():
    from seqgan.models.transformer import TransformerGenerator

    torch.manual_seed(0)
    return TransformerGenerator.from_config(12, 8, 0, 1, 2, n_layer=1, n_head=2, n_embd=16, dropout=0.0)


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_fused_path_is_used_and_log_probs_match_teacher_forcing(gen, kind):
    from seqgan.sampling import _fast_decoder

    model = gen if kind == "lstm" else _transformer()
    assert _fast_decoder(model, 0.7, 0, 1.0) is not None  # plain generators take the fused path
    assert _fast_decoder(model, 0.7, 3, 1.0) is None  # filtering takes the reference path
    if kind == "lstm":  # EOS likely: rows leave early (the small transformer draws it about 1 in 10 steps)
        with torch.no_grad():
            model.proj.bias[2] = 2.0
    s = sample(model, 64, 8, temperature=0.7, rng=_rng(2), batch_size=40)
    lengths = s.lengths
    assert lengths.min() < 8 and (lengths < lengths.max()).any()  # rows finished at different steps
    with torch.no_grad():
        logits = model(model.teacher_inputs(s.tokens)) / 0.7
        logits[..., model.never_sample] = float("-inf")
        logp = torch.log_softmax(logits, -1).gather(2, s.tokens[..., None]).squeeze(-1)
    torch.testing.assert_close(s.log_probs[s.mask], logp[s.mask], atol=1e-5, rtol=1e-5)
    assert (s.log_probs[~s.mask] == 0).all() and (s.tokens[~s.mask] == model.pad_id).all()


def test_fused_and_reference_paths_draw_from_the_same_distribution(gen):
    from seqgan.sampling import _sample_batch

    n = 20000
    fused = sample(gen, n, 2, temperature=1.3, rng=_rng(0))
    with torch.no_grad():
        gen.eval()
        reference = _sample_batch(gen, n, 2, 1.3, 0, 1.0, _rng(1))
        logits = gen(torch.full((1, 1), gen.bos_id))[0, 0] / 1.3
        logits[gen.never_sample] = float("-inf")
        probs = logits.softmax(-1)
    sigma = (probs * (1 - probs) / n).sqrt()
    for s in (fused, reference):
        freq = torch.bincount(s.tokens[:, 0], minlength=12).float() / n
        assert ((freq - probs).abs() <= 5 * sigma + 1e-6).all(), (freq, probs)
    # second tokens: the two paths agree on their joint first-two-token frequencies
    joint = [
        torch.bincount(s.tokens[:, 0] * 12 + s.tokens[:, 1], minlength=144).float() / n
        for s in (fused, reference)
    ]
    assert (joint[0] - joint[1]).abs().max() < 0.012


@pytest.mark.parametrize(
    "order",
    list(itertools.permutations(["seqgan.decoding.samplers", "seqgan.sampling", "seqgan.rollout"])),
    ids="-".join,
)
def test_modules_import_in_any_order_without_transformers(order):
    """No import cycle between the decoding engine, sampling and the rollout: each order works in a fresh
    interpreter, and none of them imports ``transformers``."""
    code = "; ".join(f"import {name}" for name in order)
    code += "; import sys; assert 'transformers' not in sys.modules, 'transformers imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
