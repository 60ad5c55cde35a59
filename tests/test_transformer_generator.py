"""Tests for ``seqgan.models.transformer.TransformerGenerator`` (tiny GPT-2 on CPU, no downloads)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from seqgan.models.transformer import TransformerGenerator, TransformerState

VOCAB, MAX_LEN, PAD, BOS, EOS = 50, 12, 0, 1, 2
ATOL = 1e-5


def make_generator(seed: int = 0, dropout: float = 0.1) -> TransformerGenerator:
    torch.manual_seed(seed)
    return TransformerGenerator.from_config(
        VOCAB, MAX_LEN, PAD, BOS, EOS, n_layer=2, n_head=4, n_embd=32, dropout=dropout
    )


def make_inputs(batch: int = 3, length: int = MAX_LEN + 1, seed: int = 1) -> torch.Tensor:
    """``(batch, length)`` inputs starting with BOS, different tokens per row, one row right-padded after EOS."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(3, VOCAB, (batch, length), generator=gen)
    x[:, 0] = BOS
    x[0, 5] = EOS
    x[0, 6:] = PAD
    return x


@pytest.fixture(scope="module")
def gen() -> TransformerGenerator:
    return make_generator().eval()


@pytest.fixture(scope="module")
def inputs() -> torch.Tensor:
    return make_inputs()


def step_all(g: TransformerGenerator, x: torch.Tensor, state: TransformerState | None = None) -> torch.Tensor:
    """Feeds ``x`` ``(B, T)`` one column at a time and stacks the ``(B, T, V)`` logits."""
    state = g.init_state(x.shape[0]) if state is None else state
    out = []
    for t in range(x.shape[1]):
        logits, state = g.step(x[:, t], state)
        out.append(logits)
    return torch.stack(out, dim=1)


def test_attributes_and_shapes(gen: TransformerGenerator, inputs: torch.Tensor) -> None:
    assert (gen.vocab_size, gen.pad_id, gen.bos_id, gen.eos_id) == (VOCAB, PAD, BOS, EOS)
    assert gen.max_positions == MAX_LEN + 1
    assert gen.model.config.n_positions == MAX_LEN + 1
    assert gen.num_parameters == sum(p.numel() for p in gen.parameters()) > 0
    with torch.no_grad():
        logits = gen(inputs)
    assert logits.shape == (*inputs.shape, VOCAB)
    assert logits.dtype == torch.float32
    tokens = inputs[:, 1:]
    assert torch.equal(gen.teacher_inputs(tokens)[:, 0], torch.full((3,), BOS))


def test_step_matches_forward(gen: TransformerGenerator, inputs: torch.Tensor) -> None:
    with torch.no_grad():
        full = gen(inputs)
        stepped = step_all(gen, inputs)
    assert torch.allclose(stepped, full, atol=ATOL)
    # Rows differ, so the comparison is not trivially satisfied by identical rows.
    assert not torch.allclose(full[0], full[1], atol=1e-3)


def test_state_is_not_mutated_by_step(gen: TransformerGenerator, inputs: torch.Tensor) -> None:
    with torch.no_grad():
        state = gen.init_state(3)
        for t in range(4):
            _, state = gen.step(inputs[:, t], state)
        first, after = gen.step(inputs[:, 4], state)
        second, _ = gen.step(inputs[:, 4], state)  # same state continued twice
        assert state.length == 4 and after.length == 5
        assert state.cache.get_seq_length() == 4 and after.cache.get_seq_length() == 5
        assert torch.equal(first, second)


