"""Where a run's metrics go: ``metrics.jsonl`` always, TensorBoard and Weights & Biases (offline) on request.

The config's ``report_to`` (Hugging Face ``TrainingArguments`` spelling) lists the sinks:

* ``jsonl``: one JSON object per record in the run folder (``metrics.jsonl`` for pretraining,
  ``adversarial_metrics.jsonl`` for the adversarial stage). It is always written, listed or not: the curves
  (PNG) and ``--resume`` read it;
* ``tensorboard``: scalar event files under ``out_dir/tb/<stage>/`` (the ``tensorboard`` package:
  ``pip install -e ".[tensorboard]"``). A resumed run purges the events written after the checkpoint it resumes
  from, as it does for the JSON lines;
* ``wandb``: a Weights & Biases run in offline mode under ``out_dir/wandb/`` (the ``wandb`` package; nothing
  is sent: ``wandb sync`` uploads it later, if you want to).

:func:`make_reporter` builds the sinks a config asks for; :func:`check_report_to` tells, before a run writes
anything, whether the packages they need are installed. Metric names are slash-namespaced
(``discriminator/acc_fake``, ``eval/bleu4``); non-finite values are written as null (JSON) and skipped
(TensorBoard, W&B).
"""

from __future__ import annotations

import importlib.util
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "REPORTERS",
    "JsonlReporter",
    "Reporter",
    "TensorBoardReporter",
    "WandbReporter",
    "check_report_to",
    "make_reporter",
]

REPORTERS = ("jsonl", "tensorboard", "wandb")
"""The sinks ``report_to`` may name (``none``, Hugging Face's spelling of "no integration", means jsonl only)."""

_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}


def _scalars(metrics: dict) -> dict[str, float | int | None]:
    """Plain numbers (tensors read out); non-finite floats become None; non-numbers are kept for JSON only."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if hasattr(v, "item") and callable(v.item):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[k] = v
    return out


def _numbers(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}


class JsonlReporter:
    """Appends one JSON object per :meth:`log` call to ``<out_dir>/<name>``.

    Each record holds ``step``, ``time`` (seconds since the reporter started) and the metrics.

    Args:
        out_dir: the run folder (created if needed).
        name: the file name.
        append: keep the file's records (a resumed run); else the file starts empty.
    """

    def __init__(self, out_dir: str | Path, name: str = "metrics.jsonl", append: bool = False) -> None:
        self.path = Path(out_dir) / name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not append:
            self.path.write_text("")
        self.start = time.time()

    def log(self, step: int, metrics: dict) -> None:
        record = {"step": step, "time": round(time.time() - self.start, 3), **_scalars(metrics)}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def close(self) -> None:
        return None


class TensorBoardReporter:
    """Scalars to TensorBoard event files in ``log_dir`` (``tag = metric name``, ``global_step = step``).

    Args:
        log_dir: the event folder.
        purge_step: a resumed run's first new step: events at or after it from the earlier run are hidden
            (TensorBoard's ``purge_step``), so the curves show the resumed run's values once.
    """

    def __init__(self, log_dir: str | Path, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(str(self.log_dir), purge_step=purge_step)

    def log(self, step: int, metrics: dict) -> None:
        for k, v in _numbers(_scalars(metrics)).items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbReporter:
    """A Weights & Biases run in offline mode (nothing leaves the machine) under ``out_dir/wandb``.

    Args:
        out_dir: the run folder.
        name: the W&B run name (the stage: ``pretrain``, ``adversarial``).
        config: the run's config as a dict (recorded with the run).
    """

    def __init__(self, out_dir: str | Path, name: str, config: dict | None = None) -> None:
        import wandb

        folder = Path(out_dir) / "wandb"
        folder.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            mode="offline",
            dir=str(Path(out_dir)),
            project="seqgan",
            group=Path(out_dir).resolve().name,
            name=name,
            config=config or {},
            reinit="create_new",
        )

    def log(self, step: int, metrics: dict) -> None:
        self.run.log(_numbers(_scalars(metrics)), step=step)

    def close(self) -> None:
        self.run.finish()


class Reporter:
    """Every sink a run reports to, behind one ``log(step, metrics)`` / ``close()``; ``path`` is the JSON-lines
    file (what the curves and ``--resume`` read)."""

    def __init__(self, jsonl: JsonlReporter, others: Sequence[Any] = ()) -> None:
        self.jsonl = jsonl
        self.others = list(others)
        self.path = jsonl.path

    def log(self, step: int, metrics: dict) -> None:
        self.jsonl.log(step, metrics)
        for sink in self.others:
            sink.log(step, metrics)

    def close(self) -> None:
        for sink in [self.jsonl, *self.others]:
            sink.close()


def normalize_report_to(value: str | Sequence[str] | None) -> list[str]:
    """``report_to`` as a list of sink names (a single name, a comma-separated string, ``none`` or ``all``
    as Hugging Face accepts them; ``all`` means every sink whose package is installed)."""
    if value is None:
        return ["jsonl"]
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [str(n).strip() for n in names if str(n).strip()]
    if names == ["none"] or not names:
        return ["jsonl"]
    if names == ["all"]:
        return ["jsonl", *(n for n, pkg in _PACKAGES.items() if importlib.util.find_spec(pkg) is not None)]
    return names


def check_report_to(report_to: Sequence[str]) -> None:
    """Raises ``ConfigError`` (one line) when a sink's package is not installed; call it before writing."""
    from seqgan.config import ConfigError

    for name in report_to:
        if name not in REPORTERS:
            raise ConfigError(f"report_to: unknown sink {name!r}; choose from {list(REPORTERS)} (or none)")
        package = _PACKAGES.get(name)
        if package and importlib.util.find_spec(package) is None:
            extra = f' (pip install -e ".[{name}]")' if name == "tensorboard" else ""
            raise ConfigError(
                f"report_to includes {name} but the {package} package is not installed: pip install {package}"
                f"{extra}, or drop it from report_to"
            )


def make_reporter(
    out_dir: str | Path,
    report_to: Sequence[str] = ("jsonl",),
    name: str = "metrics.jsonl",
    stage: str = "pretrain",
    append: bool = False,
    first_step: int | None = None,
    config: dict | None = None,
) -> Reporter:
    """The sinks of ``report_to`` for one stage of a run.

    Args:
        out_dir: the run folder.
        report_to: sink names (see :data:`REPORTERS`); ``jsonl`` is always included.
        name: the JSON-lines file name.
        stage: names the TensorBoard subfolder (``tb/<stage>``) and the W&B run.
        append: a resumed run: keep the JSON lines and purge TensorBoard events from ``first_step`` on.
        first_step: a resumed run's first new step (for TensorBoard's purge).
        config: the run's config, recorded by W&B.
    Raises:
        ConfigError: an unknown sink, or one whose package is not installed.
    """
    check_report_to(report_to)
    others: list[Any] = []
    if "tensorboard" in report_to:
        others.append(TensorBoardReporter(Path(out_dir) / "tb" / stage, first_step if append else None))
    if "wandb" in report_to:
        others.append(WandbReporter(out_dir, stage, config))
    return Reporter(JsonlReporter(out_dir, name, append), others)
