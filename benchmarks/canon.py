#!/usr/bin/env python
"""The canon under one protocol: every adversarial method of the toolkit from the same MLE start, one table per
benchmark beside MLE and real data (docs/canon.md).

    python benchmarks/canon.py --benchmark coco [--methods seqgan gumbel ...] [--seeds 0 1 2] [--samples 10000]
        [--temperatures 0.7 0.8 0.9 1.0 1.1 1.2 1.3] [--tolerance T] [--no-fed] [--reuse | --overwrite]
        [--threads N] [--out-dir runs/canon]
    python benchmarks/canon.py --benchmark oracle [--oracle PATH] ...
    python benchmarks/canon.py --quick             # a smoke run of three methods on data/tiny (no claim)

Per seed, in ``OUT/BENCHMARK/seed_S/METHOD``: SeqGAN's run (``coco_seqgan.yaml``, the oracle benchmark's
``oracle_seqgan.yaml``) pretrains the MLE model; every method whose models match it (the same generator and
discriminator settings) trains its adversarial stage from that ``pretrain.pt``; a method that needs another
discriminator kind (CoT's mediator, DPGAN's language model) pretrains its own run, whose MLE generator is
compared weight by weight with SeqGAN's (``same_mle_start``); RelGAN pretrains its own relational-memory
generator, as the paper does, and ScratchGAN trains from scratch. The methods are :data:`METHODS` (a method takes
part when its ``<benchmark>_<method>.yaml`` exists, :func:`config_path`).

Each model (the MLE checkpoint, every method's ``adversarial.pt``) is sampled at temperature 1 (``--samples``
sentences, sampling seed ``--sample-seed``) and scored: COCO: BLEU-2..5 against the test captions, Self-BLEU-2..5,
NLL_test, FED (when the encoder package is installed), and its position relative to the MLE model's temperature
curve (BLEU-4 against Self-BLEU-4, traced by benchmarks/frontier.py's machinery over ``--temperatures``): its
BLEU-4 minus the curve's at the same Self-BLEU-4, labelled above / on (within ``--tolerance``) / below, or
outside the curve's range. Oracle: NLL_oracle of the samples, NLL_test of held-out oracle samples, and the
position on the (NLL_test, NLL_oracle) curve in nats. The real-data row scores as many training sentences
(oracle: NLL_oracle of the held-out oracle samples). Beside them: the wall time of each adversarial stage.

Writes ``canon.json`` (every seed's rows, the curves, the runs, the aggregated table, the protocol) and
``canon.md`` (one table per benchmark, mean and sample standard deviation over seeds) in ``--out-dir``; the
results of earlier invocations in the same folder are kept, so the table can be built over several invocations
(``--reuse`` skips every stage that finished and continues one that did not). Scored points are cached in
``points.json``. The last line printed is one JSON object.
"""

from __future__ import annotations

from seqgan.runtime import prefer_passive_waits

prefer_passive_waits()  # before torch loads: see seqgan.runtime

import argparse
import importlib.util
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRID = [0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3]
REFERENCE = "seqgan"
"""The method whose run pretrains the MLE model every other method starts from."""


@dataclass(frozen=True)
class Method:
    """A method of the comparison."""

    label: str
    """Its name in the tables."""
    quick: tuple[str, ...] = ()
    """Overrides that make its stage a smoke run under ``--quick`` (after the benchmark's common ones)."""


METHODS: dict[str, Method] = {
    "seqgan": Method(
        "SeqGAN", ("seqgan.num_rollouts=2", "seqgan.d_num_negatives=128", "seqgan.batch_size=16")
    ),
    "gumbel": Method("Gumbel-softmax (LSTM)", ("gumbel.steps_per_epoch=2", "gumbel.batch_size=16")),
    "relgan": Method(
        "RelGAN",
        (
            "generator.head_size=8",
            "discriminator.num_rep=4",
            "pretrain.d_rounds=0",
            "gumbel.steps_per_epoch=2",
            "gumbel.batch_size=16",
        ),
    ),  # fmt: skip
    "maligan": Method("MaliGAN", ("maligan.d_num_negatives=128", "maligan.batch_size=16")),
    "rankgan": Method("RankGAN"),
    "leakgan": Method("LeakGAN"),
    "dgsan": Method("DGSAN", ("dgsan.steps_per_epoch=2", "dgsan.batch_size=16")),
    "cot": Method("CoT", ("cot.steps_per_epoch=2", "cot.batch_size=16")),
    "dpgan": Method("DPGAN", ("dpgan.d_num_negatives=128", "dpgan.batch_size=16")),
    "coldgan": Method(
        "ColdGAN-style", ("coldgan.num_rollouts=2", "coldgan.d_num_negatives=128", "coldgan.batch_size=16")
    ),
    "scratchgan": Method("ScratchGAN", ("scratchgan.steps_per_epoch=2", "scratchgan.batch_size=16")),
}
"""The methods in table order. A new method adds a line here; it takes part once its configs exist."""

