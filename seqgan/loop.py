"""The adversarial training loop as a library call: :func:`fit` runs any trainer's epochs with evaluation on a
schedule, checkpoints, exact resume, the NaN policy, metric reporting and callbacks.

::

    state = fit(trainer, train, cfg, tokenizer, evaluate=evaluation(cfg, data), callbacks=[EarlyStopping(...)])

One step of the loop is one **adversarial epoch**: a round of the trainer's own schedule
(:meth:`~seqgan.trainers.base.AdversarialTrainer.train_epoch`; for SeqGAN ``g_steps`` generator updates, then
``d_steps`` discriminator rounds). The schedule comes from the config: ``adversarial.epochs``,
``eval_every``, ``checkpoint_every``, ``log_every``, ``checkpoint_keep``, ``precision``, ``report_to``,
``out_dir`` (Hugging Face's ``max_steps``, ``eval_steps``, ``save_steps``, ``logging_steps``,
``save_total_limit``, ``bf16``, ``output_dir`` are accepted for them, see :data:`seqgan.config.HF_ALIASES`).

What :func:`fit` writes in ``out_dir``: ``adversarial_config.yaml``; ``adversarial_metrics.jsonl`` (and the
other ``report_to`` sinks); ``adversarial.pt`` every ``checkpoint_every`` epochs and at the end (atomic; with
``checkpoint_keep = K`` also the last K as ``adversarial_0007.pt``), holding the config, the tokenizer, both
models with their specs, the trainer's state (optimizers, rollout policy, baselines, NaN counters), every
process's random streams, the epoch and the callbacks' states, so that ``fit(..., resume=True)`` continues
exactly; after training, the final evaluation (``adversarial_eval.json``) and ``adversarial_curves.png``.

Callbacks (:class:`Callback`) see a :class:`FitState` at each hook and can stop the run
(``state.stop("reason")``): the loop then ends after the current epoch, writes a checkpoint and runs the final
evaluation. A NaN/inf loss follows ``nan_policy`` (the trainers' :class:`~seqgan.trainers.base.NonFiniteGuard`);
weights that are not finite are never saved. Under ``torchrun`` every process calls :func:`fit`; rank 0
evaluates, reports and writes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from seqgan import distributed
from seqgan.checkpoint import (
    check_compatible,
    drop_records_after,
    load_checkpoint,
    run_rng_state,
    save_numbered,
    set_run_rng_state,
)
from seqgan.config import Config, save_config, to_dict
from seqgan.data.tokenizers import Tokenizer
from seqgan.plotting import plot_curves
from seqgan.runtime import autocast
from seqgan.trainers.base import AdversarialTrainer, NonFiniteLossError

__all__ = ["Callback", "EarlyStopping", "FitState", "fit"]

CURVES = (
    "rollout/reward_mean",
    "reward/mean",
    "discriminator/acc_fake",
    "evolution/fitness",
    "eval/bleu4",
    "eval/bleu2",
    "eval/nll_test",
    "eval/nll_oracle",
    "eval/class_acc",
)
"""The metrics ``adversarial_curves.png`` plots (those a run has)."""


@dataclass
class FitState:
    """What the loop knows, as the callbacks see it."""

    trainer: AdversarialTrainer
    out_dir: Path
    epochs: int
    """The epoch the run ends at (``adversarial.epochs``)."""
    epoch: int = 0
    """Epochs done (0 before the first)."""
    metrics: dict[str, float] = field(default_factory=dict)
    """The last epoch's training metrics (slash-namespaced: ``discriminator/acc_fake``)."""
    eval_metrics: dict[str, float] = field(default_factory=dict)
    """The last evaluation (``eval/bleu4``, ...)."""
    checkpoint: Path | None = None
    """The last checkpoint written."""
    final_metrics: dict[str, float] = field(default_factory=dict)
    """The final evaluation, after training (without the ``eval/`` prefix, as in ``adversarial_eval.json``)."""
    should_stop: bool = False
    stop_reason: str = ""

    def stop(self, reason: str = "stopped by a callback") -> None:
        """Ends the run after the current epoch (a checkpoint and the final evaluation follow)."""
        self.should_stop, self.stop_reason = True, reason


