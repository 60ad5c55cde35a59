#!/usr/bin/env python
"""Wall time of one SeqGAN adversarial epoch at TextGAN-PyTorch's COCO settings, phase by phase.

    python benchmarks/epoch.py [--checkpoint runs/coco_lstm/pretrain.pt] [--quick] [--threads 2] [--precision bf16]

One epoch = one generator update (batch 64, R = 16 rollouts, rewards + policy-gradient step), then
4 x (sample 10,000 negatives + 2 discriminator epochs on them against 10,000 real captions), then the
evaluation (10,000 samples: BLEU-2..5 against the 10,000 test captions, Self-BLEU-2..5, NLL_test). Generator
embedding/hidden 32, vocabulary 4,663 (COCO, nltk tokens), length 37, discriminator filters 2-5 x 300 with
embedding 64. The models come from an MLE checkpoint when given (realistic sample lengths); otherwise a
fresh generator is MLE-trained for two epochs first (not timed). ``--precision bf16`` runs the generator update,
the sampling and the discriminator epochs under bfloat16 autocast, as ``precision: bf16`` does in the recipes
(rollout rewards stay fp32; the evaluation runs in fp32). TextGAN-PyTorch measured 659 s for the same epoch on
this 2-core machine. The last line is one JSON object.
"""

from __future__ import annotations

from seqgan.runtime import prefer_passive_waits

prefer_passive_waits()  # before torch loads: see seqgan.runtime

import argparse
import json
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TEXTGAN_EPOCH_S = 659.0


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="an MLE checkpoint of the coco_lstm config")
    p.add_argument("--quick", action="store_true", help="scaled-down smoke run (1/10 of every count)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--precision", choices=["fp32", "bf16"], default="fp32", help="autocast of the training phases"
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from seqgan.config import SeqGANConfig, load_config
    from seqgan.metrics.evaluator import Evaluator
    from seqgan.runs import load_run, new_models, prepare_data
    from seqgan.runtime import autocast
    from seqgan.sampling import sample
    from seqgan.trainers import PolicyGradientTrainer
    from seqgan.trainers.steps import discriminator_epochs, mle_step
    from seqgan.utils import seed_everything

    scale = 10 if args.quick else 1
    num_neg, num_eval, rounds, d_epochs = 10000 // scale, 10000 // scale, 4, 2
    cfg = load_config(ROOT / "recipes/configs/coco_lstm.yaml")
    rng = seed_everything(0)
    if args.checkpoint:
        run = load_run(args.checkpoint)
        data = prepare_data(cfg, run.tokenizer)
        gen, disc = run.generator, run.discriminator
    else:
        data = prepare_data(cfg)
        gen, disc = new_models(cfg, data.tokenizer, torch.device("cpu"))
        opt = torch.optim.Adam(gen.parameters(), lr=1e-2)
        train = data.splits["train"]
        for _ in range(1 if args.quick else 2):
            for idx in torch.randperm(len(train), generator=rng).split(64):
                mle_step(gen, opt, train[idx], 5.0)
    train, test = data.splits["train"], data.splits["test"]
    ev = Evaluator(data.tokenizer, data.raw["test"][:num_eval], test[:num_eval])
    pg_cfg = SeqGANConfig(batch_size=64, num_rollouts=16 // (4 if args.quick else 1))
    srng = torch.Generator()
    srng.manual_seed(0)
    trainer = PolicyGradientTrainer(gen, disc, pg_cfg, max_len=37, rng=srng)

    phases: dict[str, float] = {"generator_update_s": 0.0, "sample_negatives_s": 0.0, "discriminator_s": 0.0}
    t_epoch = time.perf_counter()
    with autocast(args.precision, "cpu"):
        t0 = time.perf_counter()
        g_metrics = trainer.generator_step()
        phases["generator_update_s"] = time.perf_counter() - t0
        for _ in range(rounds):
            t0 = time.perf_counter()
            fake = sample(gen, num_neg, 37, rng=srng, batch_size=2048).tokens
            phases["sample_negatives_s"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            real = train[torch.randperm(len(train), generator=rng)[:num_neg]]
            d_metrics = discriminator_epochs(
                disc, trainer.d_optimizer, real, fake, d_epochs, 64, rng, by_length=trainer.batch_by_length
            )
            phases["discriminator_s"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    metrics, _ = ev.evaluate(gen, num_eval, 37, seed=0)
    phases["evaluation_s"] = time.perf_counter() - t0
    epoch_s = time.perf_counter() - t_epoch

    d_epoch_s = phases["discriminator_s"] / (rounds * d_epochs)
    print(
        f"one adversarial epoch ({'quick, 1/10 counts' if args.quick else 'full TextGAN-PyTorch COCO settings'}, "
        f"{args.threads} threads, {args.precision}):"
    )
    for k, v in phases.items():
        print(f"  {k:22s} {v:8.2f} s")
    print(
        f"  {'epoch':22s} {epoch_s:8.2f} s   (TextGAN-PyTorch: {TEXTGAN_EPOCH_S:.0f} s -> "
        f"{TEXTGAN_EPOCH_S / epoch_s:.1f}x faster)"
    )
    print(f"  one discriminator epoch on {2 * num_neg} sentences: {d_epoch_s:.2f} s")
    print(
        f"  reward mean {g_metrics.get('rollout/reward_mean', float('nan')):.3f}, D acc fake "
        f"{d_metrics['discriminator/acc_fake']:.3f}, BLEU-4 {metrics['bleu4']:.3f}, NLL_test {metrics['nll_test']:.3f}"
    )
    result = {
        "epoch_s": epoch_s,
        **phases,
        "discriminator_epoch_s": d_epoch_s,
        "speedup_vs_textgan": TEXTGAN_EPOCH_S / epoch_s,
        "quick": args.quick,
        "threads": args.threads,
        "precision": args.precision,
        "bleu4": metrics["bleu4"],
        "nll_test": metrics["nll_test"],
        "d_acc_fake": d_metrics["discriminator/acc_fake"],
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
