"""Run folders: which files a stage owns, and the rule that a stage never overwrites a run by accident.

A stage (``pretrain``, ``adversarial``) owns a fixed set of files in ``out_dir`` (:data:`OWNED`). A stage
started in a folder that already holds its files refuses to start unless it is told ``resume`` (continue from
the checkpoint) or ``overwrite`` (start again: the stage removes its own files, and nothing else, once its
inputs have been checked and just before it writes). The checks happen before any long computation, so a
refused or failed start loses nothing.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from pathlib import Path

from seqgan.checkpoint import CheckpointError

__all__ = ["OWNED", "RunDirError", "check_run_dir", "claim_run_dir", "owned_files"]

OWNED: dict[str, tuple[str, ...]] = {
    "pretrain": (
        "config.yaml",
        "metrics.jsonl",
        "pretrain.pt",
        "pretrain_[0-9]*.pt",
        "pretrain_curves.png",
        ".pretrain.pt.*",
        ".pretrain_[0-9]*.pt.*",
    ),
    "adversarial": (
        "adversarial_config.yaml",
        "adversarial_metrics.jsonl",
        "adversarial.pt",
        "adversarial_[0-9]*.pt",
        "adversarial_eval.json",
        "adversarial_curves.png",
        ".adversarial.pt.*",
        ".adversarial_[0-9]*.pt.*",
    ),
}
"""Stage -> the names (glob patterns) of the files it writes in ``out_dir``."""
OWNED["trl"] = (
    "trl_config.yaml",
    "trl_metrics.jsonl",
    "trl_sft_metrics.jsonl",
    "trl_eval.json",
    "trl_curves.png",
)

OWNED_DIRS: dict[str, tuple[str, ...]] = {
    "pretrain": ("tb/pretrain",),
    "adversarial": ("tb/adversarial",),
    "trl": ("trl", "policy", "tb/trl"),
}
"""Stage -> the folders it writes in ``out_dir`` (TensorBoard events, ``report_to: [tensorboard]``; a TRL run's
checkpoints and final policy)."""

STAGE_NAMES = {"pretrain": "a pretraining run", "adversarial": "an adversarial run", "trl": "a TRL run"}


class RunDirError(CheckpointError):
    """``out_dir`` cannot take this stage (it holds a run, is not a folder, or cannot be written)."""


def owned_files(out: Path, stage: str) -> list[Path]:
    """The files of ``stage`` present in ``out`` (sorted; temporaries included)."""
    if not out.is_dir():
        return []
    patterns = OWNED[stage]
    return sorted(p for p in out.iterdir() if any(fnmatch.fnmatchcase(p.name, pat) for pat in patterns))


def _checkpoint(out: Path, stage: str) -> Path:
    if stage == "trl":  # TRL's checkpoint-N folders
        steps = [p for p in (out / "trl").glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
        return max(steps, key=lambda p: int(p.name.split("-")[-1]), default=out / "trl" / "checkpoint-N")
    return out / f"{stage}.pt"


def check_run_dir(out: Path, stage: str, resume: bool = False, overwrite: bool = False) -> None:
    """Refuses a start that would lose a run or could not write; call it before any work. Writes nothing.

    Raises:
        RunDirError: ``resume`` and ``overwrite`` together; ``resume`` without a checkpoint; a folder that
            holds this stage's run without either; an ``out_dir`` that is a file or lies under a file.
    """
    if resume and overwrite:
        raise RunDirError("--resume continues a run and --overwrite starts it again: give one of them")
    for parent in (out, *out.parents):
        if parent.exists() and not parent.is_dir():
            raise RunDirError(f"out_dir={out}: {parent} is a file, not a folder")
    if resume:
        if not _checkpoint(out, stage).exists():
            raise RunDirError(f"--resume: no checkpoint to continue from at {_checkpoint(out, stage)}")
        return
    present = [p.name for p in owned_files(out, stage) if not p.name.startswith(".")]
    present += [name for name in OWNED_DIRS[stage] if (out / name).is_dir()]
    if present and not overwrite:
        shown = ", ".join(present[:4]) + (f" and {len(present) - 4} more" if len(present) > 4 else "")
        raise RunDirError(
            f"out_dir={out} already holds {STAGE_NAMES[stage]} ({shown}): add --resume to continue it, or "
            "--overwrite to start it again (which removes those files only)"
        )


def claim_run_dir(out: Path, stage: str, resume: bool = False, overwrite: bool = False) -> list[Path]:
    """Creates ``out`` if needed and checks it can be written; with ``overwrite`` (not resuming) removes this
    stage's files; always removes the temporaries a killed write left behind. Call it once the inputs are checked,
    just before the stage writes.

    Returns:
        The files removed.
    Raises:
        RunDirError: the folder cannot be created or written (one line naming it and the reason).
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".{stage}.probe.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise RunDirError(f"out_dir={out}: cannot write there ({e.strerror or e})") from None
    removed = []
    for path in owned_files(out, stage):
        if path.name.startswith(".") or (overwrite and not resume):
            path.unlink(missing_ok=True)
            removed.append(path)
    if overwrite and not resume:
        for name in OWNED_DIRS[stage]:
            if (out / name).is_dir():
                shutil.rmtree(out / name)
                removed.append(out / name)
    return removed
