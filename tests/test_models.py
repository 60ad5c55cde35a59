import pytest
import torch

from seqgan.losses import sequence_nll
from seqgan.models import CNNDiscriminator, Generator, LSTMGenerator, generator_class
from seqgan.models.transformer import TransformerGenerator


def _generators():
    torch.manual_seed(0)
    lstm = LSTMGenerator(30, embed_dim=8, hidden_dim=12, num_layers=2, pad_id=0, bos_id=1, eos_id=2)
    tr = TransformerGenerator.from_config(
        30, 10, pad_id=0, bos_id=1, eos_id=2, n_layer=2, n_head=2, n_embd=16
    )
    return [lstm, tr]


@pytest.mark.parametrize("gen", _generators(), ids=["lstm", "transformer"])
def test_step_matches_forward(gen):
    gen.eval()
    inputs = torch.randint(3, 30, (4, 9))
    inputs[:, 0] = gen.bos_id
    full = gen(inputs)  # (B, T, V)
    state = gen.init_state(4)
    for t in range(inputs.shape[1]):
        logits, state = gen.step(inputs[:, t], state)
        torch.testing.assert_close(logits, full[:, t], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("gen", _generators(), ids=["lstm", "transformer"])
def test_spec_round_trip(gen, tmp_path):
    gen.eval()
    torch.save({"spec": gen.spec(), "sd": gen.state_dict()}, tmp_path / "g.pt")
    blob = torch.load(tmp_path / "g.pt", weights_only=True)
    again = generator_class(blob["spec"]["kind"]).from_spec(blob["spec"])
    again.load_state_dict(blob["sd"])
    again.eval()
    x = torch.randint(0, 30, (2, 6))
    torch.testing.assert_close(again(x), gen(x))


class FixedLogits(Generator):
    """A generator whose teacher-forced logits are given."""

    def __init__(self, logits, eos_id):
        super().__init__()
        self.logits, self.vocab_size = logits, logits.shape[-1]
        self.pad_id, self.bos_id, self.eos_id = 0, 1, eos_id

    def forward(self, inputs):
        return self.logits[:, : inputs.shape[1]]


def test_sequence_nll_ignores_padding_hand_computed():
    # two rows; the second ends at its first token (EOS = 0), so its last position is padding and must not count
    logits = torch.zeros(2, 2, 3)
    logits[0, 0] = torch.tensor([0.0, 0.0, 2.0])
    logits[1, 1] = torch.tensor([100.0, -100.0, 5.0])  # garbage at a padded position
    targets = torch.tensor([[2, 1], [0, 0]])
    import math

    p = math.exp(2) / (2 + math.exp(2))
    expected = (-math.log(p) + math.log(3) + math.log(3)) / 3
    total, count = sequence_nll(FixedLogits(logits, eos_id=0), targets)
    assert count == 3
    assert (total / count).item() == pytest.approx(expected, rel=1e-6)


def test_discriminator_shapes_and_soft_inputs():
    torch.manual_seed(0)
    d = CNNDiscriminator(20, embed_dim=8, filter_sizes=[2, 3, 5], num_filters=[4, 5, 6], dropout=0.0)
    d.eval()
    tokens = torch.randint(1, 20, (7, 12))  # no padding id inside
    out = d(tokens)
    assert out.shape == (7,)
    one_hot = torch.nn.functional.one_hot(tokens, 20).float()
    torch.testing.assert_close(d(one_hot), out)  # one-hot vectors read exactly like ids
    soft = torch.softmax(torch.randn(7, 12, 20, requires_grad=True), -1)
    d(soft).sum().backward()  # soft inputs are differentiable
    assert d(torch.randint(0, 20, (3, 2))).shape == (3,)  # shorter than the widest filter
    assert sum(d.num_filters) == d.out.in_features
    with pytest.raises(ValueError, match="expected"):
        d(torch.randn(2, 3, 5))


def test_discriminator_padding_embedding_is_zero():
    d = CNNDiscriminator(10, embed_dim=4, filter_sizes=[2], num_filters=[3], pad_id=0)
    assert d.embedding.weight[0].abs().sum() == 0


@pytest.mark.parametrize("gen", _generators(), ids=["lstm", "transformer"])
def test_masked_logits_equal_full_forward(gen):
    gen.eval()
    inputs = torch.randint(3, 30, (3, 7))
    mask = torch.rand(3, 7) > 0.4
    torch.testing.assert_close(gen.masked_logits(inputs, mask), gen(inputs)[mask], atol=1e-5, rtol=1e-5)


def test_mle_step_ignores_trailing_padding():
    from seqgan.trainers.steps import mle_step

    torch.manual_seed(0)
    tokens = torch.tensor([[5, 6, 2, 0, 0, 0], [7, 2, 0, 0, 0, 0]])
    losses = []
    for width in (6, 3):  # the same sentences padded to different lengths give the same update
        torch.manual_seed(1)
        gen = LSTMGenerator(10, 4, 4, pad_id=0, bos_id=1, eos_id=2)
        opt = torch.optim.SGD(gen.parameters(), lr=0.1)
        losses.append((mle_step(gen, opt, tokens[:, :width]), gen.proj.weight.detach().clone()))
    assert losses[0][0] == pytest.approx(losses[1][0])
    torch.testing.assert_close(losses[0][1], losses[1][1])
    logits = LSTMGenerator(10, 4, 4)(torch.zeros(1, 1, dtype=torch.long))
    assert logits.shape == (1, 1, 10)


def test_discriminator_ignores_how_much_padding_follows():
    torch.manual_seed(0)
    d = CNNDiscriminator(20, embed_dim=8, filter_sizes=[2, 3], num_filters=[4, 5], dropout=0.0, pad_id=0)
    with torch.no_grad():
        for conv in d.convs:
            conv.bias.fill_(3.0)  # padding windows would win the max-over-time without masking
    d.eval()
    tokens = torch.tensor([[5, 6, 2, 0, 0], [7, 8, 9, 10, 2]])
    longer = torch.cat([tokens, torch.zeros(2, 30, dtype=torch.long)], dim=1)
    torch.testing.assert_close(d(tokens), d(longer))
    torch.testing.assert_close(d(tokens[:1, :3]), d(tokens)[:1])
    one_hot = torch.nn.functional.one_hot(tokens, 20).float()
    torch.testing.assert_close(d(one_hot, lengths=torch.tensor([3, 5])), d(tokens))


@pytest.mark.parametrize("kind", ["lstm", "rmc", "transformer"])
def test_init_std_redraws_every_generator_parameter(kind):
    """generator.init_std=s: every weight and bias drawn from N(0, s), as in the SeqGAN reference code; 0 keeps
    PyTorch's defaults (the embeddings then are N(0, 1))."""
    from seqgan.config import load_config
    from seqgan.models import build_generator

    class Tok:
        vocab_size, pad_id, bos_id, eos_id = 500, 0, 1, 2

    sizes = [
        "generator.embed_dim=64",
        "generator.hidden_dim=64",
        "generator.n_embd=64",
        "generator.head_size=16",
    ]
    torch.manual_seed(0)
    default = build_generator(load_config(None, [f"generator.kind={kind}", *sizes]), Tok())
    torch.manual_seed(0)
    scaled = build_generator(
        load_config(None, [f"generator.kind={kind}", *sizes, "generator.init_std=0.1"]), Tok()
    )
    flat = torch.cat([p.detach().flatten() for p in scaled.parameters()])
    assert abs(flat.mean().item()) < 0.005 and abs(flat.std().item() - 0.1) < 0.005
    for (name, p), q in zip(scaled.named_parameters(), default.parameters(), strict=True):
        assert p.numel() < 8 or 0.05 < p.detach().std().item() < 0.15, name  # no tensor left at its default
        assert not torch.equal(p, q), name
    if kind == "lstm":
        assert abs(default.embedding.weight.std().item() - 1.0) < 0.05
