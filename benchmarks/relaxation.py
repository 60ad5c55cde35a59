#!/usr/bin/env python
"""Discriminator accuracy over training steps: the Gumbel-softmax relaxation against the softmax ("continuous
vector") relaxation.

    python benchmarks/relaxation.py [--checkpoint runs/coco_seqgan/pretrain.pt] [--steps 80] [--eval-every 10]

From one MLE checkpoint (generator and pretrained discriminator), each variant runs ``--steps`` iterations of
:class:`seqgan.GumbelTrainer` (one generator step, one discriminator step, batch 64, standard GAN loss, Adam 1e-4)
and every ``--eval-every`` steps measures the discriminator's accuracy (eval mode, threshold 0) on ``--eval-size``
held-out real sentences and as many fresh relaxed samples of the variant. Variants: ``softmax`` (the
discriminator reads softmax(logits)), ``gumbel, beta 1 -> 100`` (exponential annealing over the run) and
``gumbel, beta 100``. Writes ``relaxation.png`` and ``relaxation.json`` to ``--out`` and ends with one JSON line.
"""

from __future__ import annotations

from seqgan.runtime import prefer_passive_waits

prefer_passive_waits()  # before torch loads: see seqgan.runtime

import argparse
import copy
import json
import time
from pathlib import Path

import torch

from seqgan.config import GumbelConfig
from seqgan.runs import load_run, prepare_data
from seqgan.trainers import GumbelTrainer

VARIANTS = {
    "softmax": {"relaxation": "softmax", "temperature_schedule": "constant", "max_inverse_temperature": 1.0},
    "gumbel, beta 1 -> 100": {"relaxation": "gumbel", "temperature_schedule": "exp"},
    "gumbel, beta 100": {"relaxation": "gumbel", "temperature_schedule": "constant"},
}


@torch.no_grad()
def accuracy(trainer: GumbelTrainer, real: torch.Tensor) -> dict[str, float]:
    """Eval-mode accuracy of the discriminator on ``real`` ids and as many fresh relaxed samples."""
    d, g = trainer.discriminator, trainer.generator
    d.eval(), g.eval()
    try:
        fake = trainer.relaxed_samples(real.shape[0])
        acc_real = float((d(real) > 0).float().mean())
        acc_fake = float((d(fake.vectors, fake.lengths) < 0).float().mean())
    finally:
        d.train(), g.train()
    return {"acc_real": acc_real, "acc_fake": acc_fake, "acc": (acc_real + acc_fake) / 2}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="runs/coco_seqgan/pretrain.pt")
    p.add_argument("--steps", type=int, default=80)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--eval-size", type=int, default=256)
    p.add_argument("--max-inverse-temperature", type=float, default=100.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/relaxation")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    run = load_run(args.checkpoint)
    cfg = run.cfg  # the checkpoint's data settings and seed
    data = prepare_data(cfg, run.tokenizer)
    train, test = data.splits["train"], data.splits["test"]
    held_out = test[
        torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed))[: args.eval_size]
    ]

    curves: dict[str, list[dict]] = {}
    start = time.time()
    for name, options in VARIANTS.items():
        torch.manual_seed(args.seed)
        settings = {"max_inverse_temperature": args.max_inverse_temperature, **options}
        config = GumbelConfig(
            loss="standard", batch_size=64, anneal_steps=args.steps, g_lr=1e-4, d_lr=1e-4, **settings
        )
        trainer = GumbelTrainer(
            copy.deepcopy(run.generator),
            copy.deepcopy(run.discriminator),
            config,
            max_len=cfg.data.max_len,
            rng=torch.Generator().manual_seed(args.seed + 1),
        )
        data_rng = torch.Generator().manual_seed(args.seed + 2)
        points = [{"step": 0, "beta": trainer.beta, **accuracy(trainer, held_out)}]
        for step in range(1, args.steps + 1):
            batch = train[torch.randint(len(train), (64,), generator=data_rng)]
            trainer.generator_step(batch)
            trainer.discriminator_step(train[torch.randint(len(train), (64,), generator=data_rng)])
            if step % args.eval_every == 0 or step == args.steps:
                points.append({"step": step, "beta": trainer.beta, **accuracy(trainer, held_out)})
        curves[name] = points
        print(f"{name}: " + ", ".join(f"{q['step']}:{q['acc']:.3f}" for q in points), flush=True)
    wall = time.time() - start

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name, points in curves.items():
        ax.plot([q["step"] for q in points], [q["acc"] for q in points], marker="o", ms=3, label=name)
    ax.axhline(0.5, color="gray", lw=0.8, ls="--")
    ax.set_xlabel("training steps (1 generator + 1 discriminator step each)")
    ax.set_ylabel("discriminator accuracy (held out)")
    ax.set_ylim(0.3, 1.02)
    ax.set_title("Which relaxed samples can the discriminator spot?")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "relaxation.png", dpi=110)
    plt.close(fig)
    result = {
        "checkpoint": args.checkpoint,
        "steps": args.steps,
        "final_acc": {name: points[-1]["acc"] for name, points in curves.items()},
        "mean_acc": {name: sum(q["acc"] for q in points) / len(points) for name, points in curves.items()},
        "wall_s": round(wall, 1),
    }
    (out / "relaxation.json").write_text(json.dumps({"curves": curves, **result}, indent=2) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
