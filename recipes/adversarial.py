#!/usr/bin/env python
"""Adversarial training from an MLE checkpoint with the method ``adversarial.method`` names (seqgan: policy
gradient with Monte-Carlo rollouts; gumbel: Gumbel-softmax relaxation; scratchgan: dense rewards, from scratch;
sentigan, catgan: class-conditional generation), for sentences or, with a conditional config, (context,
response) pairs, or, with a category config, labelled sentences.

    python recipes/adversarial.py --config recipes/configs/coco_seqgan.yaml [key=value ...] [--resume | --overwrite]
    torchrun --nproc_per_node 2 recipes/adversarial.py --config ...

Starts from ``adversarial.pretrain_checkpoint`` (default ``out_dir/pretrain.pt``), whose tokenizer and model
shapes the run keeps (a setting that contradicts them is refused). Each epoch is the method's own schedule (its
config section); every ``adversarial.eval_every`` epochs the evaluation runs, every ``checkpoint_every`` epochs
``out_dir/adversarial.pt`` is written (resumable with ``--resume``); ends with an evaluation. An ``out_dir``
that already holds an adversarial run is refused unless ``--resume`` or ``--overwrite`` is given. See
``seqgan.stages.adversarial``.
"""

from seqgan.runtime import prefer_passive_waits

prefer_passive_waits()  # before torch loads: see seqgan.runtime

import argparse
from pathlib import Path

from seqgan import runtime
from seqgan.config import load_config
from seqgan.stages import adversarial, run_cli


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML config (the same file as the pretraining run)")
    run = p.add_mutually_exclusive_group()
    run.add_argument("--resume", action="store_true", help="continue from out_dir/adversarial.pt")
    run.add_argument("--overwrite", action="store_true", help="start again in an out_dir that holds a run")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. adversarial.epochs=10")
    return p.parse_intermixed_args(argv)


def main(argv=None) -> Path:
    args = parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    runtime.configure(cfg)
    return adversarial(cfg, resume=args.resume, overwrite=args.overwrite)


if __name__ == "__main__":
    run_cli(main)
