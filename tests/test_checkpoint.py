import errno
import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from seqgan.checkpoint import (
    CheckpointError,
    check_compatible,
    load_checkpoint,
    model_differences,
    numbered_checkpoints,
    rng_state,
    save_checkpoint,
    save_numbered,
    set_rng_state,
    tokenizer_differences,
)
from seqgan.config import load_config, to_dict
from seqgan.data.tokenizers import WordTokenizer
from seqgan.runs import load_run, make_checkpoint, new_models
from seqgan.trainers.base import NonFiniteGuard, NonFiniteLossError
from seqgan.trainers.steps import mle_step
from tests.conftest import ROOT


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
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(CheckpointError) as err:
        save_checkpoint(payload, path)
    assert str(err.value) == (
        f"cannot write {path}: No space left on device (errno 28); the previous checkpoint is left as it was"
    )
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


# ---------------------------------------------------------------------------------------------------------
# keep the last K, crash safety, refusing checkpoints that do not fit, NaN policy


def test_keep_last_k_numbered_files_and_stable_name(tmp_path):
    for n in range(1, 6):
        save_numbered({"n": torch.tensor(n)}, tmp_path / "adversarial.pt", n, keep_last=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "adversarial.pt",
        "adversarial_0004.pt",
        "adversarial_0005.pt",
    ]
    assert int(load_checkpoint(tmp_path / "adversarial.pt")["n"]) == 5
    assert int(load_checkpoint(tmp_path / "adversarial_0004.pt")["n"]) == 4
    assert [n for n, _ in numbered_checkpoints(tmp_path / "adversarial.pt")] == [4, 5]
    # a resumed run that went back to 3 drops the files of the abandoned future
    save_numbered({"n": torch.tensor(3)}, tmp_path / "adversarial.pt", 3, keep_last=2)
    assert [n for n, _ in numbered_checkpoints(tmp_path / "adversarial.pt")] == [3]
    # K = 0: only the stable name
    save_numbered({"n": torch.tensor(9)}, tmp_path / "pretrain.pt", 9, keep_last=0)
    assert not numbered_checkpoints(tmp_path / "pretrain.pt")


def test_death_between_write_and_rename_keeps_the_old_file(tmp_path, monkeypatch):
    path = save_checkpoint({"v": torch.tensor(1)}, tmp_path / "ck.pt")
    before = path.read_bytes()

    def die(*args, **kwargs):
        raise KeyboardInterrupt  # the process is stopped between the fsync and the rename

    monkeypatch.setattr(os, "replace", die)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"v": torch.tensor(2)}, path)
    assert path.read_bytes() == before and int(load_checkpoint(path)["v"]) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


_WRITER = """
import os, sys, time
import torch
from seqgan.checkpoint import save_checkpoint
real_fsync = os.fsync
def stall(fd):  # the data is written but not yet renamed: signal the parent and wait to be killed
    open(sys.argv[2], "w").close()
    time.sleep(60)
os.fsync = stall
save_checkpoint({"v": torch.arange(1_000_000)}, sys.argv[1])
"""


def test_sigkill_mid_save_leaves_a_loadable_checkpoint(tmp_path):
    path = save_checkpoint({"v": torch.tensor(1)}, tmp_path / "ck.pt")
    marker = tmp_path / "writing"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(marker)], cwd=ROOT)
    deadline = time.time() + 60
    while not marker.exists():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert int(load_checkpoint(path)["v"]) == 1  # the old checkpoint, whole
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in ("ck.pt", "writing")]
    assert len(leftovers) == 1 and leftovers[0].startswith(".ck.pt.") and leftovers[0].endswith(".tmp")
    # the next save works and replaces the file
    save_checkpoint({"v": torch.tensor(3)}, path)
    assert int(load_checkpoint(path)["v"]) == 3


def test_checkpoint_that_does_not_fit_is_refused_naming_the_difference(tmp_path):
    cfg, tok, *_ = _payload(tmp_path)
    saved = to_dict(cfg)
    other = to_dict(
        load_config(None, ["generator.hidden_dim=64", "tokenizer.min_freq=3", "generator.dropout=0.5"])
    )
    diffs = model_differences(saved, other)
    assert "generator.hidden_dim 8 in checkpoint vs 64 in config" in diffs
    assert "tokenizer.min_freq 1 in checkpoint vs 3 in config" in diffs
    assert not any("dropout" in d for d in diffs)  # no shape change
    assert model_differences(saved, saved) == []
    bigger = WordTokenizer.train(["a b c e", "b c d"], split="whitespace")
    assert tokenizer_differences(tok.state_dict(), bigger.state_dict()) == [
        f"vocabulary size {tok.vocab_size} in checkpoint vs {bigger.vocab_size} in this run"
    ]
    swapped = WordTokenizer.train(["a b c", "b c e"], split="whitespace")  # same size, one word differs
    (msg,) = tokenizer_differences(tok.state_dict(), swapped.state_dict())
    assert msg.startswith("vocabulary differs at 1 ids") and "'d' in checkpoint vs 'e' in this run" in msg
    with pytest.raises(CheckpointError, match=r"ck.pt does not fit this run .*generator.hidden_dim 8"):
        check_compatible("ck.pt", saved, other, tok.state_dict(), tok.state_dict())


