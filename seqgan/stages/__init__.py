"""The stages of a run, for either task: :func:`pretrain` (MLE, then discriminator pretraining),
:func:`adversarial` (any method's adversarial epochs), :func:`evaluate_checkpoint` / :func:`evaluate_files`
(the evaluation table) and :func:`run_pipeline` / :func:`run_seeds` (all of them, once or per seed).

The recipes in ``recipes/`` are command-line front ends to these functions. Every stage checks its inputs and
its run folder before it writes anything (:mod:`seqgan.stages.rundir`); :data:`USER_ERRORS` are the exceptions
that mean bad input (a one-line message, nothing lost) rather than a bug.
"""

from __future__ import annotations

from seqgan.checkpoint import CheckpointError
from seqgan.config import ConfigError
from seqgan.data.datasets import DataError
from seqgan.stages.adversarial import adversarial
from seqgan.stages.evaluate import EvalOptions, evaluate_checkpoint, evaluate_files
from seqgan.stages.pipeline import run_pipeline, run_seeds
from seqgan.stages.pretrain import pretrain
from seqgan.stages.rundir import RunDirError

__all__ = [
    "USER_ERRORS",
    "EvalOptions",
    "RunDirError",
    "adversarial",
    "evaluate_checkpoint",
    "evaluate_files",
    "pretrain",
    "run_cli",
    "run_pipeline",
    "run_seeds",
]

USER_ERRORS = (ConfigError, DataError, CheckpointError, FileNotFoundError, FloatingPointError)
"""Exceptions that report bad input or a stopped run in one line (RunDirError is a CheckpointError;
NonFiniteLossError a FloatingPointError)."""


def run_cli(main) -> None:
    """Runs a recipe's ``main()``: an error of :data:`USER_ERRORS` prints ``error: <one line>`` to stderr and
    exits with status 1 (no traceback); anything else is a bug and keeps its traceback."""
    import os
    import sys

    from seqgan import distributed

    try:
        main()
    except USER_ERRORS as e:
        sys.exit(f"error: {e}")
    if distributed.launched_by_torchrun():
        # The work is done and the process group destroyed; skip the interpreter's finalisation, during which
        # gloo's worker threads can abort the process ("terminate called without an active exception") and
        # turn a finished run into a failed one.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