class Callback:
    """Hooks :func:`fit` calls; override the ones you need (each gets the :class:`FitState`).

    ``state_dict`` / ``load_state_dict`` let a callback with memory (a patience counter) resume exactly: what
    they return is stored in the checkpoint (plain values and tensors only).
    """

    def on_train_begin(self, state: FitState) -> None:
        """Before the first epoch (after a resume: before the first new one)."""

    def on_step_end(self, state: FitState) -> None:
        """After each epoch, with its metrics in ``state.metrics`` (and ``state.eval_metrics`` updated when the
        epoch was evaluated: :meth:`on_evaluate` runs first)."""

    def on_evaluate(self, state: FitState, metrics: dict[str, float]) -> None:
        """After each evaluation (the first before training, at epoch 0; rank 0 only)."""

    def on_save(self, state: FitState, path: Path) -> None:
        """After a checkpoint is written (rank 0 only)."""

    def on_train_end(self, state: FitState) -> None:
        """After the final evaluation (or the last epoch when there is no evaluation)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None


class EarlyStopping(Callback):
    """Stops when an evaluated metric has not improved for ``patience`` evaluations in a row.

    Args:
        monitor: the metric (``eval/bleu4``, ``eval/nll_test``; the ``eval/`` prefix may be left out).
        mode: ``max`` (higher is better) or ``min``.
        patience: evaluations without improvement before stopping (the one before training counts as the
            first value).
        min_delta: the smallest change that counts as an improvement.
    """

    def __init__(self, monitor: str, mode: str = "max", patience: int = 3, min_delta: float = 0.0) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"EarlyStopping mode must be 'max' or 'min', got {mode!r}")
        if patience < 1:
            raise ValueError(f"EarlyStopping patience must be at least 1, got {patience}")
        self.monitor = monitor if "/" in monitor else f"eval/{monitor}"
        self.mode, self.patience, self.min_delta = mode, patience, min_delta
        self.best: float | None = None
        self.best_epoch = 0
        self.bad = 0

    def on_evaluate(self, state: FitState, metrics: dict[str, float]) -> None:
        if self.monitor not in metrics:
            raise KeyError(f"EarlyStopping: the evaluation has no {self.monitor!r}; it has {sorted(metrics)}")
        value = float(metrics[self.monitor])
        sign = 1.0 if self.mode == "max" else -1.0
        if self.best is None or sign * (value - self.best) > self.min_delta:
            self.best, self.best_epoch, self.bad = value, state.epoch, 0
            return
        self.bad += 1
        if self.bad >= self.patience:
            state.stop(
                f"early stopping: {self.monitor} has not improved on {self.best:.4f} (epoch {self.best_epoch}) "
                f"for {self.bad} evaluations"
            )

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad": self.bad}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.bad = state["best"], int(state["best_epoch"]), int(state["bad"])


Evaluate = Callable[[nn.Module, int], dict[str, float]]
"""``(generator, seed) -> metrics`` (without the ``eval/`` prefix): the evaluation :func:`fit` schedules."""


def fit(
    trainer: AdversarialTrainer,
    train: Any,
    cfg: Config,
    tokenizer: Tokenizer,
    *,
    evaluate: Evaluate | None = None,
    callbacks: Sequence[Callback] = (),
    resume: bool = False,
    overwrite: bool = False,
    data_rng: torch.Generator | None = None,
    base_config: tuple[dict, str] | None = None,
    eval_keys: Sequence[str] = (),
) -> FitState:
    """Trains ``trainer`` for ``cfg.adversarial.epochs`` epochs in ``cfg.out_dir`` (see the module docstring).

    Args:
        trainer: any method's trainer (:func:`seqgan.trainers.build_trainer`); its models may be DDP-wrapped.
        train: the real training rows its ``train_epoch`` draws from (``(N, T)`` ids; the conditional task's
            pairs; the category task's labelled sentences).
        cfg: the run's config (schedule, ``out_dir``, precision, reporting; recorded in the checkpoints).
        tokenizer: recorded in the checkpoints, so that :func:`seqgan.runs.load_run` and the recipes can use
            them.
        evaluate: ``(generator, seed) -> metrics``, run before training, every ``eval_every`` epochs, at the
            last epoch and once more after training (seed + 100); none: no evaluation.
            :func:`seqgan.runs.evaluation` gives the task's standard one.
        callbacks: :class:`Callback` objects, called in order.
        resume: continue from ``out_dir/adversarial.pt`` (the trainer must be built as it was for the run).
        overwrite: start again in an ``out_dir`` that holds an adversarial run (its files are removed).
        data_rng: the data-order generator (default: seeded with ``cfg.seed`` and the process's rank). The
            global RNGs (dropout) are not reseeded here: call :func:`seqgan.utils.seed_everything` first.
        base_config: ``(config, name)`` a checkpoint to resume must fit (default: ``cfg`` itself).
        eval_keys: the columns of the final evaluation's printed table (default: all).
    Returns:
        The final :class:`FitState` (``final_metrics``, ``checkpoint``, ``epoch``, ``stop_reason``).
    Raises:
        RunDirError: ``out_dir`` holds a run and neither ``resume`` nor ``overwrite`` is given, or cannot be
            written.
        CheckpointError: the checkpoint to resume does not fit the trainer.
        NonFiniteLossError: NaN/inf under ``nan_policy=stop`` (the last checkpoint is left as it was).
        ConfigError: a ``report_to`` sink whose package is missing.
    """
    from seqgan.metrics.suite import format_table
    from seqgan.reporting import check_report_to
    from seqgan.stages.rundir import check_run_dir, claim_run_dir  # the stages build on this module

    out = Path(cfg.out_dir)
    ckpt_path = out / "adversarial.pt"
    a = cfg.adversarial
    check_run_dir(out, "adversarial", resume, overwrite)
    check_report_to(cfg.report_to)
    callbacks = list(callbacks)
    gen_model = distributed.unwrap(trainer.generator)
    disc_model = distributed.unwrap(trainer.discriminator)
    if data_rng is None:
        data_rng = torch.Generator().manual_seed(distributed.rank_seed(cfg.seed))
    sample_rng = trainer.rng
    if sample_rng is None:
        raise ValueError("fit needs a trainer with its own sampling generator (build_trainer(..., rng=...))")
    device = gen_model.device if hasattr(gen_model, "device") else next(gen_model.parameters()).device
    state = FitState(trainer, out, a.epochs)

    if resume:
        payload = load_checkpoint(ckpt_path)
        base, base_name = base_config or (to_dict(cfg), "config")
        check_compatible(
            ckpt_path, payload["config"], base, payload["tokenizer"], tokenizer.state_dict(), base_name
        )
        trainer.load_state_dict(payload["trainer"])
        state.epoch = int(payload["epoch"])
        set_run_rng_state(payload, distributed.rank(), distributed.world_size(), data_rng, sample_rng)
        _restore_callbacks(callbacks, payload.get("callbacks", []))
        print(f"resumed from {ckpt_path} at epoch {state.epoch}")
    distributed.any_rank(False)  # a barrier: every process has checked the folder before rank 0 writes to it
    if distributed.is_main():  # nothing is written before the inputs are checked
        claim_run_dir(out, "adversarial", resume, overwrite)
        save_config(cfg, out / "adversarial_config.yaml")
    logger = distributed.metrics_logger(
        out,
        report_to=cfg.report_to,
        name="adversarial_metrics.jsonl",
        stage="adversarial",
        append=resume,
        first_step=state.epoch + 1,
        config=to_dict(cfg),
    )
    if resume and distributed.is_main():
        drop_records_after(logger.path, "epoch", state.epoch)

    def run_evaluation(seed: int) -> dict[str, float]:
        metrics = {f"eval/{k}": v for k, v in evaluate(gen_model, seed).items()}  # type: ignore[misc]
        state.eval_metrics = metrics
        for callback in callbacks:
            callback.on_evaluate(state, metrics)
        return metrics

    def save(epoch: int) -> None:
        from seqgan.runs import make_checkpoint

        rank_rng = distributed.gather_objects(run_rng_state(data_rng, sample_rng))  # every rank's streams
        distributed.check_in_sync(gen_model, disc_model, when=f"after epoch {epoch}")
        if not distributed.is_main():
            return
        for name, model in (("generator", gen_model), ("discriminator", disc_model)):
            if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
                raise NonFiniteLossError(
                    f"non-finite {name} weights after epoch {epoch}, not saved; {trainer.nan_guard.note}"
                )
        payload = make_checkpoint(  # optimizers, rollout policy and baselines live in the trainer state
            cfg, tokenizer, gen_model, disc_model, {}, trainer.g_steps, "adversarial",
            {"epoch": epoch, "trainer": trainer.state_dict(), "rank_rng": rank_rng,
             "callbacks": _callback_states(callbacks)},
        )  # fmt: skip
        state.checkpoint = save_numbered(payload, ckpt_path, epoch, cfg.checkpoint_keep)
        trainer.nan_guard.note = f"the last checkpoint, {ckpt_path} (epoch {epoch}), is left as it was"
        for callback in callbacks:
            callback.on_save(state, ckpt_path)

    start = time.time()
    for callback in callbacks:
        callback.on_train_begin(state)
    if state.epoch == 0 and distributed.is_main() and evaluate is not None:
        metrics = {"epoch": 0, **run_evaluation(cfg.seed)}
        logger.log(0, metrics)
        print("before adversarial training: " + _fmt(metrics))

    # ---- the adversarial loop
    window: list[dict] = []
    last_saved = state.epoch if resume else -1
    bar = tqdm(range(state.epoch + 1, a.epochs + 1), desc="adversarial", disable=None)
    for epoch in bar:
        t0 = time.time()
        with autocast(cfg.precision, device):
            metrics: dict = distributed.mean_metrics(trainer.train_epoch(train, data_rng))
        metrics["time/epoch_s"] = time.time() - t0
        state.epoch, state.metrics = epoch, metrics
        window.append(metrics)
        record: dict = {}
        if epoch % a.log_every == 0 or epoch == a.epochs:
            record = _mean(window)
            window = []
        evaluated = (epoch % a.eval_every == 0 or epoch == a.epochs) and evaluate is not None
        if evaluated and distributed.is_main():
            record = {**(record or _mean(window)), **run_evaluation(cfg.seed)}
            window = []
            tqdm.write(f"epoch {epoch}: " + _fmt(record))
        if record:
            logger.log(epoch, {"epoch": epoch, **record})
        bar.set_postfix(_progress(metrics))
        for callback in callbacks:
            callback.on_step_end(state)
        stop = distributed.any_rank(state.should_stop)
        if epoch % a.checkpoint_every == 0 or epoch == a.epochs or stop:
            save(epoch)
            last_saved = epoch
        if stop:
            state.should_stop = True
            if window and distributed.is_main():
                logger.log(epoch, {"epoch": epoch, **_mean(window)})
            print(f"stopping after epoch {epoch}: {state.stop_reason or 'stopped on another process'}")
            break
    bar.close()
    if last_saved < 0:  # no epoch to run (adversarial.epochs=0): the starting models are the checkpoint
        save(state.epoch)
    main_rank = distributed.is_main()
    distributed.cleanup()
    if main_rank:
        # ---- final evaluation and curves
        if evaluate is not None:
            final = dict(evaluate(gen_model, cfg.seed + 100))
            state.final_metrics = final
            keys = [k for k in eval_keys if k in final] or list(final)
            print(format_table({"adversarial": final}, keys))
            (out / "adversarial_eval.json").write_text(json.dumps(final, indent=2) + "\n")
        plot_curves(
            logger.path, list(CURVES), out / "adversarial_curves.png", x="epoch", title="Adversarial training"
        )
        print(f"saved {ckpt_path} ({time.time() - start:.1f}s)")
    logger.close()
    for callback in callbacks:
        callback.on_train_end(state)
    return state


def _callback_states(callbacks: Sequence[Callback]) -> list[dict]:
    """The checkpoint entry of the callbacks that have a state: ``{"name": class name, "state": ...}``."""
    out = []
    for callback in callbacks:
        saved = callback.state_dict()
        if saved:
            out.append({"name": type(callback).__qualname__, "state": saved})
    return out


def _restore_callbacks(callbacks: Sequence[Callback], saved: list[dict]) -> None:
    """Gives each saved state to the next given callback of the same class (in order); says which saved states
    found no callback (their memory starts afresh)."""
    pending = list(saved)
    for callback in callbacks:
        name = type(callback).__qualname__
        match = next((i for i, entry in enumerate(pending) if entry["name"] == name), None)
        if match is not None:
            callback.load_state_dict(pending.pop(match)["state"])
    for entry in pending:
        print(
            f"note: the checkpoint holds the state of a {entry['name']} callback that this run does not have"
        )


def _mean(records: list[dict]) -> dict:
    """The mean of each numeric metric over ``records`` (the last value for the rest)."""
    if len(records) == 1:
        return dict(records[0])
    out: dict = {}
    for key in dict.fromkeys(k for r in records for k in r):
        values = [r[key] for r in records if key in r]
        numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        out[key] = sum(numbers) / len(numbers) if len(numbers) == len(values) else values[-1]
    return out


def _progress(metrics: dict) -> dict[str, str]:
    """The progress bar's summary: each method's own reward and generator loss, the discriminator's accuracy."""
    nan = float("nan")
    out = {"loss_g": f"{metrics.get('generator/pg_loss', metrics.get('generator/loss', nan)):.3f}"}
    reward = metrics.get("rollout/reward_mean", metrics.get("reward/mean"))  # seqgan / scratchgan
    if reward is not None:
        out["reward"] = f"{reward:.3f}"
    out["d_acc"] = f"{metrics.get('discriminator/acc_fake', nan):.2f}"
    return out


def _fmt(metrics: dict) -> str:
    return ", ".join(f"{k.split('/')[-1]} {v:.4f}" for k, v in metrics.items() if k.startswith("eval/"))
