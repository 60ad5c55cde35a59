#!/usr/bin/env python
"""Adversarial training (SeqGAN policy gradient with Monte-Carlo rollouts) from an MLE checkpoint.

    python recipes/adversarial.py --config recipes/configs/coco_seqgan.yaml [key=value ...] [--resume]

Each epoch: ``adversarial.g_steps`` generator updates (rewards from R rollouts of a lagged policy), then
``adversarial.d_steps`` rounds of (sample ``d_num_negatives`` sentences, ``d_epochs`` discriminator epochs
against as many real ones). Logs rewards, losses, discriminator accuracy, and on a fixed schedule BLEU,
Self-BLEU, NLL_test (NLL_oracle for oracle configs). Writes ``out_dir/adversarial.pt`` (resumable: generator,
discriminator, rollout policy, optimizers, baselines, RNG, epoch) and ends with an evaluation.

``adversarial.method=scratchgan`` trains from random initialization (tokenizer and models built from the config,
embeddings as ``scratchgan.embedding_init`` says) unless ``adversarial.pretrain_checkpoint`` is set or
``out_dir/pretrain.pt`` exists.
"""

from __future__ import annotations

import seqgan  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads)

# isort: split
import argparse
import json
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from seqgan import distributed
from seqgan.checkpoint import (
    CheckpointError,
    check_compatible,
    drop_records_after,
    load_checkpoint,
    model_differences,
    run_rng_state,
    save_numbered,
    set_run_rng_state,
)
from seqgan.config import ConfigError, load_config, save_config, to_dict
from seqgan.data.datasets import DataError
from seqgan.metrics.evaluator import Evaluator
from seqgan.metrics.suite import METRIC_KEYS, format_table
from seqgan.plotting import plot_curves
from seqgan.trainers import build_trainer
from seqgan.trainers.scratchgan import init_embeddings
from seqgan.training import (
    NonFiniteGuard,
    NonFiniteLossError,
    autocast,
    compile_models,
    load_oracle,
    load_run,
    make_checkpoint,
    new_models,
    prepare_data,
)
from seqgan.utils import resolve_device, seed_everything