def test_nan_guard_policies():
    stop = NonFiniteGuard("stop")
    assert stop.ok(torch.tensor(1.0), 2.0) and stop.skipped == 0
    stop.note = "the last checkpoint is left as it was"
    with pytest.raises(NonFiniteLossError, match="non-finite loss .*nan_policy=stop.*left as it was"):
        stop.ok(torch.tensor(float("nan")))
    skip = NonFiniteGuard("skip", max_consecutive=3)
    assert not skip.ok(torch.tensor([1.0, float("inf")]))
    assert not skip.ok(float("nan"))
    assert skip.ok(1.0) and skip.consecutive == 0  # a good step resets the run of bad ones
    assert not skip.ok(float("nan")) and not skip.ok(float("nan"))
    assert skip.ok(1.0, kind="discriminator")  # a good update of another kind does not reset the count
    with pytest.raises(NonFiniteLossError, match="in 3 consecutive update steps"):
        skip.ok(float("nan"))
    assert skip.skipped == 5
    with pytest.raises(ValueError, match="nan_policy"):
        NonFiniteGuard("ignore")


def test_nan_guard_checks_every_element_of_many_tensors():
    grads = [torch.randn(50, 7), torch.randn(3), torch.zeros(0), torch.tensor(2, dtype=torch.long)]
    guard = NonFiniteGuard("skip", max_consecutive=100)
    assert guard.ok(torch.tensor(0.5), *grads)
    for bad in (float("nan"), float("inf"), float("-inf")):
        for i in (0, 1):
            hurt = [g.clone() for g in grads]
            hurt[i].view(-1)[-1] = bad  # one element of one tensor
            assert not guard.ok(torch.tensor(0.5), *hurt)
    assert guard.skipped == 6


def test_mle_step_skips_a_nan_step_without_touching_weights(tmp_path):
    cfg, tok, gen, *_ = _payload(tmp_path)
    opt = torch.optim.Adam(gen.parameters(), lr=0.1)
    tokens = torch.tensor([[4, 5, 2, 0], [5, 6, 7, 2]])
    with torch.no_grad():
        gen.embedding.weight[5, 0] = float("nan")  # token 5 appears in both rows
    before = {k: v.clone() for k, v in gen.state_dict().items()}
    guard = NonFiniteGuard("skip")
    loss = mle_step(gen, opt, tokens, grad_clip=5.0, guard=guard)
    assert loss != loss and guard.skipped == 1  # NaN returned, step counted
    for k, v in gen.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0, equal_nan=True)
    assert not opt.state  # Adam never stepped
    with pytest.raises(NonFiniteLossError, match="MLE loss"):
        mle_step(gen, opt, tokens, guard=NonFiniteGuard("stop"))


def _recipe(name: str):
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY = [
    "--config",
    "recipes/configs/tiny.yaml",
    "num_threads=1",
    "pretrain.num_print_samples=0",
    "adversarial.epochs=3",
    "adversarial.eval_every=100",
    "adversarial.eval_num_samples=30",
    "checkpoint_keep=5",
]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("nan_pre")
    _recipe("pretrain").main([*TINY, f"out_dir={out}"])
    return out / "pretrain.pt"


def _adversarial_with_nan(monkeypatch, pretrained, out, from_call: int, *overrides: str):
    """The adversarial recipe with a generator loss that is NaN from its ``from_call``-th evaluation on."""
    import seqgan.trainers.seqgan as pg

    real, calls = pg.policy_gradient_loss, []

    def poisoned(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) >= from_call else loss

    monkeypatch.setattr(pg, "policy_gradient_loss", poisoned)
    out.mkdir()
    (out / "pretrain.pt").write_bytes(pretrained.read_bytes())
    return _recipe("adversarial").main([*TINY, f"out_dir={out}", *overrides])


def _weights(path, part="generator"):
    return torch.load(path, weights_only=True)[part]["state_dict"]