def test_select_state_repeats_rows(gen: TransformerGenerator, inputs: torch.Tensor) -> None:
    B, R, t0 = inputs.shape[0], 3, 6
    with torch.no_grad():
        full = gen(inputs)
        state = gen.init_state(B)
        for t in range(t0):
            _, state = gen.step(inputs[:, t], state)
        index = torch.arange(B).repeat_interleave(R)
        rep = gen.select_state(state, index)
        assert rep.batch_size == B * R and rep.length == t0
        rep_logits = step_all(gen, inputs[index, t0:], rep)
        assert torch.allclose(rep_logits, full[index, t0:], atol=ATOL)
        # Each row run on its own (batch of 1) gives the same next-step logits.
        for b in range(B):
            alone = step_all(gen, inputs[b : b + 1, : t0 + 1])[:, -1]
            assert torch.allclose(rep_logits[b * R : (b + 1) * R, 0], alone.expand(R, -1), atol=ATOL)
        # Picking / reordering rows, and selecting from the empty initial state.
        sub = gen.select_state(state, torch.tensor([2, 0]))
        assert torch.allclose(step_all(gen, inputs[[2, 0], t0:], sub), full[[2, 0], t0:], atol=ATOL)
        empty = gen.select_state(gen.init_state(B), torch.tensor([1, 1]))
        assert empty.batch_size == 2 and empty.cache is None
        # The source state is untouched.
        assert state.batch_size == B and all(layer.keys.shape[0] == B for layer in state.cache.layers)
        with pytest.raises(IndexError):
            gen.select_state(state, torch.tensor([B]))


def test_prefix_states_continue_like_forward(gen: TransformerGenerator, inputs: torch.Tensor) -> None:
    B, T = inputs.shape
    with torch.no_grad():
        full = gen(inputs)
        prefix = gen.prefix_states(inputs)
        assert torch.allclose(prefix.logits, full, atol=ATOL)
        for t in range(T):
            state = prefix.state(t)
            assert state.length == t and state.batch_size == B
            if t > 0:
                assert torch.equal(prefix.next_logits(t), prefix.logits[:, t - 1])
            rest = step_all(gen, inputs[:, t:], state)
            assert torch.allclose(rest, full[:, t:], atol=ATOL), t
        # Rollouts: repeat a prefix state and continue; the prefix cache itself is never cropped in place.
        rep = gen.select_state(prefix.state(4), torch.arange(B).repeat_interleave(2))
        logits, _ = gen.step(inputs[:, 4].repeat_interleave(2), rep)
        assert torch.allclose(logits, full[:, 4].repeat_interleave(2, dim=0), atol=ATOL)
        assert prefix.state(T).cache.get_seq_length() == T
    with pytest.raises(ValueError):
        prefix.state(T + 1)