EVAL_KEYS = [*METRIC_KEYS, "nll_test", "nll_oracle"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML config (the same file as the pretraining run)")
    p.add_argument("--resume", action="store_true", help="continue from out_dir/adversarial.pt")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. adversarial.epochs=10")
    return p.parse_intermixed_args(argv)


def evaluate(ev: Evaluator, generator, cfg, oracle, seed: int) -> dict:
    metrics, tokens = ev.evaluate(generator, cfg.adversarial.eval_num_samples, cfg.data.max_len, seed=seed)
    if oracle is not None:
        metrics["nll_oracle"] = oracle.nll(tokens.cpu())
    return {f"eval/{k}": v for k, v in metrics.items()}


def main(argv=None) -> Path:
    args = parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    if cfg.conditional.train:  # (context, response) pairs: the chatbot path of seqgan.conditional
        from seqgan.conditional import stages

        return stages.adversarial(cfg, resume=args.resume)
    out = Path(cfg.out_dir)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = distributed.init(resolve_device(cfg.device))  # joins the process group under torchrun
    a = cfg.adversarial
    ckpt_path = out / "adversarial.pt"
    if args.resume and not ckpt_path.is_file():
        raise CheckpointError(f"--resume: no checkpoint to continue from at {ckpt_path}")

    # ---- models: from the MLE checkpoint (or the adversarial one when resuming); ScratchGAN starts from
    # random weights (tokenizer trained on the config's data) when no MLE checkpoint is configured or present
    pre_path = Path(a.pretrain_checkpoint or out / "pretrain.pt")
    data = None
    base, base_name = to_dict(cfg), "config"  # what a checkpoint to resume from must fit
    if a.method == "scratchgan" and not a.pretrain_checkpoint and not pre_path.exists():
        seed_everything(cfg.seed)
        data = prepare_data(cfg)
        tok = data.tokenizer
        generator, discriminator = new_models(cfg, tok, device)
        report = init_embeddings(cfg, tok, generator, discriminator)
        print("training from scratch (no MLE checkpoint)")
        if report:
            print(
                f"embeddings from {cfg.scratchgan.embedding_path}: {report['found']}/{report['total']} tokens "
                f"({report['coverage']:.1%}); the rest keep their random initialisation"
            )
    else:
        run = load_run(pre_path, device)
        if run.discriminator is None:
            raise CheckpointError(f"{pre_path} has no discriminator; run recipes/pretrain.py first")
        if not run.payload.get("progress", {}).get("done", True):
            raise CheckpointError(
                f"{pre_path} is from an unfinished pretraining run ({run.payload['progress']}); finish it "
                "with recipes/pretrain.py --resume"
            )
        ignored = model_differences(run.payload["config"], to_dict(cfg))
        if ignored:  # the checkpoint defines tokenizer and models; say which config keys it overrides
            print(
                f"note: tokenizer and models come from {pre_path}; config keys not used: "
                + "; ".join(ignored)
            )
        base, base_name = run.payload["config"], str(pre_path)
        tok, generator, discriminator = run.tokenizer, run.generator, run.discriminator
    data_rng = seed_everything(distributed.rank_seed(cfg.seed))
    sample_rng = torch.Generator(device=device)
    sample_rng.manual_seed(distributed.rank_seed(cfg.seed) + 1)
    compile_models(cfg.compile, generator, discriminator)
    generator, discriminator = distributed.wrap(generator, device), distributed.wrap(discriminator, device)
    trainer = build_trainer(distributed.per_rank_config(cfg), generator, discriminator, rng=sample_rng)
    trainer.nan_guard = NonFiniteGuard(cfg.nan_policy, cfg.nan_max_consecutive)
    gen_model, disc_model = distributed.unwrap(trainer.generator), distributed.unwrap(trainer.discriminator)

    data = data or prepare_data(cfg, tok)
    train = distributed.shard(data.splits["train"]).to(device)  # this rank's share
    oracle = load_oracle(cfg.data)[0] if cfg.data.synthetic == "oracle" else None
    ev = Evaluator(tok, data.raw["test"], data.splits["test"], cfg.data.lowercase)
    start_epoch = 0
    if args.resume:
        state = load_checkpoint(ckpt_path)
        check_compatible(ckpt_path, state["config"], base, state["tokenizer"], tok.state_dict(), base_name)
        trainer.load_state_dict(state["trainer"])
        start_epoch = state["epoch"]
        set_run_rng_state(state, distributed.rank(), distributed.world_size(), data_rng, sample_rng)
        print(f"resumed from {ckpt_path} at epoch {start_epoch}")
    if distributed.is_main():  # nothing is written before the inputs are checked
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "adversarial_config.yaml")
    logger = distributed.metrics_logger(out, append=args.resume, name="adversarial_metrics.jsonl")
    if args.resume and distributed.is_main():
        drop_records_after(logger.path, "epoch", start_epoch)

    def save(epoch: int) -> None:
        rank_rng = distributed.gather_objects(run_rng_state(data_rng, sample_rng))  # every rank's streams
        distributed.check_in_sync(gen_model, disc_model, when=f"after epoch {epoch}")
        if not distributed.is_main():
            return
        for name, model in (("generator", gen_model), ("discriminator", disc_model)):
            if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
                raise NonFiniteLossError(
                    f"non-finite {name} weights after epoch {epoch}; not saved. {trainer.nan_guard.note}"
                )
        payload = make_checkpoint(  # optimizers, rollout policy and baselines live in the trainer state
            cfg,
            tok,
            gen_model,
            disc_model,
            {},
            trainer.g_steps,
            "adversarial",
            {"epoch": epoch, "trainer": trainer.state_dict(), "rank_rng": rank_rng},
        )
        save_numbered(payload, ckpt_path, epoch, cfg.checkpoint_keep)
        trainer.nan_guard.note = f"the last checkpoint, {ckpt_path} (epoch {epoch}), is left as it was"

    start = time.time()
    if start_epoch == 0 and distributed.is_main():
        metrics = {"epoch": 0, **evaluate(ev, gen_model, cfg, oracle, cfg.seed)}
        logger.log(0, metrics)
        print("before adversarial training: " + _fmt(metrics))

    # ---- the adversarial loop
    bar = tqdm(range(start_epoch + 1, a.epochs + 1), desc="adversarial", disable=None)
    for epoch in bar:
        t0 = time.time()
        with autocast(cfg.precision, device):
            metrics: dict = {"epoch": epoch, **distributed.mean_metrics(trainer.train_epoch(train, data_rng))}
        metrics["time/epoch_s"] = time.time() - t0
        if (epoch % a.eval_every == 0 or epoch == a.epochs) and distributed.is_main():
            metrics.update(evaluate(ev, gen_model, cfg, oracle, cfg.seed))
            tqdm.write(f"epoch {epoch}: " + _fmt(metrics))
        logger.log(epoch, metrics)
        reward = metrics.get("rollout/reward_mean", metrics.get("reward/mean"))  # seqgan / scratchgan
        bar.set_postfix(
            loss_g=f"{metrics.get('generator/pg_loss', metrics.get('generator/loss', float('nan'))):.3f}",
            **({"reward": f"{reward:.3f}"} if reward is not None else {}),
            d_acc=f"{metrics.get('discriminator/acc_fake', float('nan')):.2f}",
        )
        if epoch % a.checkpoint_every == 0 or epoch == a.epochs:
            save(epoch)
    if start_epoch >= a.epochs:
        save(a.epochs)
    main_rank = distributed.is_main()
    distributed.cleanup()
    if not main_rank:
        return ckpt_path

    # ---- final evaluation and curves
    final = evaluate(ev, gen_model, cfg, oracle, cfg.seed + 100)
    final_rows = {"adversarial": {k.split("/", 1)[1]: v for k, v in final.items()}}
    print(format_table(final_rows, [k for k in EVAL_KEYS if k in final_rows["adversarial"]]))
    (out / "adversarial_eval.json").write_text(json.dumps(final_rows["adversarial"], indent=2) + "\n")
    plot_curves(
        logger.path,
        [
            "rollout/reward_mean",
            "reward/mean",
            "discriminator/acc_fake",
            "eval/bleu4",
            "eval/nll_test",
            "eval/nll_oracle",
        ],
        out / "adversarial_curves.png",
        x="epoch",
        title="Adversarial training",
    )
    logger.close()
    print(f"saved {ckpt_path} ({time.time() - start:.1f}s)")
    return ckpt_path


def _fmt(metrics: dict) -> str:
    return ", ".join(f"{k.split('/')[-1]} {v:.4f}" for k, v in metrics.items() if k.startswith("eval/"))


if __name__ == "__main__":
    try:
        main()
    except (ConfigError, DataError, CheckpointError, FileNotFoundError, FloatingPointError) as e:
        sys.exit(f"error: {e}")
