#!/usr/bin/env python
"""The whole pipeline: MLE pretraining -> adversarial training -> evaluation of both against real data.

    python recipes/run.py --config recipes/configs/coco_seqgan_quick.yaml [key=value ...]
        [--eval-samples 2000] [--skip-pretrain] [--sweep 0.8 1.0 1.2] [--seeds 0 1 2]

Writes everything the stage recipes write into ``out_dir``, plus ``results.json`` and ``results.md``: the
table of BLEU-2..5, Self-BLEU-2..5, NLL_test (NLL_oracle) for the MLE and adversarial generators beside the
real-data row. ``--seeds S1 S2 ...`` runs the pipeline once per seed (``out_dir/seed_S``) and writes the mean
and standard deviation over seeds of every metric to ``out_dir/results.json`` / ``results.md``.
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
    if args.seeds:
        return multi_seed(args)
    cfg = load_config(args.config, args.overrides)  # validate before any work
    out = Path(cfg.out_dir)
    common = ["--config", args.config, *args.overrides]
    start = time.time()
    # ScratchGAN trains from scratch: no MLE stage unless scratchgan.mle_pretrain asks for one
    mle = cfg.adversarial.method != "scratchgan" or cfg.scratchgan.mle_pretrain
    if mle and not (args.skip_pretrain and (out / "pretrain.pt").exists()):
        _recipe("pretrain").main(common)
    t_pre = time.time() - start
    _recipe("adversarial").main(common)
    t_adv = time.time() - start - t_pre

    evaluate = _recipe("evaluate")
    rows = {}
    adv_name = {"seqgan": "SeqGAN", "scratchgan": "ScratchGAN"}.get(
        cfg.adversarial.method, cfg.adversarial.method
    )
    models = [("MLE", out / "pretrain.pt")] if mle else []
    for name, ckpt in (*models, (adv_name, out / "adversarial.pt")):
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
    if args.sweep and mle:  # the SeqGAN point on the MLE temperature curve (same sample counts everywhere)
        from seqgan.metrics.sweep import plot_quality_diversity

        sweep = json.loads((out / "sweep.json").read_text())["rows"]
        plot_quality_diversity(
            {"MLE (temperature sweep)": sweep},
            out / "sweep.png",
            4,
            {"real data": rows["real data"], f"{adv_name} (T=1)": rows[adv_name]},
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


def multi_seed(args: argparse.Namespace) -> dict:
    """The pipeline once per seed in ``out_dir/seed_S``; writes mean and standard deviation over seeds."""
    cfg = load_config(args.config, args.overrides)
    out = Path(cfg.out_dir)
    if len(set(args.seeds)) != len(args.seeds):
        raise ConfigError(f"--seeds: each seed once, got {args.seeds}")
    flags = ["--eval-samples", str(args.eval_samples)]
    flags += ["--skip-pretrain"] * args.skip_pretrain + ["--fed"] * args.fed
    flags += ["--sweep", *map(str, args.sweep)] if args.sweep else []
    runs = {}
    for seed in args.seeds:
        print(f"==== seed {seed}")
        overrides = [*args.overrides, f"seed={seed}", f"out_dir={out / f'seed_{seed}'}"]
        runs[seed] = main(["--config", args.config, *flags, *overrides])
    summary = aggregate_seeds(runs)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    keys = [k for k in KEYS if any(r.get(k) is not None for r in summary["mean"].values())]
    md = [
        f"Mean ± standard deviation over {len(args.seeds)} seeds ({', '.join(map(str, args.seeds))}; sample "
        "standard deviation, n - 1).",
        "",
        "| model | " + " | ".join(keys) + " |",
        "|---" * (len(keys) + 1) + "|",
    ]
    for name, mean in summary["mean"].items():
        std = summary["std"][name]
        cells = ["-" if mean.get(k) is None else f"{mean[k]:.3f} ± {std[k]:.3f}" for k in keys]
        md.append(f"| {name} | " + " | ".join(cells) + " |")
    (out / "results.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    return summary


def aggregate_seeds(runs: dict[int, dict]) -> dict:
    """Per-seed summaries -> ``{"seeds", "per_seed", "mean", "std", "wall_s"}``: for every row and metric the
    mean and the sample standard deviation (n - 1; 0 for one seed) over the seeds that report it."""
    rows = next(iter(runs.values()))["rows"]
    mean: dict = {}
    std: dict = {}
    for name in rows:
        mean[name], std[name] = {}, {}
        for key in rows[name]:
            values = [r["rows"][name][key] for r in runs.values() if r["rows"][name].get(key) is not None]
            if not values:
                mean[name][key] = std[name][key] = None
                continue
            m = sum(values) / len(values)
            var = sum((v - m) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
            mean[name][key], std[name][key] = m, var**0.5
    wall = {k: sum(r["wall_s"][k] for r in runs.values()) for k in next(iter(runs.values()))["wall_s"]}
    return {
        "seeds": list(runs),
        "per_seed": {str(s): r["rows"] for s, r in runs.items()},
        "mean": mean,
        "std": std,
        "wall_s": wall,
    }


if __name__ == "__main__":
    try:
        main()
    except (ConfigError, DataError, CheckpointError, FileNotFoundError, FloatingPointError) as e:
        sys.exit(f"error: {e}")