def test_nan_policy_stop_keeps_the_last_good_checkpoint(monkeypatch, pretrained, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as err:
        _adversarial_with_nan(monkeypatch, pretrained, out, 2, "nan_policy=stop")
    msg = str(err.value)
    assert "non-finite generator loss nan" in msg and "nan_policy=stop" in msg
    assert f"the last checkpoint, {out / 'adversarial.pt'} (epoch 1), is left as it was" in msg
    ckpt = load_checkpoint(out / "adversarial.pt")
    assert (
        ckpt["epoch"] == 1
        and (out / "adversarial.pt").read_bytes() == (out / "adversarial_0001.pt").read_bytes()
    )
    assert all(bool(torch.isfinite(v).all()) for v in ckpt["generator"]["state_dict"].values())
    epochs = [
        json.loads(line)["epoch"] for line in (out / "adversarial_metrics.jsonl").read_text().splitlines()
    ]
    assert epochs == [0, 1]


def test_nan_policy_skip_skips_and_counts_the_bad_updates(monkeypatch, pretrained, tmp_path):
    out = tmp_path / "run"
    _adversarial_with_nan(monkeypatch, pretrained, out, 2, "nan_policy=skip", "nan_max_consecutive=3")
    records = [json.loads(line) for line in (out / "adversarial_metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1, 2, 3]
    assert [r.get("nan/skipped_steps") for r in records[1:]] == [0, 1, 2]
    assert records[2]["generator/pg_loss"] is None  # NaN is logged as null
    # the generator's updates of epochs 2 and 3 were skipped; the discriminator kept training
    first, last = out / "adversarial_0001.pt", out / "adversarial.pt"
    assert all(
        torch.equal(a, b) for a, b in zip(_weights(first).values(), _weights(last).values(), strict=True)
    )
    d0, d1 = _weights(first, "discriminator"), _weights(last, "discriminator")
    assert any(not torch.equal(d0[k], d1[k]) for k in d0)
    assert torch.load(last, weights_only=True)["trainer"]["g_steps"] == 1


def test_nan_policy_skip_stops_after_too_many_in_a_row(monkeypatch, pretrained, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(
        NonFiniteLossError, match="in 2 consecutive generator steps .*nan_policy=skip.*epoch 2"
    ):
        _adversarial_with_nan(monkeypatch, pretrained, out, 2, "nan_policy=skip", "nan_max_consecutive=2")
    assert load_checkpoint(out / "adversarial.pt")["epoch"] == 2


def test_bf16_precision_runs_both_recipes_on_cpu(tmp_path):
    args = [*TINY, f"out_dir={tmp_path}", "precision=bf16", "adversarial.epochs=1"]
    _recipe("pretrain").main(args)
    _recipe("adversarial").main(args)
    pre, adv = _weights(tmp_path / "pretrain.pt"), _weights(tmp_path / "adversarial.pt")
    assert all(v.dtype == torch.float32 and bool(torch.isfinite(v).all()) for v in adv.values())
    assert any(not torch.equal(pre[k], adv[k]) for k in pre)  # the bf16 updates changed the fp32 weights
    records = [json.loads(line) for line in (tmp_path / "adversarial_metrics.jsonl").read_text().splitlines()]
    assert records[-1]["nan/skipped_steps"] == 0 and records[-1]["generator/pg_loss"] is not None


def test_autocast_contexts():
    from seqgan.runtime import autocast

    x = torch.randn(2, 3)
    with autocast("bf16", "cpu"):
        assert (x @ x.T).dtype == torch.bfloat16
    with autocast("fp32", "cpu"):
        assert (x @ x.T).dtype == torch.float32
    with pytest.raises(ValueError, match="precision"):
        autocast("fp16", "cpu")


def test_bf16_steps_inside_one_autocast_context_see_the_updated_weights():
    """A recipe keeps one bf16 context over many optimizer steps (a whole epoch): each forward must use the
    weights as updated so far, exactly as if every step had its own context."""
    from seqgan.models.discriminator import CNNDiscriminator
    from seqgan.runtime import autocast
    from seqgan.trainers.steps import discriminator_step

    torch.manual_seed(0)
    d = CNNDiscriminator(30, embed_dim=8, filter_sizes=(2, 3), num_filters=(16, 16), dropout=0.0, pad_id=0)
    twin = CNNDiscriminator(30, embed_dim=8, filter_sizes=(2, 3), num_filters=(16, 16), dropout=0.0, pad_id=0)
    twin.load_state_dict(d.state_dict())
    real, fake = torch.randint(3, 30, (16, 7)), torch.randint(3, 30, (16, 7))
    opt = torch.optim.SGD(d.parameters(), lr=0.5)
    twin_opt = torch.optim.SGD(twin.parameters(), lr=0.5)
    with autocast("bf16", "cpu"):
        one_context = [discriminator_step(d, opt, real, fake)["discriminator/loss"] for _ in range(4)]
    per_step = []
    for _ in range(4):
        with autocast("bf16", "cpu"):
            per_step.append(discriminator_step(twin, twin_opt, real, fake)["discriminator/loss"])
    assert one_context == per_step
    assert per_step[-1] < per_step[0] - 0.05  # the steps do change the weights (a stale copy would not)