CONFIGS = {("oracle", "seqgan"): "benchmarks/configs/oracle_seqgan.yaml"}
"""Configs that do not follow the ``recipes/configs/<benchmark>_<method>.yaml`` rule."""

QUICK_METHODS = ["seqgan", "maligan", "cot"]
"""``--quick``'s default: one method on the shared MLE checkpoint, one that pretrains its own run."""

QUICK_COMMON = (
    "generator.embed_dim=16",
    "generator.hidden_dim=16",
    "discriminator.embed_dim=16",
    "discriminator.hidden_dim=16",
    "discriminator.filter_sizes=[2,3]",
    "discriminator.num_filters=[16,16]",
    "pretrain.epochs=1",
    "pretrain.batch_size=128",
    "pretrain.d_rounds=1",
    "pretrain.d_epochs=1",
    "pretrain.d_num_negatives=128",
    "pretrain.num_print_samples=0",
    "adversarial.epochs=1",
    "adversarial.eval_every=1",
    "adversarial.eval_num_samples=50",
    "adversarial.checkpoint_every=1",
    "report_to=[jsonl]",
)
QUICK_DATA = {
    "coco": (
        f"data.train={ROOT / 'data/tiny/train.txt'}",
        f"data.test={ROOT / 'data/tiny/test.txt'}",
        "data.max_len=20",
        "data.overlong=drop",
        "tokenizer.min_freq=2",
    ),
    "oracle": ("data.num_train=512", "data.num_test=256", "pretrain.oracle_eval_samples=256"),
}
TOLERANCE = {"coco": 0.005, "oracle": 0.01}
"""Default ``--tolerance``: COCO in BLEU-4 (the size protocol.md gives the sampling noise of BLEU on a few
thousand samples), the oracle in nats of NLL_oracle (about the spread of NLL_oracle between evaluations)."""

COCO_KEYS = [*(f"bleu{n}" for n in (2, 3, 4, 5)), *(f"self_bleu{n}" for n in (2, 3, 4, 5)), "nll_test", "fed"]
ORACLE_KEYS = ["nll_oracle", "nll_test"]
HEADERS = {
    **{f"bleu{n}": f"BLEU-{n}" for n in (2, 3, 4, 5)},
    **{f"self_bleu{n}": f"Self-BLEU-{n}" for n in (2, 3, 4, 5)},
    "nll_test": "NLL_test",
    "nll_oracle": "NLL_oracle",
    "fed": "FED",
}
START_NOTES = {
    "mle": "the MLE model",
    "shared": "the MLE checkpoint",
    "own_pretrain": "own pretraining",
    "own_generator": "own {generator} generator and MLE",
    "scratch": "from scratch",
}


def config_path(benchmark: str, method: str) -> Path:
    """The config a method trains with on a benchmark."""
    return ROOT / CONFIGS.get((benchmark, method), f"recipes/configs/{benchmark}_{method}.yaml")


def available_methods(benchmark: str) -> list[str]:
    """The methods with a config for ``benchmark``, in table order."""
    return [m for m in METHODS if config_path(benchmark, m).is_file()]


