"""Run utilities: seeding, the Adam optimizer, structured metrics logging."""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seeds Python, NumPy and torch; returns a CPU ``torch.Generator`` seeded the same way for data order."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def adam(params, lr: float, **kwargs) -> torch.optim.Adam:
    """``torch.optim.Adam`` with the fused kernel when every parameter is a float tensor on the CPU or CUDA.

    The fused update is one kernel per parameter instead of a dozen elementwise passes: on the CPU it is about
    8x faster per step for the discriminator's 3.5M parameters, which matters when a step is a few milliseconds
    of model work. Same algorithm, same hyperparameters (``kwargs`` are passed through).
    """
    params = list(params)
    tensors = [p for group in params for p in (group["params"] if isinstance(group, dict) else [group])]
    fused = bool(tensors) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in tensors)
    return torch.optim.Adam(params, lr=lr, fused=fused or None, **kwargs)


class MetricsLogger:
    """Appends one JSON object per call to ``<out_dir>/metrics.jsonl`` (and TensorBoard when asked).

    Each record holds ``step``, ``time`` (seconds since the logger started) and slash-namespaced metrics
    (``generator/nll``, ``eval/nll_test``). Non-finite values are written as null.
    """

    def __init__(
        self,
        out_dir: str | Path,
        tensorboard: bool = False,
        append: bool = False,
        name: str = "metrics.jsonl",
    ):
        self.path = Path(out_dir) / name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not append:
            self.path.write_text("")
        self.start = time.time()
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(Path(out_dir) / "tb"))
            except ImportError:
                print("tensorboard is not installed; logging to metrics.jsonl only")

    def log(self, step: int, metrics: dict) -> None:
        clean = {}
        for k, v in metrics.items():
            if isinstance(v, torch.Tensor):
                v = v.item()
            if isinstance(v, float) and not math.isfinite(v):
                v = None
            clean[k] = v
        record = {"step": step, "time": round(time.time() - self.start, 3), **clean}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in clean.items():
                if isinstance(v, int | float):
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_metrics(path: str | Path) -> list[dict]:
    """Records of a metrics.jsonl file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
