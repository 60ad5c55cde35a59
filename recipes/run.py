#!/usr/bin/env python
"""The whole pipeline: MLE pretraining -> adversarial training -> evaluation of both against real data.

    python recipes/run.py --config recipes/configs/coco_seqgan_quick.yaml [key=value ...]
        [--eval-samples 2000] [--skip-pretrain] [--sweep 0.8 1.0 1.2]

Writes everything the stage recipes write into ``out_dir``, plus ``results.json`` and ``results.md``: the
table of BLEU-2..5, Self-BLEU-2..5, NLL_test (NLL_oracle) for the MLE and adversarial generators beside the
real-data row.
"""

from __future__ import annotations

import seqgan  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads)

# isort: split
import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

from seqgan.checkpoint import CheckpointError
from seqgan.config import ConfigError, load_config
from seqgan.data.datasets import DataError
from seqgan.metrics.suite import METRIC_KEYS, format_table

HERE = Path(__file__).resolve().parent
KEYS = [*METRIC_KEYS, "nll_test", "nll_oracle", "fed"]


def _recipe(name: str):
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--eval-samples", type=int, default=2000, help="samples per model in the final table")
    p.add_argument("--skip-pretrain", action="store_true", help="reuse out_dir/pretrain.pt")
    p.add_argument("--sweep", type=float, nargs="*", help="also sweep the MLE model over these temperatures")
    p.add_argument("--fed", action="store_true", help="add FED to the final table")
    p.add_argument("overrides", nargs="*")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg = load_config(args.config, args.overrides)  # validate before any work
    out = Path(cfg.out_dir)
    common = ["--config", args.config, *args.overrides]
    start = time.time()
    if not (args.skip_pretrain and (out / "pretrain.pt").exists()):
        _recipe("pretrain").main(common)
    t_pre = time.time() - start
    _recipe("adversarial").main(common)
    t_adv = time.time() - start - t_pre

    evaluate = _recipe("evaluate")
    rows = {}
    for name, ckpt in (("MLE", out / "pretrain.pt"), ("SeqGAN", out / "adversarial.pt")):
        ev_args = [
            "--checkpoint",
            str(ckpt),
            "--num-samples",
            str(args.eval_samples),
            "--seed",
            str(cfg.seed),
            "--name",
            name,
            "--json",
            str(out / f"eval_{name.lower()}.json"),
        ]
        if args.fed:
            ev_args.append("--fed")
        if name == "MLE" and args.sweep:
            ev_args += ["--sweep", *map(str, args.sweep), "--sweep-samples", str(args.eval_samples)]
        result = evaluate.main(ev_args)
        rows[name] = {k: result.get(k) for k in KEYS}
        rows["real data"] = {k: result.get("real_data", {}).get(k) for k in KEYS}
    rows = {"real data": rows.pop("real data"), **rows}
    if args.sweep:  # the SeqGAN point on the MLE temperature curve (same sample counts everywhere)
        from seqgan.metrics.sweep import plot_quality_diversity

        sweep = json.loads((out / "sweep.json").read_text())["rows"]
        plot_quality_diversity(
            {"MLE (temperature sweep)": sweep},
            out / "sweep.png",
            4,
            {"real data": rows["real data"], "SeqGAN (T=1)": rows["SeqGAN"]},
        )
    keys = [k for k in KEYS if any(r.get(k) is not None for r in rows.values())]
    table = format_table(rows, keys)
    print(table)
    summary = {
        "rows": rows,
        "wall_s": {"pretrain": t_pre, "adversarial": t_adv, "total": time.time() - start},
        "eval_samples": args.eval_samples,
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    md = ["| model | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, r in rows.items():
        md.append(
            f"| {name} | " + " | ".join("-" if r.get(k) is None else f"{r[k]:.3f}" for k in keys) + " |"
        )
    (out / "results.md").write_text("\n".join(md) + "\n")
    print(f"wrote {out / 'results.json'} and {out / 'results.md'} ({time.time() - start:.0f}s)")
    return summary


if __name__ == "__main__":
    try:
        main()
    except (ConfigError, DataError, CheckpointError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
