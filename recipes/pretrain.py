#!/usr/bin/env python
"""Maximum-likelihood pretraining of the generator, then discriminator pretraining on real vs generated text.

    python recipes/pretrain.py --config recipes/configs/coco_lstm.yaml [key=value ...]

Writes to ``out_dir``: config.yaml (resolved), metrics.jsonl, pretrain_curves.png and pretrain.pt (config,
tokenizer, generator, discriminator, optimizers, RNG state, step).
"""

from __future__ import annotations

import seqgan  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads)

# isort: split
import argparse
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from seqgan.checkpoint import save_checkpoint
from seqgan.config import Config, ConfigError, describe, load_config, save_config
from seqgan.data.datasets import DataError, batches
from seqgan.metrics.nll import nll_test
from seqgan.plotting import plot_curves
from seqgan.sampling import sample
from seqgan.training import (
    decode_samples,
    discriminator_accuracy,
    discriminator_epochs,
    load_oracle,
    make_checkpoint,
    mle_step,
    new_models,
    prepare_data,
)
from seqgan.utils import MetricsLogger, resolve_device, seed_everything


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML config file (defaults are used for missing keys)")
    p.add_argument("--help-config", action="store_true", help="list every config key with its documentation")
    p.add_argument(
        "overrides", nargs="*", help="dotted overrides, e.g. pretrain.epochs=5 generator.kind=transformer"
    )
    return p.parse_args(argv)


def main(argv=None) -> Path:
    args = parse_args(argv)
    if args.help_config:
        print(describe(Config))
        sys.exit(0)
    cfg = load_config(args.config, args.overrides)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = resolve_device(cfg.device)
    data_rng = seed_everything(cfg.seed)
    sample_rng = torch.Generator(device=device)
    sample_rng.manual_seed(cfg.seed + 1)
    start = time.time()

    # ---- data and models
    data = prepare_data(cfg)
    tok = data.tokenizer
    print(f"tokenizer: {tok.kind}, {tok.vocab_size} tokens; max_len {cfg.data.max_len}")
    for name, rep in data.reports.items():
        print("  " + rep.summary(name))
    train = data.splits["train"]
    heldout = [s for s in ("valid", "test") if s in data.splits]
    generator, discriminator = new_models(cfg, tok, device)
    n_params = sum(p.numel() for p in generator.parameters())
    print(f"generator: {cfg.generator.kind}, {n_params:,} parameters; device {device}")
    g_opt = torch.optim.Adam(generator.parameters(), lr=cfg.pretrain.lr)
    logger = MetricsLogger(out)
    pc, sc = cfg.pretrain, cfg.sample
    oracle = load_oracle(cfg.data)[0] if cfg.data.synthetic == "oracle" else None

    # ---- MLE pretraining
    step = 0
    for epoch in range(1, pc.epochs + 1):
        total, count = 0.0, 0
        bar = tqdm(
            batches(len(train), pc.batch_size, True, data_rng),
            desc=f"MLE {epoch}/{pc.epochs}",
            total=(len(train) + pc.batch_size - 1) // pc.batch_size,
            leave=False,
            disable=None,
        )
        for idx in bar:
            loss = mle_step(generator, g_opt, train[idx].to(device), pc.grad_clip)
            step += 1
            total, count = total + loss, count + 1
            bar.set_postfix(nll=f"{loss:.3f}")
        metrics = {"epoch": epoch, "generator/train_nll": total / max(count, 1)}
        for name in heldout:
            metrics[f"eval/nll_{name}"] = nll_test(generator, data.splits[name], pc.eval_batch_size)
        if oracle is not None:  # NLL_oracle of fresh samples, the synthetic benchmark's metric
            fresh = sample(
                generator, pc.oracle_eval_samples, cfg.data.max_len, rng=sample_rng, batch_size=1024
            )
            metrics["eval/nll_oracle"] = oracle.nll(fresh.tokens.cpu())
        logger.log(step, metrics)
        print(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "epoch"))
        if pc.num_print_samples:
            samples = sample(
                generator,
                pc.num_print_samples,
                cfg.data.max_len,
                sc.temperature,
                sc.top_k,
                sc.top_p,
                rng=sample_rng,
            )
            for text in decode_samples(tok, samples.tokens):
                print("   ", text)

    # ---- discriminator pretraining on real vs freshly generated sentences
    d_opt = torch.optim.Adam(discriminator.parameters(), lr=pc.d_lr)
    for rnd in range(1, pc.d_rounds + 1):
        t0 = time.time()
        fake = sample(generator, pc.d_num_negatives, cfg.data.max_len, rng=sample_rng, batch_size=1024).tokens
        real = train[torch.randperm(len(train), generator=data_rng)[: pc.d_num_negatives]].to(device)
        metrics = discriminator_epochs(
            discriminator, d_opt, real, fake, pc.d_epochs, pc.d_batch_size, data_rng
        )
        metrics["d_round"] = rnd
        if "test" in data.splits:
            test = data.splits["test"][: pc.d_num_negatives].to(device)
            fresh = sample(generator, len(test), cfg.data.max_len, rng=sample_rng, batch_size=1024).tokens
            metrics.update(discriminator_accuracy(discriminator, test, fresh))
        step += 1
        logger.log(step, metrics)
        print(
            f"discriminator round {rnd}/{pc.d_rounds} ({time.time() - t0:.1f}s): "
            + ", ".join(f"{k.split('/')[-1]} {v:.3f}" for k, v in metrics.items() if k != "d_round")
        )

    # ---- checkpoint and curves
    ckpt = make_checkpoint(
        cfg,
        tok,
        generator,
        discriminator,
        {"generator": g_opt, "discriminator": d_opt},
        step,
        "pretrain",
        {"wall_s": time.time() - start},
    )
    path = save_checkpoint(ckpt, out / "pretrain.pt")
    plot_curves(
        out / "metrics.jsonl",
        ["generator/train_nll", "eval/nll_valid", "eval/nll_test", "eval/nll_oracle"],
        out / "pretrain_curves.png",
        x="epoch",
        title="MLE pretraining",
    )
    logger.close()
    print(f"saved {path} ({time.time() - start:.1f}s)")
    return path


if __name__ == "__main__":
    try:
        main()
    except (ConfigError, DataError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
