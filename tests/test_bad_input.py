"""Bad input, run through the recipes as a user runs them: each case must stop with a clear message naming the
problem, a non-zero exit and no traceback, and leave the files already in ``out_dir`` untouched. Cases that start
a run anew pass ``--overwrite``: the earlier run's files must survive anyway, since a stage removes them only once
its inputs are checked.

All cases start at once (one subprocess each) in a module fixture; the tests then read their results.
"""

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seqgan.checkpoint import save_checkpoint
from seqgan.config import load_config
from seqgan.runs import make_checkpoint, new_models, prepare_data
from tests.conftest import ROOT

TINY = ["--config", "recipes/configs/tiny.yaml", "num_threads=1"]
SENTINELS = {  # files a previous run left in out_dir
    "pretrain": ["config.yaml", "metrics.jsonl", "pretrain.pt"],
    "adversarial": ["adversarial_config.yaml", "adversarial_metrics.jsonl", "adversarial.pt", "pretrain.pt"],
}


def _pretrain_checkpoint(path: Path, *overrides: str, config: str = "tiny.yaml") -> Path:
    """A finished-looking pretrain checkpoint of a shipped config (fresh weights: nothing is trained)."""
    cfg = load_config(ROOT / "recipes/configs" / config, list(overrides))
    data = prepare_data(cfg)
    gen, disc = new_models(cfg, data.tokenizer, torch.device("cpu"))
    payload = make_checkpoint(cfg, data.tokenizer, gen, disc, {}, 0, "pretrain")
    return save_checkpoint(payload, path)


def _cases(tmp: Path) -> dict[str, tuple[str, list[str], str]]:
    """name -> (recipe, arguments, expected message)."""
    (tmp / "empty.txt").write_text("\n  \n")
    (tmp / "long.txt").write_text("".join(" ".join(["a man rides a bike"] * 6) + "\n" for _ in range(3)))
    (tmp / "latin1.txt").write_bytes("a man on a bike\ncaf\xe9 au lait\n".encode("latin-1"))
    (tmp / "unknown_key.yaml").write_text("pretrain:\n  epoch: 3\n")
    (tmp / "wrong_type.yaml").write_text("generator:\n  hidden_dim: abc\n")
    good = _pretrain_checkpoint(tmp / "good" / "pretrain.pt")
    _pretrain_checkpoint(tmp / "other" / "pretrain.pt", "tokenizer.min_freq=1")
    (tmp / "truncated.pt").write_bytes(good.read_bytes()[:1000])
    _pretrain_checkpoint(tmp / "wide" / "pretrain.pt", "generator.hidden_dim=24")
    chat = _pretrain_checkpoint(tmp / "chat" / "pretrain.pt", config="chat_tiny.yaml")
    _pretrain_checkpoint(tmp / "chat_other" / "pretrain.pt", "tokenizer.min_freq=2", config="chat_tiny.yaml")
    return {
        "empty corpus": (
            "pretrain",
            [f"data.train={tmp / 'empty.txt'}"],
            "the file is empty (no non-blank lines)",
        ),
        "only over-long lines": (
            "pretrain",
            [f"data.train={tmp / 'long.txt'}", "data.overlong=drop"],
            "the train split (" + str(tmp / "long.txt") + "): no sentence left after encoding 3 lines with "
            "max_len=20 and overlong='drop'; raise data.max_len or "
            "use data.overlong=truncate",
        ),
        "non-UTF-8 bytes": (
            "pretrain",
            [f"data.train={tmp / 'latin1.txt'}"],
            "line 2 is not valid UTF-8 (byte 0xe9 at column 4)",
        ),
        "unknown YAML key": (
            "pretrain",
            ["--config", str(tmp / "unknown_key.yaml")],
            "unknown config key 'pretrain.epoch'",
        ),
        "wrong YAML type": (
            "pretrain",
            ["--config", str(tmp / "wrong_type.yaml")],
            "generator.hidden_dim: expected an integer, got 'abc' (str)",
        ),
        "max_len below 2": ("pretrain", ["data.max_len=1"], "data.max_len must be >= 2, got 1"),
        "truncated checkpoint": (
            "adversarial",
            [f"adversarial.pretrain_checkpoint={tmp / 'truncated.pt'}"],
            f"cannot read checkpoint {tmp / 'truncated.pt'}",
        ),
        "checkpoint from another vocabulary": (
            "adversarial",
            ["--resume", f"adversarial.pretrain_checkpoint={good}"],
            f"does not fit this run (different tokenizer or model shape): tokenizer.min_freq 1 in checkpoint vs 2 "
            f"in {good}; vocabulary size",
        ),
        "checkpoint of another model shape": (
            "adversarial",
            ["--resume", f"adversarial.pretrain_checkpoint={good}"],
            f"generator.hidden_dim 24 in checkpoint vs 16 in {good}",
        ),
        "resume from a truncated checkpoint": (
            "adversarial",
            ["--resume", f"adversarial.pretrain_checkpoint={good}"],
            "adversarial.pt: it is damaged (cut short?) or not a PyTorch checkpoint",  # the sentinel file
        ),
        "resume from another vocabulary": (
            "pretrain",
            ["--resume"],
            "tokenizer.min_freq 1 in checkpoint vs 2 in config; vocabulary size",
        ),
        "resume a chat run from another vocabulary": (
            "adversarial",
            [
                "--config",
                "recipes/configs/chat_tiny.yaml",
                "--resume",
                f"adversarial.pretrain_checkpoint={chat}",
            ],
            "does not fit this run (different tokenizer or model shape): tokenizer.min_freq 2 in checkpoint vs 1",
        ),
        "resume without a checkpoint": (
            "pretrain",
            ["--resume", "out_dir=MISSING"],
            "--resume: no checkpoint to continue from at",
        ),
    }


