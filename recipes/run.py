#!/usr/bin/env python
"""The whole pipeline: MLE pretraining -> adversarial training -> evaluation of both against real data (for a
conditional config: against the human responses; for a category config: overall and per class, with the class
accuracy).

    python recipes/run.py --config recipes/configs/coco_seqgan.yaml [key=value ...]
        [--eval-samples 2000] [--sweep 0.8 1.0 1.2] [--fed] [--resume | --overwrite] [--seeds 0 1 2]

Writes everything the stage recipes write into ``out_dir``, plus ``results.json`` and ``results.md``: the table
of the MLE and adversarial models beside the real-data row, and the wall time of each stage. ``--resume``
continues the stages that have a checkpoint (a finished pretraining is reused). ``--seeds S1 S2 ...`` (put it
last) runs the pipeline once per seed (``out_dir/seed_S``) and writes the mean and standard deviation over
seeds of every metric. See ``seqgan.stages.pipeline``.
"""

from seqgan.runtime import prefer_passive_waits

prefer_passive_waits()  # before torch loads: see seqgan.runtime

import argparse

from seqgan import runtime
from seqgan.config import AT_LEAST_ONE, POSITIVE, arg_type, load_config
from seqgan.stages import run_cli, run_pipeline, run_seeds


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument(
        "--eval-samples",
        type=arg_type(AT_LEAST_ONE, int),
        default=2000,
        help="samples per model in the table",
    )
    p.add_argument(
        "--sweep", type=arg_type(POSITIVE), nargs="*", help="also sweep the MLE model over these temperatures"
    )
    p.add_argument("--fed", action="store_true", help="add FED to the final table")
    run = p.add_mutually_exclusive_group()
    run.add_argument("--resume", action="store_true", help="continue the stages that have a checkpoint")
    run.add_argument("--overwrite", action="store_true", help="start again in an out_dir that holds a run")
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        help="run once per seed (out_dir/seed_S); report mean and std over seeds",
    )
    p.add_argument("overrides", nargs="*")
    return p.parse_intermixed_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg = load_config(args.config, args.overrides)  # validate before any work
    runtime.configure(cfg)
    options = dict(eval_samples=args.eval_samples, sweep=args.sweep, fed=args.fed, resume=args.resume,
                   overwrite=args.overwrite)  # fmt: skip
    if args.seeds:
        return run_seeds(cfg, args.seeds, **options)
    return run_pipeline(cfg, **options)


if __name__ == "__main__":
    run_cli(main)
