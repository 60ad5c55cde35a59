import random

import numpy as np
import pytest
import torch

from seqgan.checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from seqgan.config import load_config
from seqgan.data.tokenizers import WordTokenizer
from seqgan.training import load_run, make_checkpoint, new_models


def _payload(tmp_path):
    cfg = load_config(
        None,
        [
            "generator.hidden_dim=8",
            "generator.embed_dim=8",
            "discriminator.embed_dim=4",
            "discriminator.filter_sizes=[2]",
            "discriminator.num_filters=[3]",
        ],
    )
    tok = WordTokenizer.train(["a b c", "b c d"], split="whitespace")
    gen, disc = new_models(cfg, tok, torch.device("cpu"))
    opt = torch.optim.Adam(gen.parameters())
    gen(torch.zeros(2, 3, dtype=torch.long)).sum().backward()
    opt.step()
    return cfg, tok, gen, disc, make_checkpoint(cfg, tok, gen, disc, {"generator": opt}, 5, "pretrain")


def test_round_trip_weights_only(tmp_path):
    cfg, tok, gen, disc, payload = _payload(tmp_path)
    path = save_checkpoint(payload, tmp_path / "ck.pt")
    raw = torch.load(path, weights_only=True)  # no pickled objects inside
    assert raw["step"] == 5 and raw["stage"] == "pretrain" and "rng" in raw
    assert raw["optimizers"]["generator"]["state"]  # Adam moments are saved
    run = load_run(path)
    assert run.cfg == cfg and run.tokenizer.itos == tok.itos
    x = torch.randint(0, tok.vocab_size, (2, 4))
    gen.eval(), run.generator.eval()
    torch.testing.assert_close(run.generator(x), gen(x))
    disc.eval(), run.discriminator.eval()
    torch.testing.assert_close(run.discriminator(x), disc(x))


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    *_, payload = _payload(tmp_path)
    path = save_checkpoint(payload, tmp_path / "ck.pt")
    before = path.read_bytes()

    def boom(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(payload, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left behind


def test_truncated_and_foreign_files_are_refused(tmp_path):
    *_, payload = _payload(tmp_path)
    path = save_checkpoint(payload, tmp_path / "ck.pt")
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*cut.pt"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a seqgan checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_rng_state_round_trip(tmp_path):
    torch.manual_seed(1), random.seed(1), np.random.seed(1)
    torch.save(rng_state(), tmp_path / "rng.pt")
    expected = (torch.rand(3), random.random(), np.random.rand())
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(expected[0], again[0]) and expected[1:] == again[1:]