def test_spec_roundtrip_through_torch_save(gen: TransformerGenerator, inputs: torch.Tensor) -> None:
    spec = gen.spec()
    assert spec["kind"] == "transformer"
    assert (spec["pad_id"], spec["bos_id"], spec["eos_id"]) == (PAD, BOS, EOS)
    buf = io.BytesIO()
    torch.save({"spec": spec, "state_dict": gen.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    assert ckpt["spec"] == spec
    rebuilt = TransformerGenerator.from_spec(ckpt["spec"])
    rebuilt.load_state_dict(ckpt["state_dict"])
    rebuilt.eval()
    assert rebuilt.num_parameters == gen.num_parameters
    assert rebuilt.model.config.n_positions == MAX_LEN + 1
    with torch.no_grad():
        assert torch.equal(rebuilt(inputs), gen(inputs))


def test_from_pretrained_local_dir(gen: TransformerGenerator, inputs: torch.Tensor, tmp_path: Path) -> None:
    gen.model.save_pretrained(tmp_path)
    loaded = TransformerGenerator.from_pretrained(tmp_path).eval()
    assert (loaded.pad_id, loaded.bos_id, loaded.eos_id, loaded.vocab_size) == (PAD, BOS, EOS, VOCAB)
    with torch.no_grad():
        assert torch.allclose(loaded(inputs), gen(inputs), atol=ATOL)
    override = TransformerGenerator.from_pretrained(tmp_path, pad_id=3, bos_id=4, eos_id=5)
    assert (override.pad_id, override.bos_id, override.eos_id) == (3, 4, 5)


def test_from_pretrained_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a local model directory"):
        TransformerGenerator.from_pretrained(tmp_path / "nope")


def test_gradients_reach_all_parameters(inputs: torch.Tensor) -> None:
    g = make_generator(seed=3).train()
    logits = g(inputs)
    targets = torch.cat([inputs[:, 1:], torch.full_like(inputs[:, :1], PAD)], dim=1)
    mask = targets != PAD
    loss = torch.nn.functional.cross_entropy(logits[mask], targets[mask])
    loss.backward()
    missing = [name for name, p in g.named_parameters() if p.grad is None]
    assert not missing, missing
    assert all(torch.isfinite(p.grad).all() for p in g.parameters())


def test_too_long_inputs_rejected(gen: TransformerGenerator) -> None:
    with pytest.raises(ValueError, match="positions"):
        gen(make_inputs(length=MAX_LEN + 2))


def test_right_padding_raises_no_hf_padding_warning(monkeypatch):
    """Padding after EOS is harmless under causal attention: HF's 'input_ids may be padded' check is off for the
    wrapped model (a bare HF model still runs it)."""
    import transformers.modeling_utils as mu

    calls = []
    monkeypatch.setattr(mu.logger, "warning_once", lambda msg, *a, **k: calls.append(msg))
    monkeypatch.setattr(mu.logger, "warning", lambda msg, *a, **k: calls.append(msg))
    g = make_generator()
    inputs = make_inputs()
    inputs[:, -2:] = g.pad_id  # right padding in the last column
    g(inputs)
    g.prefix_states(inputs)
    assert not [m for m in calls if "attention_mask" in str(m)]
    bare = make_generator().model
    for module in bare.modules():  # undo the wrapper's override on a fresh model: HF warns
        module.__dict__.pop("warn_if_padding_and_no_attention_mask", None)
    bare(input_ids=inputs)
    assert [m for m in calls if "attention_mask" in str(m)]


@pytest.mark.parametrize(
    ("model_type", "overrides", "fast"),
    [
        ("gpt2", {}, True),
        ("llama", {"num_key_value_heads": 2}, True),
        ("qwen2", {"num_key_value_heads": 2}, True),
        ("mistral", {"num_key_value_heads": 2, "sliding_window": None}, True),
        ("mistral", {"num_key_value_heads": 2, "sliding_window": 4}, False),  # sliding-window cache layers
    ],
)
def test_fast_decoder_coverage(model_type: str, overrides: dict, fast: bool) -> None:
    """The slot decoder serves GPT-2, Llama, Qwen2 and Mistral-style models; a sliding-window model decodes
    through ``step`` (``fast_decoder`` is None); the model's attention implementation is left as it was."""
    from seqgan.decoding import StepDecoder, make_decoder
    from seqgan.decoding.hf import SlotTransformerDecoder, attn_implementation

    torch.manual_seed(0)
    size = dict(n_layer=2, n_head=4, n_embd=32, dropout=0.0)
    g = TransformerGenerator.from_config(
        VOCAB, MAX_LEN, PAD, BOS, EOS, model_type=model_type, **size, **overrides
    ).eval()
    if fast:
        assert isinstance(g.fast_decoder(1.0), SlotTransformerDecoder)
    else:  # the fallback is reported (once per generator)
        with pytest.warns(RuntimeWarning, match="fast decoding path does not apply"):
            assert g.fast_decoder(1.0) is None
    assert isinstance(make_decoder(g, 1.0), SlotTransformerDecoder if fast else StepDecoder)
    assert attn_implementation(g.model) == "sdpa"


def test_unsupported_transformers_version_is_refused() -> None:
    """The one module that touches transformers internals refuses versions outside its supported range."""
    import subprocess
    import sys

    code = "import transformers; transformers.__version__ = '6.0.0'; import seqgan.decoding.hf"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "ImportError" in result.stderr and ">=5.0,<6" in result.stderr and "6.0.0" in result.stderr
