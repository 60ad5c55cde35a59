"""Never lose a run: a recipe refuses to start over an earlier run without --resume or --overwrite, the
adversarial stage's saved config always describes its weights, and every bad input found gives a one-line error
and loses nothing. The recipes run in this process as a user runs them (``python recipes/X.py ARGS``)."""

from __future__ import annotations

import errno
import os
import runpy
import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml

from seqgan.checkpoint import load_checkpoint, save_checkpoint
from tests.conftest import ROOT

TINY = ["--config", "recipes/configs/tiny.yaml", "num_threads=1", "pretrain.num_print_samples=0"]
FAST = ["adversarial.epochs=1", "adversarial.eval_every=100", "adversarial.eval_num_samples=20"]


def recipe(name: str, *argv: str, monkeypatch) -> object:
    """Runs ``recipes/NAME.py ARGV`` as ``python`` would; returns SystemExit's code (None: it finished)."""
    monkeypatch.setattr(sys, "argv", [f"recipes/{name}.py", *argv])
    try:
        runpy.run_path(str(ROOT / "recipes" / f"{name}.py"), run_name="__main__")
    except SystemExit as e:
        return e.code
    return None


def error_of(name: str, *argv: str, monkeypatch) -> str:
    """The one-line ``error: ...`` a recipe stops with (and checks there is one)."""
    code = recipe(name, *argv, monkeypatch=monkeypatch)
    assert isinstance(code, str) and code.startswith("error: ") and "\n" not in code, code
    return code


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """A finished tiny pretraining run (with numbered checkpoints) to copy from."""
    out = tmp_path_factory.mktemp("pre")
    mp = pytest.MonkeyPatch()
    try:
        assert recipe("pretrain", *TINY, f"out_dir={out}", "checkpoint_keep=3", monkeypatch=mp) is None
    finally:
        mp.undo()
    return out


def copy_run(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest)
    return dest


# ---------------------------------------------------------------------------------------------- data loss
def test_rerunning_pretrain_without_resume_is_refused_and_loses_nothing(pretrained, tmp_path, monkeypatch):
    out = copy_run(pretrained, tmp_path / "run")
    before = files(out)
    assert len([n for n in before if n.startswith("pretrain_0")]) == 2 and "metrics.jsonl" in before
    msg = error_of("pretrain", *TINY, f"out_dir={out}", "pretrain.epochs=0", monkeypatch=monkeypatch)
    assert (
        f"out_dir={out} already holds a pretraining run" in msg and "--resume" in msg and "--overwrite" in msg
    )
    assert files(out) == before


def test_rerunning_adversarial_without_resume_is_refused(pretrained, tmp_path, monkeypatch):
    out = copy_run(pretrained, tmp_path / "run")
    assert recipe("adversarial", *TINY, *FAST, f"out_dir={out}", monkeypatch=monkeypatch) is None
    before = files(out)
    msg = error_of("adversarial", *TINY, *FAST, f"out_dir={out}", monkeypatch=monkeypatch)
    assert "already holds an adversarial run (adversarial.pt" in msg and "--resume" in msg
    assert files(out) == before
    assert (
        recipe("adversarial", *TINY, f"out_dir={out}", "--resume", "--overwrite", monkeypatch=monkeypatch)
        == 2
    )


def test_overwrite_removes_only_the_stages_own_files(pretrained, tmp_path, monkeypatch):
    out = copy_run(pretrained, tmp_path / "run")
    (out / "notes.txt").write_text("mine")
    (out / "adversarial.pt").write_bytes(b"an adversarial run of the old model")
    (out / ".pretrain.pt.3f9a1b2c.tmp").write_bytes(b"left by a killed write")
    old = (out / "pretrain.pt").read_bytes()
    args = [*TINY, f"out_dir={out}", "pretrain.epochs=1", "pretrain.d_rounds=0", "checkpoint_keep=3"]
    assert recipe("pretrain", *args, "--overwrite", monkeypatch=monkeypatch) is None
    after = files(out)
    assert after["notes.txt"] == b"mine" and after["adversarial.pt"] == b"an adversarial run of the old model"
    assert after["pretrain.pt"] != old and ".pretrain.pt.3f9a1b2c.tmp" not in after
    # the earlier run's numbered checkpoints are gone with it; the new run's one is there
    step = load_checkpoint(out / "pretrain.pt")["step"]
    assert sorted(n for n in after if n.startswith("pretrain_0")) == [f"pretrain_{step:04d}.pt"]
    records = (out / "metrics.jsonl").read_text().splitlines()
    assert len(records) == 1  # the new run's one epoch only


