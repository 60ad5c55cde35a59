"""Exact resume: a run killed with SIGKILL and continued with ``--resume`` ends bit-identical to a run that was
never interrupted (same seed, CPU)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT

TINY = ["--config", "recipes/configs/tiny.yaml", "num_threads=1", "pretrain.num_print_samples=0"]
PRETRAIN = [*TINY, "pretrain.epochs=2", "pretrain.d_rounds=1", "pretrain.d_num_negatives=128"]
ADVERSARIAL = [
    *TINY,
    "adversarial.epochs=3",
    "adversarial.eval_every=100",  # evaluate at the start and the end only
    "adversarial.eval_num_samples=50",
    "adversarial.checkpoint_every=1",
]


def _start(recipe: str, args: list[str], out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, f"recipes/{recipe}.py", *args, f"out_dir={out}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen, timeout: int = 240) -> str:
    stdout, stderr = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, stderr[-3000:]
    return stdout


def _kill_after_checkpoint(proc: subprocess.Popen, ckpt: Path, timeout: float = 120) -> None:
    """SIGKILL ``proc`` as soon as it has written its first checkpoint (while it is still training)."""
    deadline = time.time() + timeout
    while not ckpt.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, "no checkpoint written in time"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL


def _assert_same_tensors(a, b, where: str = "") -> int:
    """Recursively compares nested dicts/lists of tensors bit for bit; returns the number of tensors."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
        return 1
    if isinstance(a, dict):
        assert set(a) == set(b), where
        return sum(_assert_same_tensors(a[k], b[k], f"{where}.{k}") for k in a)
    if isinstance(a, list | tuple):
        assert len(a) == len(b), where
        return sum(
            _assert_same_tensors(x, y, f"{where}[{i}]") for i, (x, y) in enumerate(zip(a, b, strict=True))
        )
    assert a == b, where
    return 0


def _records(path: Path) -> list[dict]:
    drop = ("time", "time/epoch_s", "time/generator_s")
    return [
        {k: v for k, v in json.loads(line).items() if k not in drop} for line in path.read_text().splitlines()
    ]


@pytest.fixture(scope="module")
def pretrain_runs(tmp_path_factory):
    """An uninterrupted pretraining run and one killed after its first checkpoint, then resumed."""
    full, killed = tmp_path_factory.mktemp("pre_full"), tmp_path_factory.mktemp("pre_killed")
    a = _start("pretrain", PRETRAIN, full)
    b = _start("pretrain", PRETRAIN, killed)
    _kill_after_checkpoint(b, killed / "pretrain.pt")
    partial = torch.load(killed / "pretrain.pt", weights_only=True)
    resumed = _finish(_start("pretrain", ["--resume", *PRETRAIN], killed))
    _finish(a)
    return full, killed, partial, resumed


def test_pretrain_resume_is_exact(pretrain_runs):
    full, killed, partial, resumed = pretrain_runs
    assert not partial["progress"]["done"]  # killed in the middle of pretraining
    assert "resumed from" in resumed
    a = torch.load(full / "pretrain.pt", weights_only=True)
    b = torch.load(killed / "pretrain.pt", weights_only=True)
    assert a["progress"] == b["progress"] == {"epoch": 2, "d_round": 1, "done": True}
    assert b["step"] == a["step"]
    n = _assert_same_tensors(a["generator"]["state_dict"], b["generator"]["state_dict"], "generator")
    n += _assert_same_tensors(a["discriminator"]["state_dict"], b["discriminator"]["state_dict"], "disc")
    n += _assert_same_tensors(a["optimizers"], b["optimizers"], "optimizers")
    assert n > 10
    # the metrics log of the resumed run holds each epoch and round once, with the uninterrupted run's values
    assert _records(full / "metrics.jsonl") == _records(killed / "metrics.jsonl")


def test_adversarial_resume_after_sigkill_is_exact(pretrain_runs, tmp_path):
    full_pre = pretrain_runs[0]
    full, killed = tmp_path / "full", tmp_path / "killed"
    for out in (full, killed):
        out.mkdir()
        (out / "pretrain.pt").write_bytes((full_pre / "pretrain.pt").read_bytes())
    a = _start("adversarial", ADVERSARIAL, full)
    b = _start("adversarial", ADVERSARIAL, killed)
    _kill_after_checkpoint(b, killed / "adversarial.pt")
    partial = torch.load(killed / "adversarial.pt", weights_only=True)
    assert 1 <= partial["epoch"] < 3  # killed in the middle of the adversarial stage
    out = _finish(_start("adversarial", ["--resume", *ADVERSARIAL], killed))
    assert f"resumed from {killed / 'adversarial.pt'} at epoch {partial['epoch']}" in out
    _finish(a)

    x = torch.load(full / "adversarial.pt", weights_only=True)
    y = torch.load(killed / "adversarial.pt", weights_only=True)
    assert x["epoch"] == y["epoch"] == 3
    for part in ("generator", "discriminator"):
        assert _assert_same_tensors(x[part]["state_dict"], y[part]["state_dict"], part) > 0
    # the rest of the training state too: rollout policy, both optimizers, baselines, RNG streams
    assert _assert_same_tensors(x["trainer"], y["trainer"], "trainer") > 10
    assert _assert_same_tensors(x["rank_rng"], y["rank_rng"], "rank_rng") > 0
    assert _records(full / "adversarial_metrics.jsonl") == _records(killed / "adversarial_metrics.jsonl")
    assert json.loads((full / "adversarial_eval.json").read_text()) == json.loads(
        (killed / "adversarial_eval.json").read_text()
    )
