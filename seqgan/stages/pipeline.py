"""The whole pipeline: pretraining -> adversarial training -> the evaluation table of both models, for either
task, once or over several seeds.

:func:`run_pipeline` writes everything the stages write into ``out_dir``, plus ``results.json`` and
``results.md``: the metrics of the MLE and the adversarial model beside real data (sentences: BLEU-2..5,
Self-BLEU-2..5, NLL_test, NLL_oracle for oracle configs, FED on request; pairs: the response metrics beside the
human responses) and the wall time of each stage. :func:`run_seeds` runs it once per seed in
``out_dir/seed_S`` and writes the mean and the sample standard deviation over seeds of every metric.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from seqgan.config import Config, ConfigError, replace
from seqgan.metrics.suite import METRIC_KEYS, format_table
from seqgan.stages.adversarial import adversarial
from seqgan.stages.evaluate import EvalOptions, evaluate_checkpoint
from seqgan.stages.pretrain import pretrain
from seqgan.stages.rundir import check_run_dir

__all__ = ["aggregate_seeds", "run_pipeline", "run_seeds"]

SENTENCE_KEYS = [*METRIC_KEYS, "nll_test", "nll_oracle", "fed"]
PAIR_KEYS = ["bleu1", "bleu2", "bleu4", "distinct1", "distinct2", "generic_share", "avg_len", "nll_test",
             "adversarial_success", "evaluator_error"]  # fmt: skip
CATEGORY_KEYS = [*METRIC_KEYS, "nll_test", "class_acc"]
METHOD_NAMES = {
    "seqgan": "SeqGAN",
    "gumbel": "Gumbel",
    "scratchgan": "ScratchGAN",
    "sentigan": "SentiGAN",
    "catgan": "CatGAN",
}


def _mode(out: Path, stage: str, resume: bool, overwrite: bool) -> tuple[bool, bool, bool]:
    """``(run, resume, overwrite)`` of one stage inside the pipeline: ``resume`` continues a stage that has a
    checkpoint (and skips a finished pretraining); a stage without one starts fresh."""
    ckpt = out / f"{stage}.pt"
    if not resume:
        return True, False, overwrite
    if not ckpt.is_file():
        return True, False, True  # nothing to continue: its leftovers (a log without a checkpoint) go
    if stage == "pretrain":
        from seqgan.checkpoint import load_checkpoint

        if load_checkpoint(ckpt).get("progress", {}).get("done", True):
            return False, False, False
    return True, True, False


def run_pipeline(
    cfg: Config,
    eval_samples: int = 2000,
    sweep: list[float] | None = None,
    fed: bool = False,
    resume: bool = False,
    overwrite: bool = False,
) -> dict:
    """Pretrain (unless the method trains from scratch), adversarial training, then the evaluation table.

    Args:
        cfg: the run's config.
        eval_samples: samples per model in the final table (pairs: test contexts answered; 0 = all).
        sweep: also sweep the MLE model over these temperatures (sentences).
        fed: add FED to the table (sentences).
        resume: continue the stages that have a checkpoint; a finished pretraining is reused.
        overwrite: start both stages again in an ``out_dir`` that holds them.
    Returns:
        ``{"rows", "wall_s", "eval_samples"}`` (also written to ``out_dir/results.json`` and ``results.md``).
    """
    out = Path(cfg.out_dir)
    mle = cfg.method.mle_pretrain or cfg.scratchgan.mle_pretrain
    stages = [s for s in ("pretrain", "adversarial") if s != "pretrain" or mle]
    modes = {s: _mode(out, s, resume, overwrite) for s in stages}
    for stage, (_, res, over) in modes.items():  # refuse before any work, not after pretraining
        check_run_dir(out, stage, res, over)
    start = time.time()
    if mle and modes["pretrain"][0]:
        pretrain(cfg, resume=modes["pretrain"][1], overwrite=modes["pretrain"][2])
    t_pre = time.time() - start
    adversarial(cfg, resume=modes["adversarial"][1], overwrite=modes["adversarial"][2])
    t_adv = time.time() - start - t_pre

    keys = {"pairs": PAIR_KEYS, "category": CATEGORY_KEYS}.get(cfg.task, SENTENCE_KEYS)
    adv_name = METHOD_NAMES.get(cfg.adversarial.method, cfg.adversarial.method)
    models = [("MLE", out / "pretrain.pt")] if mle else []
    rows: dict[str, dict] = {}
    for name, ckpt in (*models, (adv_name, out / "adversarial.pt")):
        options = EvalOptions(
            num_samples=eval_samples, seed=cfg.seed, name=name, fed=fed and cfg.task == "sentences",
            sweep=list(sweep or []) if name == "MLE" and cfg.task == "sentences" else [],
            sweep_samples=eval_samples, evaluator=cfg.task == "pairs",
        )  # fmt: skip
        result = evaluate_checkpoint(ckpt, options)
        (out / f"eval_{name.lower()}.json").write_text(json.dumps(result, indent=2) + "\n")
        rows[name] = {k: result.get(k) for k in keys}
        real = result.get("real_data", result.get("human", {}))
        rows["human responses" if cfg.task == "pairs" else "real data"] = {k: real.get(k) for k in keys}
        for cls, metrics in result.get("per_class", {}).items():  # the category task: a row per class
            rows[f"{name} ({cls})"] = {k: metrics.get(k) for k in keys}
            rows[f"real data ({cls})"] = {k: real["per_class"][cls].get(k) for k in keys}
    reference = "human responses" if cfg.task == "pairs" else "real data"
    rows = {reference: rows.pop(reference), **rows}
    if cfg.task == "category":  # the overall rows, then per class the real data and each model
        names = [reference] + [n for n, _ in (*models, (adv_name, None))]
        classes = [n[len(reference) + 2 : -1] for n in rows if n.startswith(f"{reference} (")]
        rows = {n: rows[n] for n in names} | {
            f"{n} ({c})": rows[f"{n} ({c})"] for c in classes for n in names
        }
    if sweep and mle and cfg.task == "sentences":  # the adversarial point on the MLE temperature curve
        from seqgan.metrics.sweep import plot_quality_diversity

        curve = json.loads((out / "sweep.json").read_text())["rows"]
        plot_quality_diversity(
            {"MLE (temperature sweep)": curve}, out / "sweep.png", 4,
            {"real data": rows["real data"], f"{adv_name} (T=1)": rows[adv_name]},
        )  # fmt: skip
    shown = [k for k in keys if any(r.get(k) is not None for r in rows.values())]
    print(format_table(rows, shown))
    summary = {
        "rows": rows,
        "wall_s": {"pretrain": t_pre, "adversarial": t_adv, "total": time.time() - start},
        "eval_samples": eval_samples,
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    md = ["| model | " + " | ".join(shown) + " |", "|---" * (len(shown) + 1) + "|"]
    for name, r in rows.items():
        md.append(
            f"| {name} | " + " | ".join("-" if r.get(k) is None else f"{r[k]:.3f}" for k in shown) + " |"
        )
    (out / "results.md").write_text("\n".join(md) + "\n")
    print(f"wrote {out / 'results.json'} and {out / 'results.md'} ({time.time() - start:.0f}s)")
    return summary


def run_seeds(cfg: Config, seeds: list[int], **options) -> dict:
    """:func:`run_pipeline` once per seed in ``out_dir/seed_S``; writes the mean and standard deviation over
    seeds to ``out_dir/results.json`` / ``results.md`` and returns :func:`aggregate_seeds`' summary."""
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: each seed once, got {seeds}")
    out = Path(cfg.out_dir)
    runs = {}
    for seed in seeds:
        print(f"==== seed {seed}")
        runs[seed] = run_pipeline(replace(cfg, seed=seed, out_dir=str(out / f"seed_{seed}")), **options)
    summary = aggregate_seeds(runs)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    keys = [
        k
        for k in [*SENTENCE_KEYS, *PAIR_KEYS, *CATEGORY_KEYS]
        if any(r.get(k) is not None for r in summary["mean"].values())
    ]
    keys = list(dict.fromkeys(keys))
    md = [
        f"Mean ± standard deviation over {len(seeds)} seeds ({', '.join(map(str, seeds))}; sample standard "
        "deviation, n - 1).",
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