def test_stale_temporaries_are_removed_when_a_run_resumes(pretrained, tmp_path, monkeypatch):
    out = copy_run(pretrained, tmp_path / "run")
    (out / ".pretrain.pt.deadbeef0000.tmp").write_bytes(b"x")
    (out / ".pretrain_0002.pt.1234.link").write_bytes(b"x")
    (out / ".hidden_notes").write_text("mine")
    assert (
        recipe("pretrain", *TINY, f"out_dir={out}", "checkpoint_keep=3", "--resume", monkeypatch=monkeypatch)
        is None
    )
    left = {p.name for p in out.iterdir()}
    assert ".pretrain.pt.deadbeef0000.tmp" not in left and ".pretrain_0002.pt.1234.link" not in left
    assert ".hidden_notes" in left


# ---------------------------------------------------------------------------------------------- config vs weights
def test_overrides_that_cannot_apply_to_the_pretrained_model_are_refused(pretrained, tmp_path, monkeypatch):
    out = tmp_path / "adv"
    pre = pretrained / "pretrain.pt"
    msg = error_of(
        "adversarial", *TINY, *FAST, f"out_dir={out}", f"adversarial.pretrain_checkpoint={pre}",
        "generator.hidden_dim=32", "data.max_len=30", monkeypatch=monkeypatch,
    )  # fmt: skip
    assert (
        "generator.hidden_dim=32 (the checkpoint has 16)" in msg
        and "data.max_len=30 (the checkpoint has 20)" in msg
    )
    assert not out.exists()


def test_saved_config_describes_the_weights_and_resumes(pretrained, tmp_path, monkeypatch):
    """A config that leaves model keys at their defaults takes the checkpoint's; dropout set explicitly is
    applied; the adversarial checkpoint records both and resumes without any override."""
    tree = yaml.safe_load((ROOT / "recipes/configs/tiny.yaml").read_text())
    del (
        tree["generator"],
        tree["discriminator"],
    )  # defaults: hidden 32, filters 2-5 x 300 (not the checkpoint's)
    (tmp_path / "loose.yaml").write_text(yaml.safe_dump(tree))
    out = tmp_path / "adv"
    args = ["--config", str(tmp_path / "loose.yaml"), "num_threads=1", *FAST, f"out_dir={out}",
            f"adversarial.pretrain_checkpoint={pretrained / 'pretrain.pt'}"]  # fmt: skip
    assert recipe("adversarial", *args, "discriminator.dropout=0.1", monkeypatch=monkeypatch) is None
    ckpt = load_checkpoint(out / "adversarial.pt")
    saved = ckpt["config"]
    assert saved["generator"]["hidden_dim"] == ckpt["generator"]["spec"]["hidden_dim"] == 16
    assert saved["discriminator"]["num_filters"] == ckpt["discriminator"]["spec"]["num_filters"] == [16, 16]
    assert saved["discriminator"]["dropout"] == ckpt["discriminator"]["spec"]["dropout"] == 0.1
    assert yaml.safe_load((out / "adversarial_config.yaml").read_text())["generator"]["hidden_dim"] == 16
    assert recipe("adversarial", *args, "adversarial.epochs=2", "--resume", monkeypatch=monkeypatch) is None
    assert load_checkpoint(out / "adversarial.pt")["epoch"] == 2


def test_the_conditional_task_refuses_overrides_too(tmp_path, monkeypatch):
    out = tmp_path / "chat"
    chat = ["--config", "recipes/configs/chat_tiny.yaml", f"out_dir={out}", "pretrain.num_print_samples=0"]
    assert recipe("pretrain", *chat, "pretrain.d_rounds=0", monkeypatch=monkeypatch) is None
    msg = error_of("adversarial", *chat, "generator.hidden_dim=32", monkeypatch=monkeypatch)
    assert "generator.hidden_dim=32 (the checkpoint has 16)" in msg
    assert not (out / "adversarial_config.yaml").exists()