def _load_benchmark(name: str):
    """A sibling script of benchmarks/ as a module (they are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"_canon_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------- the table maths
def curve_position(point: dict, curve: Sequence[dict], axes, tolerance: float) -> dict:
    """Where one model's point lies relative to a temperature curve.

    Args:
        point: the model's metrics at temperature 1 (with ``axes.x`` and ``axes.y``).
        curve: the reference (MLE) model's rows over the temperature grid.
        axes: :data:`seqgan.metrics.frontier.COCO_AXES` or ``ORACLE_AXES``.
        tolerance: an offset of at most this size (in ``axes.y`` units) is "on" the curve.
    Returns:
        ``{"curve_offset": d, "curve_y": y_curve, "curve_label": label}``: ``d`` is the point's quality minus the
        curve's at the same ``x`` (linear interpolation between the curve's points, signed so that positive is
        better: BLEU-4 minus the curve's, or the curve's NLL_oracle minus the model's); the label is "above",
        "on" or "below", or "outside the curve's range" (``d`` None) when ``x`` lies beyond the curve's ends.
    """
    from seqgan.metrics.frontier import curve_points, interpolate

    xs, ys = curve_points(curve, axes)
    x, y = point.get(axes.x), point.get(axes.y)
    outside = {"curve_offset": None, "curve_y": None, "curve_label": "outside the curve's range"}
    if x is None or y is None or len(xs) < 2 or not (math.isfinite(x) and math.isfinite(y)):
        return outside
    y_curve = float(interpolate(xs, ys, x))
    if math.isnan(y_curve):
        return outside
    offset = y - y_curve if axes.higher_is_better else y_curve - y
    return {"curve_offset": offset, "curve_y": y_curve, "curve_label": position_label(offset, tolerance)}


def position_label(offset: float, tolerance: float) -> str:
    """above / on / below for a signed offset (positive = better); None or NaN: outside the curve's range."""
    if offset is None or math.isnan(offset):
        return "outside the curve's range"
    if abs(offset) <= tolerance:
        return "on"
    return "above" if offset > 0 else "below"


def aggregate(per_seed: dict[str, dict[str, dict]], keys: Sequence[str], tolerance: float) -> dict[str, dict]:
    """Per-seed rows -> one row per model: mean and sample standard deviation of every metric over the seeds
    that have the row.

    Args:
        per_seed: ``{seed: {row name: metrics}}``; a metric may be missing or None in some seeds.
        keys: the metrics to aggregate (``curve_offset`` and ``adversarial_s`` are added).
        tolerance: labels the mean offset (:func:`position_label`).
    Returns:
        ``{row name: {"n", "seeds", "metrics": {key: {"mean", "std", "n"}}, "position", "labels", "starts",
        "same_mle_start"}}`` in table order (real data, MLE, then :data:`METHODS`, whatever order the rows were
        added in; seeds in numeric order); ``position`` is the label of the mean offset, ``labels`` counts the
        per-seed labels.
    """
    from seqgan.metrics.frontier import summarize

    seeds = sorted(per_seed, key=lambda s: int(s))
    names = list(dict.fromkeys(name for s in seeds for name in per_seed[s]))
    order = ["real", "mle", *METHODS]  # table order, whatever order the invocations added the rows in
    names.sort(key=lambda n: order.index(n) if n in order else len(order))
    out = {}
    for name in names:
        have = [s for s in seeds if name in per_seed[s]]
        rows = [per_seed[s][name] for s in have]
        metrics = {
            k: summarize([r[k] for r in rows if r.get(k) is not None])
            for k in [*keys, "curve_offset", "adversarial_s"]
        }
        labels = Counter(r["curve_label"] for r in rows if r.get("curve_label"))
        mean_offset = metrics["curve_offset"]["mean"]
        out[name] = {
            "n": len(have),
            "seeds": [int(s) for s in have],
            "metrics": metrics,
            "position": position_label(mean_offset, tolerance) if labels else None,
            "labels": dict(labels),
            "starts": dict(Counter(r["start"] for r in rows if r.get("start"))),
            "same_mle_start": [r.get("same_mle_start") for r in rows],
            "generator": next((r["generator"] for r in rows if r.get("generator")), None),
        }
    return out


def _cell(m: dict, digits: int) -> str:
    if not m or m["n"] == 0:
        return "-"
    return f"{m['mean']:.{digits}f}" + (f" ± {m['std']:.{digits}f}" if m["n"] > 1 else "")


def _position_cell(row: dict, digits: int) -> str:
    if row["position"] is None:
        return "-"
    m = row["metrics"]["curve_offset"]
    if m["n"] == 0:
        return "outside the curve's range"
    value = f"{m['mean']:+.{digits}f}" + (f" ± {m['std']:.{digits}f}" if m["n"] > 1 else "")
    labels = row["labels"]
    if len(labels) == 1 and row["n"] == 1:
        return f"{value} {row['position']}"
    counts = ", ".join(f"{k} {v}" for k, v in sorted(labels.items(), key=lambda kv: -kv[1]))
    return f"{value} {row['position']} ({counts})"


def _start_cell(row: dict) -> str:
    parts = []
    for start, count in row["starts"].items():
        text = START_NOTES.get(start, start).format(generator=row.get("generator") or "")
        if start == "own_pretrain":
            same = [v for v in row["same_mle_start"] if v is not None]
            text += f", same MLE generator {sum(same)}/{len(same)}" if same else ""
        parts.append(text if count == row["n"] else f"{text} ({count})")
    return "; ".join(parts) or "-"


