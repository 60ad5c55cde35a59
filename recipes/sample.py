#!/usr/bin/env python
"""Print detokenized samples from a checkpoint, one per line.

    python recipes/sample.py --checkpoint runs/coco_lstm/pretrain.pt --num-samples 10 [--temperature 0.8]
        [--top-k 0] [--top-p 1.0] [--seed 0] [--max-len N] [--output FILE]
    python recipes/sample.py --checkpoint runs/mr15_catgan/adversarial.pt --label pos --num-samples 10

Defaults come from the checkpoint's ``sample`` section; the same seed gives the same samples. A category
checkpoint samples the class ``--label`` names, or, without it, ``--num-samples`` of every class as
``label<TAB>sentence`` lines. A conditional (chatbot) checkpoint answers contexts instead: use
``recipes/chat.py``.
"""

from seqgan.runtime import prefer_passive_waits

prefer_passive_waits()  # before torch loads: see seqgan.runtime

import argparse
from pathlib import Path

import torch

from seqgan.checkpoint import CheckpointError
from seqgan.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, PROBABILITY, ConfigError, Range, arg_type
from seqgan.runs import load_run, sample_by_class
from seqgan.runtime import resolve_device
from seqgan.sampling import sample
from seqgan.stages import run_cli
from seqgan.utils import seed_everything


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by a recipe (e.g. pretrain.pt)")
    p.add_argument("--num-samples", type=arg_type(AT_LEAST_ONE, int), default=10)
    p.add_argument("--temperature", type=arg_type(POSITIVE), help="default: the config's sample.temperature")
    p.add_argument("--top-k", type=arg_type(NON_NEGATIVE, int), help="default: the config's sample.top_k")
    p.add_argument("--top-p", type=arg_type(PROBABILITY), help="default: the config's sample.top_p")
    p.add_argument("--max-len", type=arg_type(AT_LEAST_ONE, int), help="default: the config's data.max_len")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=arg_type(Range(1), int), default=1024)
    p.add_argument("--device", default="cpu")
    p.add_argument("--output", help="write the samples to this file instead of stdout")
    p.add_argument("--label", help="category checkpoints: the class to sample (default: every class)")
    return p.parse_args(argv)


def main(argv=None) -> list[str]:
    args = parse_args(argv)
    device = resolve_device(args.device)
    run = load_run(args.checkpoint, device)
    if run.conditional:
        raise CheckpointError(
            f"{args.checkpoint} holds a conditional (context -> response) model: reply to contexts with "
            f"recipes/chat.py --checkpoint {args.checkpoint}"
        )
    if args.label is not None and not run.category:
        raise CheckpointError(f"--label samples a class, but {args.checkpoint} is not class-conditional")
    sc = run.cfg.sample
    seed_everything(args.seed)
    rng = torch.Generator(device=device).manual_seed(args.seed)
    options = dict(
        temperature=sc.temperature if args.temperature is None else args.temperature,
        top_k=sc.top_k if args.top_k is None else args.top_k,
        top_p=sc.top_p if args.top_p is None else args.top_p,
        rng=rng,
    )
    max_len = args.max_len or run.cfg.data.max_len
    if run.category:
        classes = run.generator.classes
        if args.label is not None and args.label not in classes:
            raise ConfigError(f"--label {args.label!r} is not a class of this model: {', '.join(classes)}")
        labels = [args.label] if args.label is not None else classes
        texts = []
        for label in labels:
            got = sample_by_class(run.generator, run.tokenizer, label, args.num_samples, max_len, **options)
            texts += got if args.label is not None else [f"{label}\t{t}" for t in got]
    else:
        out = sample(run.generator, args.num_samples, max_len, batch_size=args.batch_size, **options)
        texts = [run.tokenizer.decode(row) for row in out.tokens.tolist()]
    if args.output:
        Path(args.output).write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    else:
        for t in texts:
            print(t)
    return texts


if __name__ == "__main__":
    run_cli(main)
