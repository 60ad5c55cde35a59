"""The adversarial stage: any method's epochs from an MLE checkpoint (or from scratch), for either task.

The stage builds the data, the models (:func:`start_models`) and the trainer from the config, then runs the
library's loop, :func:`seqgan.loop.fit`. Each epoch is the trainer's own schedule (:meth:`~seqgan.trainers.base.AdversarialTrainer.train_epoch`; the
method is ``adversarial.method``, its settings the section of that name). Every ``adversarial.eval_every``
epochs (and before the first) the task's evaluation runs (BLEU, Self-BLEU, NLL_test, NLL_oracle; response
metrics for pairs), and every ``checkpoint_every`` epochs ``out_dir/adversarial.pt`` is written (models,
trainer state with optimizers, rollout policy and baselines, every process's RNG streams, epoch), so
``resume`` continues exactly. Ends with a final evaluation (``adversarial_eval.json``) and
``adversarial_curves.png``. Runs under ``torchrun`` (DDP: data sharded, per-update counts divided, one
process evaluates and writes).

A method that trains from scratch (``scratchgan``) builds the tokenizer and fresh models from the config when
neither ``adversarial.pretrain_checkpoint`` nor ``out_dir/pretrain.pt`` exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from seqgan import distributed
from seqgan.checkpoint import IGNORED_KEYS, MODEL_KEYS, CheckpointError
from seqgan.config import Config, config_from_saved, explicit_keys, from_dict, inactive_settings, to_dict
from seqgan.data.tokenizers import Tokenizer
from seqgan.loop import Callback, fit
from seqgan.reporting import check_report_to
from seqgan.runs import RunData, check_stage_models, evaluation, load_run, new_models, prepare_data, task_of
from seqgan.runtime import compile_models, resolve_device
from seqgan.stages.pretrain import _shard, check_single_process
from seqgan.stages.rundir import check_run_dir
from seqgan.trainers import build_trainer
from seqgan.trainers.scratchgan import init_embeddings
from seqgan.utils import seed_everything

__all__ = ["Start", "adversarial", "apply_dropout", "fit_to_checkpoint", "start_models"]


@dataclass
class Start:
    """What an adversarial run starts from (see :func:`start_models`)."""

    cfg: Config
    """The run's config, with the model settings of the pretrained run it starts from."""
    tokenizer: Tokenizer
    generator: torch.nn.Module
    discriminator: torch.nn.Module
    data: RunData | None
    """The prepared data when it was needed to build the models (training from scratch), else None."""
    base: dict
    """The config a checkpoint to resume from must fit (the pretrained run's, or this one's)."""
    base_name: str


def start_models(cfg: Config, device: torch.device) -> Start:
    """The models an adversarial run starts from.

    From ``adversarial.pretrain_checkpoint`` (default ``out_dir/pretrain.pt``), or fresh from the config for a
    method that trains from scratch when there is no such checkpoint. With a checkpoint, the config's model
    settings are fitted to it (:func:`fit_to_checkpoint`).

    Raises:
        CheckpointError: no MLE checkpoint (and the method does not train from scratch); a checkpoint without a
            discriminator, from an unfinished pretraining run, of the other task, with a discriminator the
            method cannot use, or whose shapes an explicit setting contradicts.
    """
    a = cfg.adversarial
    pre_path = Path(a.pretrain_checkpoint or Path(cfg.out_dir) / "pretrain.pt")
    if not cfg.method.mle_pretrain and not a.pretrain_checkpoint and not pre_path.exists():
        data = prepare_data(cfg)
        generator, discriminator = new_models(cfg, data.tokenizer, device, data.classes)
        report = init_embeddings(cfg, data.tokenizer, generator, discriminator)
        print("training from scratch (no MLE checkpoint)")
        if report:
            print(
                f"embeddings from {cfg.scratchgan.embedding_path}: {report['found']}/{report['total']} tokens "
                f"({report['coverage']:.1%}); the rest keep their random initialisation"
            )
        return Start(cfg, data.tokenizer, generator, discriminator, data, to_dict(cfg), "config")
    if not pre_path.is_file():
        raise CheckpointError(
            f"no MLE checkpoint at {pre_path}: run recipes/pretrain.py with this config first, or set "
            "adversarial.pretrain_checkpoint"
        )
    run = load_run(pre_path, device)
    if run.discriminator is None:
        raise CheckpointError(f"{pre_path} has no discriminator; run recipes/pretrain.py first")
    if not run.payload.get("progress", {}).get("done", True):
        raise CheckpointError(
            f"{pre_path} is from an unfinished pretraining run ({run.payload['progress']}); finish it with "
            "recipes/pretrain.py --resume"
        )
    if run.cfg.task != cfg.task:
        raise CheckpointError(
            f"{pre_path} holds a model of the {run.cfg.task} task but this config trains {cfg.task} "
            "(conditional.train decides the task)"
        )
    kind = run.discriminator.spec().get("kind", "cnn")
    if cfg.task == "sentences" and kind not in cfg.method.accepts:
        raise CheckpointError(
            f"{pre_path} holds a {kind} discriminator; adversarial.method={a.method} needs "
            f"discriminator.kind={' or '.join(cfg.method.accepts)} (pretrain with it)"
        )
    fitted = fit_to_checkpoint(cfg, run.payload["config"], str(pre_path))
    for what, model in (("generator", run.generator), ("discriminator", run.discriminator)):
        rate = getattr(fitted, what).dropout
        if f"{what}.dropout" in explicit_keys(cfg) and rate != getattr(run.cfg, what).dropout:
            apply_dropout(model, rate, what)
    return Start(
        fitted, run.tokenizer, run.generator, run.discriminator, None, run.payload["config"], str(pre_path)
    )