def markdown_table(benchmark: str, table: dict[str, dict], labels: dict[str, str]) -> str:
    """One benchmark's aggregated rows as a markdown table (the most seeds any row has is the full count;
    a row with fewer names its seeds)."""
    keys = COCO_KEYS if benchmark == "coco" else ORACLE_KEYS
    keys = [k for k in keys if any(r["metrics"].get(k, {}).get("n") for r in table.values())]
    digits = 3
    unit = (
        "BLEU-4 at matched Self-BLEU-4" if benchmark == "coco" else "nats of NLL_oracle at matched NLL_test"
    )
    full = max((r["n"] for r in table.values()), default=0)
    head = ["model", "seeds", *(HEADERS[k] for k in keys), f"vs MLE curve ({unit})", "adversarial stage (s)",
            "start"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name, row in table.items():
        seeds = (
            str(row["n"])
            if row["n"] == full
            else f"{row['n']} of {full} (seed {', '.join(map(str, row['seeds']))})"
        )
        wall = row["metrics"]["adversarial_s"]
        cells = [labels.get(name, name), seeds, *(_cell(row["metrics"][k], digits) for k in keys),
                 _position_cell(row, digits), _cell(wall, 0), _start_cell(row)]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------- runs
def method_config(args, method: str, seed: int, run_dir: Path, extra: Sequence[str] = ()):
    """A method's config for one seed of the comparison (its file, the quick settings, then ``extra``)."""
    from seqgan.config import load_config

    overrides = [f"seed={seed}", f"out_dir={run_dir}"]
    if args.benchmark == "oracle" and args.oracle:
        overrides.append(f"data.oracle_path={args.oracle}")
    if args.quick:
        overrides += [*QUICK_COMMON, *QUICK_DATA[args.benchmark], *METHODS[method].quick]
    return load_config(config_path(args.benchmark, method), [*overrides, *extra])


def start_of(cfg, ref_cfg) -> str:
    """How a method's run starts: ``shared`` (its models match the reference run's: train from its
    ``pretrain.pt``), ``own_pretrain`` (another discriminator: its own pretraining, the same MLE recipe),
    ``own_generator`` (another generator: its own MLE) or ``scratch`` (no MLE pretraining)."""
    from seqgan.checkpoint import model_differences
    from seqgan.config import to_dict

    if not (cfg.method.mle_pretrain or cfg.scratchgan.mle_pretrain):
        return "scratch"
    mine, ref = to_dict(cfg), to_dict(ref_cfg)
    mine["discriminator"]["kind"], ref["discriminator"]["kind"] = (
        cfg.discriminator_kind,
        ref_cfg.discriminator_kind,
    )
    if mine["generator"] != ref["generator"]:
        return "own_generator"
    return "own_pretrain" if model_differences(ref, mine) else "shared"


def same_generator(a: Path, b: Path) -> bool:
    """Whether two checkpoints hold bit-identical generator weights."""
    import torch

    from seqgan.checkpoint import load_checkpoint

    sa, sb = (load_checkpoint(p)["generator"]["state_dict"] for p in (a, b))
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def finished(path: Path, epochs: int) -> bool:
    """Whether ``adversarial.pt`` exists and holds the last of ``epochs`` epochs."""
    from seqgan.checkpoint import load_checkpoint

    return path.is_file() and int(load_checkpoint(path).get("epoch", -1)) >= epochs


def _timing(run_dir: Path) -> dict:
    path = run_dir / "canon_timing.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _record_time(run_dir: Path, stage: str, seconds: float, resumed: bool) -> float:
    """Adds a stage's wall time to ``canon_timing.json`` (a resumed stage adds to its earlier part)."""
    timing = _timing(run_dir)
    timing[stage] = (timing.get(stage, 0.0) if resumed else 0.0) + seconds
    (run_dir / "canon_timing.json").write_text(json.dumps(timing) + "\n")
    return timing[stage]


def _records_time(run_dir: Path) -> float | None:
    """The summed epoch times of an adversarial run's records (for a run not timed by this script)."""
    path = run_dir / "adversarial_metrics.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    times = [r["time/epoch_s"] for r in rows if r.get("time/epoch_s") is not None]
    return sum(times) if times else None


def train_method(args, method: str, seed: int, seed_dir: Path, ref_cfg=None) -> dict:
    """Trains (or, with ``--reuse``, finds) one method's run for one seed; returns what the table needs.

    Raises:
        RunDirError: the run folder holds a run and neither ``--reuse`` nor ``--overwrite`` was given.
    """
    from seqgan.stages import RunDirError

    try:
        return _train_method(args, method, seed, seed_dir, ref_cfg)
    except RunDirError as e:
        if args.reuse or args.overwrite:
            raise
        raise RunDirError(
            f"{e} (canon.py: --reuse keeps finished stages, --overwrite trains again)"
        ) from None


def _train_method(args, method: str, seed: int, seed_dir: Path, ref_cfg) -> dict:
    from seqgan.stages import adversarial, pretrain
    from seqgan.stages.pipeline import _mode

    run_dir = seed_dir / method
    cfg = method_config(args, method, seed, run_dir)
    start = "mle" if ref_cfg is None else start_of(cfg, ref_cfg)
    mle_path = (seed_dir / REFERENCE / "pretrain.pt") if ref_cfg is not None else run_dir / "pretrain.pt"
    if start == "shared":
        cfg = method_config(args, method, seed, run_dir, [f"adversarial.pretrain_checkpoint={mle_path}"])
    elif start != "scratch":
        cfg = method_config(
            args, method, seed, run_dir, [f"adversarial.pretrain_checkpoint={run_dir / 'pretrain.pt'}"]
        )
    info = {
        "method": method,
        "dir": str(run_dir),
        "start": start,
        "generator": cfg.generator.kind,
        "config": str(config_path(args.benchmark, method)),
    }
    if start in ("mle", "own_pretrain", "own_generator"):
        run, resume, overwrite = _mode(run_dir, "pretrain", args.reuse, args.overwrite)
        if run:
            print(f"-- {method} seed {seed}: pretraining ({'resumed' if resume else 'fresh'})")
            t0 = time.time()
            pretrain(cfg, resume=resume, overwrite=overwrite)
            _record_time(run_dir, "pretrain_s", time.time() - t0, resume)
        else:
            print(f"-- {method} seed {seed}: pretraining finished before, reused")
    ckpt = run_dir / "adversarial.pt"
    if args.reuse and finished(ckpt, cfg.adversarial.epochs):
        print(f"-- {method} seed {seed}: adversarial stage finished before, reused")
        info["reused"] = True
    else:
        _, resume, overwrite = _mode(run_dir, "adversarial", args.reuse, args.overwrite)
        print(f"-- {method} seed {seed}: adversarial stage ({'resumed' if resume else 'fresh'})")
        t0 = time.time()
        adversarial(cfg, resume=resume, overwrite=overwrite)
        _record_time(run_dir, "adversarial_s", time.time() - t0, resume)
        info["reused"] = False
    timing = _timing(run_dir)
    if "adversarial_s" in timing:
        info["adversarial_s"], info["adversarial_s_source"] = (
            timing["adversarial_s"],
            "timed around the stage",
        )
    else:
        info["adversarial_s"] = _records_time(run_dir)
        info["adversarial_s_source"] = "sum of the run's epoch times (evaluations excluded)"
    info["pretrain_s"] = timing.get("pretrain_s")
    info["checkpoint"] = str(ckpt)
    info["mle_checkpoint"] = str(mle_path) if start != "scratch" else None
    if start in ("shared", "mle"):
        info["same_mle_start"] = True
    elif start == "own_pretrain":
        info["same_mle_start"] = same_generator(run_dir / "pretrain.pt", seed_dir / REFERENCE / "pretrain.pt")
    else:
        info["same_mle_start"] = None  # another generator, or none: not the MLE model's start by design
    return info


# ------------------------------------------------------------------------------------------------ scoring
class Scorer:
    """Scores checkpoints at temperature 1 and traces the MLE curve (benchmarks/frontier.py's Tracer and point
    cache), adds FED and the real-data row."""

    def __init__(self, args, cache, fed_num: int | None):
        self.frontier = _load_benchmark("frontier")
        self.args, self.cache, self.fed_num = args, cache, fed_num
        self.tracers: dict[str, object] = {}
        self.targs = argparse.Namespace(
            samples=args.samples, seed=args.sample_seed, lm="none", lm_samples=0, rounds=0
        )

    def tracer(self, path: str):
        """The checkpoint's tracer (one per checkpoint and seed: loading a run tokenizes its data)."""
        if path not in self.tracers:
            self.tracers[path] = self.frontier.Tracer(path, self.targs, None, self.cache)
        return self.tracers[path]

    def _cached(self, key: str, compute) -> dict:
        row = self.cache.get(key)
        if row is None:
            row = compute()
            self.cache.put(key, row)
        return dict(row)

    def fed(self, tracer) -> float | None:
        """FED of the model's samples at temperature 1 (the same samples as its point) against the test set."""
        if self.fed_num is None or tracer.oracle is not None:
            return None
        from seqgan.sampling import sample
        from seqgan.stages.evaluate import _fed

        def compute() -> dict:
            torch, g = tracer.torch, tracer.run.generator
            rng = torch.Generator(device=g.device).manual_seed(self.targs.seed)
            tokens = sample(g, self.targs.samples, tracer.max_len, temperature=1.0, rng=rng, batch_size=1024)
            texts = [tracer.run.tokenizer.decode(r) for r in tokens.tokens.cpu().tolist()]
            return {"fed": _fed(texts, tracer.data.raw["test"], self.fed_num, self.targs.seed)}

        key = self.frontier.PointCache.key(tracer.path, self.targs, None, 1.0) + f"|fed{self.fed_num}"
        return self._cached(key, compute)["fed"]

    def point(self, path: str) -> dict:
        tracer = self.tracer(path)
        row = tracer.point(1.0)
        fed = self.fed(tracer)
        if fed is not None:
            row["fed"] = fed
        return row

    def real(self, path: str) -> dict:
        """The real-data row: as many training sentences (COCO, with FED of the training captions), or NLL_oracle
        of the held-out oracle samples (the oracle)."""
        tracer = self.tracer(path)
        if tracer.oracle is not None:
            test = tracer.data.splits["test"][: self.targs.samples]
            key = f"real|{self.frontier.PointCache.key(path, self.targs, None, 1.0)}"
            return self._cached(key, lambda: {"nll_oracle": tracer.oracle.nll(test)})
        key = f"real|{Path(tracer.run.cfg.data.train).resolve()}|{Path(tracer.run.cfg.data.test).resolve()}|"
        key += f"{self.targs.samples}|{self.targs.seed}|{self.fed_num}"

        def compute() -> dict:
            row = tracer.real_row()
            if self.fed_num is not None:
                from seqgan.stages.evaluate import _fed

                row["fed"] = _fed(
                    tracer.data.raw["train"], tracer.data.raw["test"], self.fed_num, self.targs.seed
                )
            return row

        return self._cached(key, compute)


def fed_status(args) -> tuple[int | None, str | None]:
    """``(sentences per side, note)``: None and the reason when FED is not computed."""
    if args.benchmark == "oracle":
        return None, "FED is not defined on the oracle's token ids"
    if args.no_fed:
        return None, "FED skipped (--no-fed)"
    if args.quick:
        return None, "FED skipped (--quick)"
    try:
        from seqgan.metrics.fed import SentenceEmbedder

        SentenceEmbedder._package_path()
    except ImportError as e:
        return None, f"FED skipped: {e}"
    return args.fed_num, None


def score_seed(scorer: Scorer, args, runs: dict[str, dict], seed: int) -> tuple[dict, list[dict]]:
    """One seed's rows (real data, MLE, each method) and the MLE model's temperature curve."""
    from seqgan.metrics.frontier import COCO_AXES, ORACLE_AXES

    axes = COCO_AXES if args.benchmark == "coco" else ORACLE_AXES
    mle = runs[REFERENCE]["mle_checkpoint"]
    curve = scorer.tracer(mle).curve(args.temperatures, None, axes, f"MLE curve seed {seed}")
    rows = {"real": scorer.real(mle), "mle": {**scorer.point(mle), "start": "mle", "same_mle_start": True}}
    for method, info in runs.items():
        row = scorer.point(info["checkpoint"])
        row.update(curve_position(row, curve, axes, args.tolerance))
        row.update(
            adversarial_s=info["adversarial_s"], start=info["start"], same_mle_start=info["same_mle_start"],
            generator=info["generator"],
        )  # fmt: skip
        rows[method] = row
        scorer.tracers.pop(info["checkpoint"], None)
        off = row["curve_offset"]
        where = "outside the MLE curve's range" if off is None else f"{off:+.4f}: {row['curve_label']}"
        print(f"   {METHODS[method].label}: {axes.y} {row[axes.y]:.4f}, {axes.x} {row[axes.x]:.4f} ({where})")
    scorer.tracers.clear()
    return rows, curve


# --------------------------------------------------------------------------------------------------- main
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--benchmark", choices=["coco", "oracle"], default="coco")
    p.add_argument("--methods", nargs="+", help="default: every method with a config for the benchmark")
    p.add_argument("--seeds", type=int, nargs="+", help="default: 0 1 2 (--quick: 0)")
    p.add_argument("--samples", type=int, default=10000, help="samples per model (and per curve point)")
    p.add_argument("--sample-seed", type=int, default=100, help="sampling seed, the same for every model")
    p.add_argument("--temperatures", type=float, nargs="+", default=GRID, help="the MLE curve's temperatures")
    p.add_argument("--tolerance", type=float, help="'on' the curve within this offset (default: coco 0.005 "
                   "BLEU-4, oracle 0.01 nats)")  # fmt: skip
    p.add_argument("--fed-num", type=int, default=2000, help="sentences per side for FED")
    p.add_argument("--no-fed", action="store_true", help="skip FED")
    p.add_argument("--oracle", help="oracle weights (.npz; default: the paper's from ../shared when present)")
    p.add_argument("--out-dir", default="runs/canon")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--no-cache", action="store_true", help="rescore every point (default: reuse points.json)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--reuse", action="store_true", help="keep finished stages, continue unfinished ones")
    mode.add_argument("--overwrite", action="store_true", help="train every stage again")
    p.add_argument("--quick", action="store_true", help="a smoke run of three methods on tiny data")
    args = p.parse_args(argv)
    available = available_methods(args.benchmark)
    if args.methods is None:
        args.methods = [m for m in QUICK_METHODS if m in available] if args.quick else available
    unknown = [m for m in args.methods if m not in available]
    if unknown:
        p.error(f"--methods: no {args.benchmark} config for {unknown}; available: {' '.join(available)}")
    if REFERENCE not in args.methods:
        args.methods.insert(0, REFERENCE)  # its pretraining is every other method's start
    args.methods = [m for m in METHODS if m in args.methods]
    args.seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    if len(set(args.seeds)) != len(args.seeds):
        p.error("--seeds: each seed once")
    if len(args.temperatures) < 2 or min(args.temperatures) <= 0:
        p.error("--temperatures: at least two, all positive")
    if args.tolerance is None:
        args.tolerance = TOLERANCE[args.benchmark]
    if args.quick:
        args.samples = min(args.samples, 200)
        args.overwrite = args.overwrite or not args.reuse
    if args.benchmark == "oracle" and args.oracle is None:
        paper = ROOT.parent / "shared/data/seqgan_oracle/seqgan_oracle.npz"
        args.oracle = str(paper) if paper.is_file() else None
    return args


def _finite(obj):
    """``obj`` with every NaN or infinite float replaced by None (strict JSON)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _read_store(path: Path, benchmark: str, paper: dict) -> tuple[dict, dict]:
    """``canon.json`` as it is on disk now (empty when absent), and its entry for ``benchmark``."""
    store = json.loads(path.read_text()) if path.is_file() else {"benchmarks": {}}
    store["paper_oracle"] = paper
    return store, store["benchmarks"].setdefault(benchmark, {"seeds": {}})


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_outputs(out_dir: Path, store: dict) -> str:
    """``canon.json`` and ``canon.md`` (every benchmark in the store); returns the markdown."""
    labels = {"real": "real data", "mle": "MLE", **{m: e.label for m, e in METHODS.items()}}
    md = []
    for bench, entry in store["benchmarks"].items():
        proto = entry["protocol"]
        md += [f"## {bench}", "", f"`{proto['command']}`", ""]
        md.append(markdown_table(bench, entry["table"], labels))
        if bench == "oracle":
            paper = store["paper_oracle"]
            md.append("")
            names = {"random": "random", "mle": "MLE", "schedule_sampling": "scheduled sampling",
                     "pg_bleu": "PG-BLEU", "seqgan": "SeqGAN"}  # fmt: skip
            md.append(
                "SeqGAN paper (Table 1, NLL_oracle): "
                + ", ".join(f"{names.get(k, k)} {v:.3f}" for k, v in paper.items())
            )
        md += ["", proto["notes"], ""]
    text = "\n".join(md)
    _write_atomic(out_dir / "canon.md", text)
    _write_atomic(out_dir / "canon.json", json.dumps(_finite(store), indent=2) + "\n")
    return text


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    frontier = _load_benchmark("frontier")
    cache = frontier.PointCache(None if args.no_cache or args.quick else out_dir / "points.json")
    fed_num, fed_note = fed_status(args)
    scorer = Scorer(args, cache, fed_num)
    store_path = out_dir / "canon.json"
    paper = _load_benchmark("oracle").PAPER
    keys = COCO_KEYS if args.benchmark == "coco" else ORACLE_KEYS
    for seed in args.seeds:
        print(f"==== {args.benchmark}, seed {seed}: {', '.join(args.methods)}")
        seed_dir = out_dir / args.benchmark / f"seed_{seed}"
        ref = train_method(args, REFERENCE, seed, seed_dir)
        ref_cfg = method_config(args, REFERENCE, seed, seed_dir / REFERENCE)
        runs = {REFERENCE: {**ref, "start": "shared", "same_mle_start": True}}
        for method in args.methods:
            if method != REFERENCE:
                runs[method] = train_method(args, method, seed, seed_dir, ref_cfg)
        print(f"-- scoring seed {seed} ({args.samples} samples per model)")
        rows, curve = score_seed(scorer, args, runs, seed)
        # read now, not at start: another invocation (another benchmark or seed) may have written meanwhile
        store, entry = _read_store(store_path, args.benchmark, paper)
        old = entry["seeds"].get(str(seed), {"rows": {}, "runs": {}})
        entry["seeds"][str(seed)] = {
            "rows": {**old["rows"], **rows},  # methods scored in an earlier invocation stay
            "runs": {**old["runs"], **runs},
            "curve": curve,
        }
        entry["table"] = aggregate({s: e["rows"] for s, e in entry["seeds"].items()}, keys, args.tolerance)
        entry["protocol"] = protocol(args, fed_note, frontier)
        text = write_outputs(out_dir, store)
    print()
    print(text)
    wall = time.time() - t_start
    print(f"wrote {out_dir / 'canon.json'} and {out_dir / 'canon.md'} ({wall:.0f}s)")
    sys.stdout.flush()
    table = entry["table"]
    summary = {
        "benchmark": args.benchmark,
        "methods": args.methods,
        "seeds": args.seeds,
        "rows": {
            name: {
                "n": r["n"],
                **{k: r["metrics"][k]["mean"] for k in keys if r["metrics"][k]["n"]},
                "position": r["position"],
            }
            for name, r in table.items()
        },
        "wall_seconds": round(wall, 1),
        "quick": args.quick,
    }
    print(json.dumps(_finite(summary)))
    return store


def protocol(args, fed_note: str | None, frontier) -> dict:
    """How the table was made (stored beside it)."""
    command = (
        f"python benchmarks/canon.py --benchmark {args.benchmark} --seeds {' '.join(map(str, args.seeds))}"
    )
    if args.quick:
        command += " --quick"
    unit = "BLEU-4" if args.benchmark == "coco" else "nats"
    notes = (
        f"Mean ± sample standard deviation (n - 1) over seeds; {args.samples} samples per model at temperature 1 "
        f"(sampling seed {args.sample_seed}). vs MLE curve: the model's quality minus the MLE model's at the "
        f"same {'Self-BLEU-4' if args.benchmark == 'coco' else 'NLL_test'} on the MLE temperature curve of the "
        f"same seed (temperatures {', '.join(f'{t:g}' for t in args.temperatures)}, linear interpolation), "
        f"positive = better; 'on' within {args.tolerance:g} {unit}; the label is the mean's, the per-seed labels "
        "are counted beside it. A method that starts from another generator (RelGAN's RMC) or from scratch "
        "(ScratchGAN) is read against the same LSTM MLE curve. Adversarial stage: wall time of the stage "
        "(evaluations included)."
    )
    if fed_note and args.benchmark == "coco":
        notes += f" {fed_note}."
    if args.quick:
        notes += " Quick smoke run on tiny data: no claim."
    return {
        "command": command,
        "benchmark": args.benchmark,
        "methods": args.methods,
        "samples": args.samples,
        "sampling_seed": args.sample_seed,
        "temperatures": args.temperatures,
        "tolerance": args.tolerance,
        "fed_num": None if fed_note else args.fed_num,
        "fed_note": fed_note,
        "oracle": args.oracle if args.benchmark == "oracle" else None,
        "configs": {m: str(config_path(args.benchmark, m).relative_to(ROOT)) for m in args.methods},
        "quick": args.quick,
        "notes": notes,
        "std": "sample standard deviation over seeds (n - 1)",
    }


if __name__ == "__main__":
    from seqgan.stages import run_cli

    run_cli(main)
