#!/usr/bin/env python
"""Adversarial training (SeqGAN policy gradient with Monte-Carlo rollouts) from an MLE checkpoint.

    python recipes/adversarial.py --config recipes/configs/coco_seqgan.yaml [key=value ...] [--resume]

Each epoch: ``adversarial.g_steps`` generator updates (rewards from R rollouts of a lagged policy), then
``adversarial.d_steps`` rounds of (sample ``d_num_negatives`` sentences, ``d_epochs`` discriminator epochs
against as many real ones). Logs rewards, losses, discriminator accuracy, and on a fixed schedule BLEU,
Self-BLEU, NLL_test (NLL_oracle for oracle configs). Writes ``out_dir/adversarial.pt`` (resumable: generator,
discriminator, rollout policy, optimizers, baselines, RNG, epoch) and ends with an evaluation.
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

from seqgan.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, set_rng_state
from seqgan.config import ConfigError, load_config, save_config
from seqgan.data.datasets import DataError
from seqgan.metrics.evaluator import Evaluator
from seqgan.metrics.suite import METRIC_KEYS, format_table
from seqgan.plotting import plot_curves
from seqgan.trainers import build_trainer
from seqgan.training import load_oracle, load_run, make_checkpoint, prepare_data
from seqgan.utils import MetricsLogger, resolve_device, seed_everything

EVAL_KEYS = [*METRIC_KEYS, "nll_test", "nll_oracle"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML config (the same file as the pretraining run)")
    p.add_argument("--resume", action="store_true", help="continue from out_dir/adversarial.pt")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. adversarial.epochs=10")
    return p.parse_args(argv)


def evaluate(ev: Evaluator, generator, cfg, oracle, seed: int) -> dict:
    metrics, tokens = ev.evaluate(generator, cfg.adversarial.eval_num_samples, cfg.data.max_len, seed=seed)
    if oracle is not None:
        metrics["nll_oracle"] = oracle.nll(tokens.cpu())
    return {f"eval/{k}": v for k, v in metrics.items()}


def main(argv=None) -> Path:
    args = parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = resolve_device(cfg.device)
    a = cfg.adversarial
    ckpt_path = out / "adversarial.pt"

    # ---- models: from the MLE checkpoint (or the adversarial one when resuming)
    pre_path = Path(a.pretrain_checkpoint or out / "pretrain.pt")
    run = load_run(pre_path, device)
    if run.discriminator is None:
        raise CheckpointError(f"{pre_path} has no discriminator; run recipes/pretrain.py first")
    tok, generator, discriminator = run.tokenizer, run.generator, run.discriminator
    save_config(cfg, out / "adversarial_config.yaml")
    data_rng = seed_everything(cfg.seed)
    sample_rng = torch.Generator(device=device)
    sample_rng.manual_seed(cfg.seed + 1)
    trainer = build_trainer(cfg, generator, discriminator, rng=sample_rng)
    start_epoch = 0
    if args.resume:
        state = load_checkpoint(ckpt_path)
        trainer.load_state_dict(state["trainer"])
        start_epoch = state["epoch"]
        set_rng_state(state["rng"])
        data_rng.set_state(state["data_rng"])
        sample_rng.set_state(state["sample_rng"])
        print(f"resumed from {ckpt_path} at epoch {start_epoch}")
    logger = MetricsLogger(out, append=args.resume, name="adversarial_metrics.jsonl")

    data = prepare_data(cfg, tok)
    train = data.splits["train"].to(device)
    oracle = load_oracle(cfg.data)[0] if cfg.data.synthetic == "oracle" else None
    ev = Evaluator(tok, data.raw["test"], data.splits["test"], cfg.data.lowercase)

    def save(epoch: int) -> None:
        payload = make_checkpoint(  # optimizers, rollout policy and baselines live in the trainer state
            cfg,
            tok,
            generator,
            discriminator,
            {},
            trainer.g_steps,
            "adversarial",
            {
                "epoch": epoch,
                "trainer": trainer.state_dict(),
                "data_rng": data_rng.get_state(),
                "sample_rng": sample_rng.get_state(),
            },
        )
        save_checkpoint(payload, ckpt_path)

    start = time.time()
    if start_epoch == 0:
        metrics = {"epoch": 0, **evaluate(ev, generator, cfg, oracle, cfg.seed)}
        logger.log(0, metrics)
        print("before adversarial training: " + _fmt(metrics))

    # ---- the adversarial loop
    bar = tqdm(range(start_epoch + 1, a.epochs + 1), desc="adversarial", disable=None)
    for epoch in bar:
        t0 = time.time()
        metrics: dict = {"epoch": epoch, **trainer.train_epoch(train, data_rng)}
        metrics["time/epoch_s"] = time.time() - t0
        if epoch % a.eval_every == 0 or epoch == a.epochs:
            metrics.update(evaluate(ev, generator, cfg, oracle, cfg.seed))
            tqdm.write(f"epoch {epoch}: " + _fmt(metrics))
        logger.log(epoch, metrics)
        bar.set_postfix(
            reward=f"{metrics.get('rollout/reward_mean', float('nan')):.3f}",
            d_acc=f"{metrics.get('discriminator/acc_fake', float('nan')):.2f}",
        )
        if epoch % a.checkpoint_every == 0 or epoch == a.epochs:
            save(epoch)
    if start_epoch >= a.epochs:
        save(a.epochs)

    # ---- final evaluation and curves
    final = evaluate(ev, generator, cfg, oracle, cfg.seed + 100)
    final_rows = {"adversarial": {k.split("/", 1)[1]: v for k, v in final.items()}}
    print(format_table(final_rows, [k for k in EVAL_KEYS if k in final_rows["adversarial"]]))
    (out / "adversarial_eval.json").write_text(json.dumps(final_rows["adversarial"], indent=2) + "\n")
    plot_curves(
        logger.path,
        ["rollout/reward_mean", "discriminator/acc_fake", "eval/bleu4", "eval/nll_test", "eval/nll_oracle"],
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
    except (ConfigError, DataError, CheckpointError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