DROPOUT_KEYS = ("generator.dropout", "discriminator.dropout")


def fit_to_checkpoint(cfg: Config, saved: dict, source: str) -> Config:
    """``cfg`` with the model settings of a pretrained run: the tokenizer, model and sequence-length keys that
    fix its weights (:data:`~seqgan.checkpoint.MODEL_KEYS`) are taken from ``saved`` (the checkpoint's config)
    unless ``cfg`` sets them explicitly (:func:`~seqgan.config.explicit_keys`); an explicit value that
    contradicts the checkpoint is refused. An explicit dropout rate changes no weight: it is kept for the caller to
    apply (:func:`apply_dropout`); an implicit one is taken from the checkpoint like the rest.
    The returned config describes the models the run trains (it is what the adversarial checkpoint records).

    Raises:
        CheckpointError: one line naming every explicit setting that cannot apply to the pretrained models.
    """
    saved_tree = to_dict(config_from_saved(saved))
    mine, theirs = _flat(to_dict(cfg)), _flat(saved_tree)
    explicit = explicit_keys(cfg)
    refused, adopted = [], {}
    for key in sorted(set(mine) & set(theirs)):
        if not any(key.startswith(k) if k.endswith(".") else key == k for k in MODEL_KEYS):
            continue
        if mine[key] == theirs[key] or (key in IGNORED_KEYS and key not in DROPOUT_KEYS):
            continue
        if key in DROPOUT_KEYS and key in explicit:
            continue  # changes no weight: the caller applies it (apply_dropout)
        if key in explicit:
            refused.append(f"{key}={mine[key]!r} (the checkpoint has {theirs[key]!r})")
        else:
            adopted[key] = theirs[key]
    if refused:
        raise CheckpointError(
            f"{source} fixes the tokenizer and the model shapes, and these settings cannot apply to it: "
            + "; ".join(refused)
            + "; drop them, or pretrain again with them"
        )
    if not adopted:
        return cfg
    tree = to_dict(cfg)
    for key, value in adopted.items():
        section, name = key.split(".", 1)
        tree[section][name] = value
    fitted = from_dict(Config, tree)
    fitted._set_keys = explicit
    return fitted


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def apply_dropout(model: torch.nn.Module, rate: float, what: str) -> None:
    """Sets every dropout of a loaded ``model`` to ``rate`` (and what its ``spec()`` records).

    Raises:
        CheckpointError: the model keeps its dropout rates elsewhere (a Hugging Face transformer).
    """
    if not hasattr(model, "dropout_p"):
        raise CheckpointError(
            f"{what}.dropout cannot be changed on a pretrained {type(model).__name__}; drop the override"
        )
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = rate
        elif isinstance(module, torch.nn.LSTM) and module.num_layers > 1:
            module.dropout = rate
        if hasattr(module, "dropout_p"):
            module.dropout_p = rate


def adversarial(
    cfg: Config, resume: bool = False, overwrite: bool = False, callbacks: Sequence[Callback] = ()
) -> Path:
    """Adversarial training for ``cfg``: builds the data, the models and the trainer, then runs
    :func:`seqgan.loop.fit`; returns the path of ``out_dir/adversarial.pt``.

    Args:
        cfg: the run's config (``adversarial`` loop, the method's section, the task).
        resume: continue from ``out_dir/adversarial.pt``.
        overwrite: start again in an ``out_dir`` that holds an adversarial run (its files are removed once the
            inputs are checked).
        callbacks: :class:`~seqgan.loop.Callback` objects for the loop.
    Raises:
        RunDirError, ConfigError, DataError, CheckpointError: bad input (nothing written).
        NonFiniteLossError: NaN/inf under ``nan_policy=stop`` (the last checkpoint is left as it was).
    """
    check_run_dir(Path(cfg.out_dir), "adversarial", resume, overwrite)  # before any work
    check_report_to(cfg.report_to)
    check_stage_models(cfg)
    task = task_of(cfg)
    device = distributed.init(resolve_device(cfg.device))  # joins the process group under torchrun
    check_single_process(cfg)
    a = cfg.adversarial
    for key in inactive_settings(cfg):
        print(f"note: {key} has no effect with adversarial.method={a.method}")

    # ---- models: from the MLE checkpoint (the config fitted to it), or fresh for a method from scratch
    seed_everything(cfg.seed)
    begin = start_models(cfg, device)
    cfg, tok, generator, discriminator = begin.cfg, begin.tokenizer, begin.generator, begin.discriminator
    base, base_name = begin.base, begin.base_name
    data = begin.data or prepare_data(cfg, tok)
    task.check_models(generator, data, base_name)
    data_rng = seed_everything(distributed.rank_seed(cfg.seed))
    sample_rng = torch.Generator(device=device)
    sample_rng.manual_seed(distributed.rank_seed(cfg.seed) + 1)
    compile_models(cfg.compile, generator, discriminator)
    generator, discriminator = distributed.wrap(generator, device), distributed.wrap(discriminator, device)
    train = _shard(data.splits["train"]).to(device)  # this rank's share
    trainer = build_trainer(
        distributed.per_rank_config(cfg), generator, discriminator, rng=sample_rng, data_rng=data_rng,
        **task.trainer_data(train),
    )  # fmt: skip
    state = fit(
        trainer, train, cfg, tok, evaluate=evaluation(cfg, data, task), callbacks=callbacks, resume=resume,
        overwrite=overwrite, data_rng=data_rng, base_config=(base, base_name), eval_keys=task.eval_keys,
    )  # fmt: skip
    return state.checkpoint or Path(cfg.out_dir) / "adversarial.pt"