REPLACE = {  # out_dir holds a checkpoint of another run: (file name, run it comes from)
    "resume from another vocabulary": ("pretrain.pt", "other"),
    "checkpoint from another vocabulary": ("adversarial.pt", "other"),
    "checkpoint of another model shape": ("adversarial.pt", "wide"),
    "resume a chat run from another vocabulary": ("adversarial.pt", "chat_other"),
}
SUBPROCESS_CASES = ["empty corpus", "wrong YAML type", "truncated checkpoint"]


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    return tmp, _cases(tmp)


def _prepare(tmp: Path, cases: dict, name: str, suffix: str = "") -> tuple[str, list[str], str, Path, dict]:
    """(recipe, argv, expected message, out_dir, snapshot of out_dir) of one case."""
    recipe, args, expected = cases[name]
    out = tmp / (name.replace(" ", "_") + suffix)
    out.mkdir()
    for f in SENTINELS[recipe]:
        (out / f).write_bytes(f"left by an earlier run: {f}\n".encode())
    if name in REPLACE:
        target, source = REPLACE[name]
        (out / target).write_bytes((tmp / source / "pretrain.pt").read_bytes())
    if "out_dir=MISSING" in args:
        args = [a for a in args if a != "out_dir=MISSING"] + [f"out_dir={tmp / 'nothing_here'}"]
    argv = (["num_threads=1"] if "--config" in args else TINY) + args
    if "--resume" not in argv:
        argv.append("--overwrite")
    if not any(a.startswith("out_dir=") for a in args):
        argv.append(f"out_dir={out}")
    snapshot = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()}
    return recipe, argv, expected, out, snapshot


def _unchanged(out: Path, snapshot: dict) -> bool:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()} == snapshot


CASES = [
    "empty corpus",
    "only over-long lines",
    "non-UTF-8 bytes",
    "unknown YAML key",
    "wrong YAML type",
    "max_len below 2",
    "truncated checkpoint",
    "checkpoint from another vocabulary",
    "checkpoint of another model shape",
    "resume from a truncated checkpoint",
    "resume from another vocabulary",
    "resume a chat run from another vocabulary",
    "resume without a checkpoint",
]


@pytest.mark.parametrize("name", CASES)
def test_bad_input_gives_a_clear_error_and_keeps_files(cases, name, monkeypatch, capsys):
    """The recipe's command-line entry point, run in this process (``python recipes/X.py ARGS``)."""
    tmp, all_cases = cases
    recipe, argv, expected, out, snapshot = _prepare(tmp, all_cases, name)
    monkeypatch.setattr(sys, "argv", [f"recipes/{recipe}.py", *argv])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(ROOT / "recipes" / f"{recipe}.py"), run_name="__main__")
    message = exit_.value.code  # sys.exit("error: ...") prints it to stderr and exits with status 1
    assert isinstance(message, str) and message.startswith("error: ") and expected in message, message
    assert _unchanged(out, snapshot)  # nothing written, nothing removed


def test_bad_input_from_the_command_line(cases):
    """A few of the cases as separate processes: exit status 1, the message last on stderr, no traceback."""
    tmp, all_cases = cases
    procs = []
    for name in SUBPROCESS_CASES:
        recipe, argv, expected, out, snapshot = _prepare(tmp, all_cases, name, suffix="_cli")
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, f"recipes/{recipe}.py", *argv]
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        procs.append((proc, expected, out, snapshot))
    for proc, expected, out, snapshot in procs:
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 1 and "Traceback" not in stderr, stderr[-3000:]
        last = stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and expected in last, stderr[-2000:]
        assert _unchanged(out, snapshot)