# ---------------------------------------------------------------------------------------------- file system
def test_unwritable_out_dir_is_one_line(pretrained, tmp_path, monkeypatch):
    msg = error_of(
        "pretrain", *TINY, "out_dir=/proc/seqgan_run", "pretrain.epochs=0", monkeypatch=monkeypatch
    )
    assert "out_dir=/proc/seqgan_run: cannot write there" in msg
    (tmp_path / "a_file").write_text("x")
    msg = error_of("pretrain", *TINY, f"out_dir={tmp_path / 'a_file'}", monkeypatch=monkeypatch)
    assert "is a file, not a folder" in msg
    msg = error_of("pretrain", *TINY, f"out_dir={tmp_path / 'a_file' / 'run'}", monkeypatch=monkeypatch)
    assert "is a file, not a folder" in msg


def test_disk_full_while_saving_keeps_the_last_checkpoint(pretrained, tmp_path, monkeypatch):
    out = copy_run(pretrained, tmp_path / "run")
    before = (out / "pretrain.pt").read_bytes()
    real_save = torch.save

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    msg = error_of(
        "pretrain", *TINY, f"out_dir={out}", "pretrain.epochs=2", "--resume", monkeypatch=monkeypatch
    )
    monkeypatch.setattr(torch, "save", real_save)
    assert "No space left on device" in msg and "left as it was" in msg
    assert (out / "pretrain.pt").read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_evaluate_checks_where_it_writes_before_sampling(pretrained, monkeypatch):
    ckpt = str(pretrained / "pretrain.pt")
    msg = error_of(
        "evaluate", "--checkpoint", ckpt, "--sweep", "0.8", "1.0", "--out-dir", "/proc/seqgan_sweep",
        monkeypatch=monkeypatch,
    )  # fmt: skip
    assert "/proc/seqgan_sweep" in msg
    msg = error_of(
        "evaluate", "--checkpoint", ckpt, "--json", "/proc/seqgan_x/e.json", monkeypatch=monkeypatch
    )
    assert "/proc/seqgan_x" in msg


# ---------------------------------------------------------------------------------------------- ranges
@pytest.mark.parametrize(
    "override, expected",
    [
        ("seqgan.g_lr=-0.001", "seqgan.g_lr must be > 0, got -0.001"),
        ("pretrain.lr=0", "pretrain.lr must be > 0, got 0.0"),
        ("seqgan.num_rollouts=-1", "seqgan.num_rollouts must be >= 0, got -1"),
        ("seqgan.batch_size=0", "seqgan.batch_size must be >= 1, got 0"),
        ("adversarial.epochs=-1", "adversarial.epochs must be >= 0, got -1"),
        ("gumbel.d_lr=-1", "gumbel.d_lr must be > 0, got -1.0"),
        ("device=gpu", "device: expected auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
    ],
)
def test_config_ranges_are_one_line_naming_the_key(override, expected, tmp_path, monkeypatch):
    msg = error_of("adversarial", *TINY, f"out_dir={tmp_path / 'x'}", override, monkeypatch=monkeypatch)
    assert expected in msg
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_machine_without_one(tmp_path, monkeypatch):
    msg = error_of("pretrain", *TINY, f"out_dir={tmp_path / 'x'}", "device=cuda", monkeypatch=monkeypatch)
    assert "device=cuda: no CUDA device is available here" in msg


def test_an_empty_yaml_file_is_refused(tmp_path, monkeypatch):
    (tmp_path / "empty.yaml").write_text("# nothing here\n")
    msg = error_of("pretrain", "--config", str(tmp_path / "empty.yaml"), monkeypatch=monkeypatch)
    assert "empty.yaml is empty" in msg


# ---------------------------------------------------------------------------------------------- the command-line tools
@pytest.mark.parametrize(
    "name, args, expected",
    [
        ("sample", ["--top-p", "1.5"], "argument --top-p: must be in (0, 1], got 1.5"),
        ("sample", ["--top-p", "0"], "argument --top-p: must be in (0, 1], got 0"),
        ("sample", ["--top-k", "-5"], "argument --top-k: must be >= 0, got -5"),
        ("sample", ["--max-len", "-1"], "argument --max-len: must be >= 1, got -1"),
        ("sample", ["--temperature", "0"], "argument --temperature: must be > 0, got 0"),
        ("chat", ["--max-len", "-1"], "argument --max-len: must be >= 1, got -1"),
        ("chat", ["--top-k", "-5"], "argument --top-k: must be >= 0, got -5"),
        ("evaluate", ["--num-samples", "0"], "argument --num-samples: must be >= 1, got 0"),
        ("evaluate", ["--sweep", "0"], "argument --sweep: must be > 0, got 0"),
        ("evaluate", ["--top-p", "1.5"], "argument --top-p: must be in (0, 1], got 1.5"),
    ],
)
def test_command_line_options_are_checked_like_the_config(
    name, args, expected, pretrained, monkeypatch, capsys
):
    code = recipe(name, "--checkpoint", str(pretrained / "pretrain.pt"), *args, monkeypatch=monkeypatch)
    assert code == 2 and expected in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- checkpoints
def _edited(pretrained: Path, tmp_path: Path, edit) -> Path:
    ckpt = load_checkpoint(pretrained / "pretrain.pt")
    edit(ckpt)
    ckpt.pop("format_version")
    return save_checkpoint(ckpt, tmp_path / "edited.pt")


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda c: c["generator"]["spec"].update(extra=1), "generator spec has an unexpected key 'extra'"),
        (lambda c: c["generator"]["state_dict"].pop("proj.bias"), "missing 'proj.bias'"),
        (lambda c: c.pop("tokenizer"), "has no tokenizer"),
        (
            lambda c: c["generator"]["spec"].update(hidden_dim=10**6),
            "generator weights do not match its spec",
        ),
        (
            lambda c: c["generator"]["spec"].update(vocab_size=500),
            "500 token embeddings but its word tokenizer",
        ),
    ],
)
def test_an_edited_checkpoint_is_one_line(edit, expected, pretrained, tmp_path, monkeypatch):
    path = _edited(pretrained, tmp_path, edit)
    msg = error_of("sample", "--checkpoint", str(path), monkeypatch=monkeypatch)
    assert expected in msg


