#!/usr/bin/env python
"""Print detokenized samples from a checkpoint, one per line.

python recipes/sample.py --checkpoint runs/coco_lstm/pretrain.pt --num-samples 10 [--temperature 0.8]
    [--top-k 0] [--top-p 1.0] [--seed 0] [--max-len N] [--output FILE]
"""

from __future__ import annotations

import seqgan  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads)

# isort: split
import argparse
import sys
from pathlib import Path

import torch

from seqgan.checkpoint import CheckpointError
from seqgan.training import load_run, sample_texts
from seqgan.utils import resolve_device, seed_everything


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by a recipe (e.g. pretrain.pt)")
    p.add_argument("--num-samples", type=int, default=10)
    p.add_argument("--temperature", type=float, default=None, help="default: the config's sample.temperature")
    p.add_argument("--top-k", type=int, default=None, help="default: the config's sample.top_k")
    p.add_argument("--top-p", type=float, default=None, help="default: the config's sample.top_p")
    p.add_argument("--max-len", type=int, default=None, help="default: the config's data.max_len")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--device", default="cpu")
    p.add_argument("--output", help="write the samples to this file instead of stdout")
    return p.parse_args(argv)


def main(argv=None) -> list[str]:
    args = parse_args(argv)
    if args.num_samples < 1:
        raise ValueError("--num-samples must be at least 1")
    device = resolve_device(args.device)
    run = load_run(args.checkpoint, device)
    sc = run.cfg.sample
    seed_everything(args.seed)
    rng = torch.Generator(device=device)
    rng.manual_seed(args.seed)
    texts = sample_texts(
        run.generator,
        run.tokenizer,
        args.num_samples,
        args.max_len or run.cfg.data.max_len,
        rng=rng,
        temperature=sc.temperature if args.temperature is None else args.temperature,
        top_k=sc.top_k if args.top_k is None else args.top_k,
        top_p=sc.top_p if args.top_p is None else args.top_p,
        batch_size=args.batch_size,
    )
    if args.output:
        Path(args.output).write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    else:
        for t in texts:
            print(t)
    return texts


if __name__ == "__main__":
    try:
        main()
    except (CheckpointError, ValueError) as e:
        sys.exit(f"error: {e}")
