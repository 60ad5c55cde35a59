#!/usr/bin/env python
"""Maximum-likelihood pretraining of the generator, then discriminator pretraining on real vs generated text
(or, for a conditional config, on real pairs vs generated and mismatched responses; for a category config, the
(k+1)-class discriminator on real sentences of each class vs generated ones).

    python recipes/pretrain.py --config recipes/configs/coco_lstm.yaml [key=value ...] [--resume | --overwrite]
    torchrun --nproc_per_node 2 recipes/pretrain.py --config ...        # DDP, one process per device
    python recipes/pretrain.py --help-config                            # every config key, documented

Writes to ``out_dir``: config.yaml (resolved), metrics.jsonl, pretrain_curves.png and pretrain.pt (config,
tokenizer, generator, discriminator, optimizers, RNG states, progress), rewritten after every MLE epoch and
every discriminator round so that ``--resume`` continues from the last one. An ``out_dir`` that already holds
a pretraining run is refused unless ``--resume`` or ``--overwrite`` is given. See ``seqgan.stages.pretrain``.
"""

from seqgan.runtime import prefer_passive_waits

prefer_passive_waits()  # before torch loads: see seqgan.runtime

import argparse
import sys
from pathlib import Path

from seqgan import runtime
from seqgan.config import Config, describe, load_config
from seqgan.stages import pretrain, run_cli


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML config file (defaults are used for missing keys)")
    p.add_argument("--help-config", action="store_true", help="list every config key with its documentation")
    run = p.add_mutually_exclusive_group()
    run.add_argument("--resume", action="store_true", help="continue from out_dir/pretrain.pt")
    run.add_argument("--overwrite", action="store_true", help="start again in an out_dir that holds a run")
    p.add_argument(
        "overrides", nargs="*", help="dotted overrides, e.g. pretrain.epochs=5 generator.kind=transformer"
    )
    return p.parse_intermixed_args(argv)


def main(argv=None) -> Path:
    args = parse_args(argv)
    if args.help_config:
        print(describe(Config))
        sys.exit(0)
    cfg = load_config(args.config, args.overrides)
    runtime.configure(cfg)
    return pretrain(cfg, resume=args.resume, overwrite=args.overwrite)


if __name__ == "__main__":
    run_cli(main)