def test_a_checkpoint_holding_objects_is_refused_unloaded(tmp_path, monkeypatch):
    ran = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(ran),))

    torch.save({"format_version": 1, "x": Payload()}, tmp_path / "evil.pt")
    msg = error_of("sample", "--checkpoint", str(tmp_path / "evil.pt"), monkeypatch=monkeypatch)
    assert "contains objects that are not allowed in a checkpoint" in msg and "not loaded" in msg
    assert "damaged" not in msg and not ran.exists()


def test_chat_on_an_unconditional_checkpoint_names_the_right_recipe(pretrained, monkeypatch):
    msg = error_of("chat", "--checkpoint", str(pretrained / "pretrain.pt"), monkeypatch=monkeypatch)
    assert "needs a conditional checkpoint" in msg and "recipes/sample.py" in msg


def test_sample_on_a_conditional_checkpoint_names_the_right_recipe(tmp_path, monkeypatch):
    out = tmp_path / "chat"
    chat = ["--config", "recipes/configs/chat_tiny.yaml", f"out_dir={out}", "pretrain.num_print_samples=0"]
    assert recipe("pretrain", *chat, "pretrain.d_rounds=0", monkeypatch=monkeypatch) is None
    msg = error_of("sample", "--checkpoint", str(out / "pretrain.pt"), monkeypatch=monkeypatch)
    assert "holds a conditional (context -> response) model" in msg and "recipes/chat.py" in msg


def test_an_unset_dropout_is_taken_from_the_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert recipe("pretrain", *TINY, f"out_dir={out}", "generator.dropout=0.3", "pretrain.d_rounds=0",
                  monkeypatch=monkeypatch) is None  # fmt: skip
    tree = yaml.safe_load((ROOT / "recipes/configs/tiny.yaml").read_text())
    del tree["generator"]
    (tmp_path / "loose.yaml").write_text(yaml.safe_dump(tree))
    args = ["--config", str(tmp_path / "loose.yaml"), "num_threads=1", *FAST, f"out_dir={out}"]
    assert recipe("adversarial", *args, monkeypatch=monkeypatch) is None
    ckpt = load_checkpoint(out / "adversarial.pt")
    assert ckpt["config"]["generator"]["dropout"] == ckpt["generator"]["spec"]["dropout"] == 0.3


def test_config_copies_keep_what_was_set_explicitly():
    from seqgan.config import explicit_keys, load_config, replace

    cfg = load_config(None, ["generator.hidden_dim=8"])
    copy = replace(cfg, seed=3)
    assert explicit_keys(copy) == {"generator.hidden_dim", "seed"} and copy.seed == 3
