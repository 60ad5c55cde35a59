#!/usr/bin/env python
"""The quality-diversity frontier: does a method's temperature curve lie above the MLE model's?

    python benchmarks/frontier.py --model MLE runs/coco/seed_0/pretrain.pt runs/coco/seed_1/pretrain.pt \
        --model SeqGAN runs/coco/seed_0/adversarial.pt runs/coco/seed_1/adversarial.pt \
        [--reference MLE] [--samples 10000] [--temperatures 0.7 0.8 0.9 1.0 1.1 1.2 1.3] [--rounds 2] \
        [--lm smollm2 | MODEL_DIR | CHECKPOINT.pt] [--lm-samples 1000] [--out-dir runs/frontier] [--threads 2]
    python benchmarks/frontier.py --quick          # a smoke run on tiny models it trains itself (no claim)

Each ``--model NAME PATH [PATH ...]`` is one method, one checkpoint per seed; seed ``i`` of a method is compared
with seed ``i`` of the reference (the MLE model it started from; with a single reference checkpoint, that one).
The task comes from the checkpoints' config:

* sentences (COCO): every model is sampled at the temperature grid (``--samples`` sentences per temperature,
  sampling seed ``--seed``), scored by BLEU-4 against the test split (quality), Self-BLEU-4 (diversity),
  NLL_test of the test split under the temperature-scaled model and the LM score (mean NLL of the first
  ``--lm-samples`` samples under an independent language model, :mod:`seqgan.metrics.lm_score`);
* the synthetic oracle: NLL_oracle of the samples (quality) against NLL_test of held-out oracle samples
  (coverage).

The reference's curve sets the target range; every other curve then gets up to ``--rounds`` rounds of extra
temperatures, extrapolated from its own points, until it covers that range (so each model has its own
temperatures). The gap of a curve (:func:`seqgan.metrics.frontier.frontier_gap`) is its quality minus the
reference's at the same diversity, averaged over the range both cover, positive when better; the table gives its
mean and standard deviation over seeds. Writes ``frontier.json`` and ``frontier.png`` in ``--out-dir``; the last
line is one JSON object. Points already computed for an unchanged checkpoint with the same settings are read
back from ``points.json`` in ``--out-dir`` (``--no-cache`` recomputes them), so models and seeds can be added to a
frontier one run at a time.
"""

from __future__ import annotations

from seqgan.runtime import prefer_passive_waits

prefer_passive_waits()  # before torch loads: see seqgan.runtime

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRID = [0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model",
        nargs="+",
        action="append",
        metavar=("NAME", "PATH"),
        default=[],
        help="a method's name and its checkpoints, one per seed (repeat for every method)",
    )
    p.add_argument("--reference", help="the reference method's name (default: the first --model)")
    p.add_argument("--samples", type=int, default=10000, help="samples per temperature")
    p.add_argument("--temperatures", type=float, nargs="+", default=GRID, help="the starting grid")
    p.add_argument("--rounds", type=int, default=2, help="rounds of extra temperatures to cover the range")
    p.add_argument(
        "--lm", default="smollm2", help="LM scorer: smollm2, a model folder, a checkpoint, or none"
    )
    p.add_argument("--lm-samples", type=int, default=1000, help="samples per point scored by the LM")
    p.add_argument("--seed", type=int, default=100, help="sampling seed (the same at every point)")
    p.add_argument("--out-dir", default="runs/frontier")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="recompute every point (default: reuse points of unchanged checkpoints from out-dir/points.json)",
    )
    p.add_argument("--quick", action="store_true", help="train two tiny models and run a small frontier")
    args = p.parse_args(argv)
    for spec in args.model:
        if len(spec) < 2:
            p.error(f"--model {spec[0]}: give the name, then at least one checkpoint")
    if not args.quick and not args.model:
        p.error("give at least one --model (or --quick)")
    names = [m[0] for m in args.model]
    if len(set(names)) != len(names):
        p.error("--model names must differ")
    if args.reference and args.reference not in names:
        p.error(f"--reference {args.reference} is not one of the --model names {names}")
    if len(args.temperatures) < 2 or min(args.temperatures) <= 0:
        p.error("--temperatures: at least two, all positive")
    return args


def quick_models(out_dir: Path) -> list[list[str]]:
    """Two tiny models from the same MLE start: the MLE checkpoint and two SeqGAN epochs after it."""
    from seqgan.config import load_config
    from seqgan.stages import adversarial, pretrain

    cfg = load_config(
        ROOT / "recipes/configs/tiny.yaml",
        [
            f"out_dir={out_dir / 'tiny'}",
            f"data.train={ROOT / 'data/tiny/train.txt'}",
            f"data.test={ROOT / 'data/tiny/test.txt'}",
            "pretrain.num_print_samples=0",
            "report_to=[jsonl]",
        ],
    )
    mle = pretrain(cfg, overwrite=True)
    adv = adversarial(cfg, overwrite=True)
    return [["MLE", str(mle)], ["SeqGAN", str(adv)]]


class PointCache:
    """Points already computed, keyed by the checkpoint's path, size and modification time and every setting
    that changes a point (samples, seed, LM and its sample count, temperature); rewritten atomically."""

    def __init__(self, path: Path | None):
        self.path = path
        self.points = json.loads(path.read_text()) if path is not None and path.is_file() else {}
        self.reused = 0

    @staticmethod
    def key(checkpoint: str, args, lm: str | None, temperature: float) -> str:
        st = Path(checkpoint).stat()
        return (
            f"{Path(checkpoint).resolve()}|{st.st_size}|{st.st_mtime_ns}|{args.samples}|{args.seed}|"
            f"{lm}|{args.lm_samples if lm else 0}|{temperature:.4f}"
        )

    def get(self, key: str) -> dict | None:
        return self.points.get(key)

    def put(self, key: str, row: dict) -> None:
        self.points[key] = row
        if self.path is not None:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.points) + "\n")
            tmp.replace(self.path)


class Tracer:
    """Samples one checkpoint at temperatures and scores every point."""

    def __init__(self, path: str, args, lm, cache: PointCache | None = None):
        import torch

        from seqgan.runs import SentenceTask, load_oracle, load_run, prepare_data

        self.path, self.args, self.lm, self.cache = path, args, lm, cache or PointCache(None)
        self.run = load_run(path)
        if self.run.conditional:
            raise SystemExit(
                f"error: {path} is a conditional checkpoint; the frontier compares sentence models"
            )
        cfg = self.run.cfg
        self.max_len = cfg.data.max_len
        self.data = prepare_data(cfg, self.run.tokenizer)
        if "test" not in self.data.splits:
            raise SystemExit(f"error: {path}: the checkpoint's config has no test split")
        self.ev = SentenceTask.evaluator(self.data, cfg)
        self.oracle = load_oracle(cfg.data)[0] if cfg.data.synthetic == "oracle" else None
        self.torch = torch

    def point(self, temperature: float) -> dict:
        """The metrics of ``--samples`` samples at ``temperature`` (from the cache when computed before)."""
        lm_key = None
        if self.lm is not None and self.oracle is None:
            lm_key = str(Path(self.args.lm).resolve()) if Path(self.args.lm).exists() else self.args.lm
        key = PointCache.key(self.path, self.args, lm_key, temperature)
        row = self.cache.get(key)
        if row is None:
            row = self._point(temperature)
            self.cache.put(key, row)
        else:
            self.cache.reused += 1
        return dict(row)

    def _point(self, temperature: float) -> dict:
        from seqgan.metrics.nll import nll_test
        from seqgan.sampling import sample

        torch, a, g = self.torch, self.args, self.run.generator
        t0 = time.time()
        rng = torch.Generator(device=g.device).manual_seed(a.seed)
        tokens = sample(
            g, a.samples, self.max_len, temperature=temperature, rng=rng, batch_size=1024
        ).tokens.cpu()
        row = {"temperature": temperature}
        if self.oracle is not None:
            row["nll_oracle"] = self.oracle.nll(tokens)
        else:
            row.update(self.ev.score_tokens(self.ev.ids_tokens(tokens)))
        row["nll_test"] = nll_test(g, self.data.splits["test"], temperature=temperature)
        if self.lm is not None and self.oracle is None:
            texts = [self.run.tokenizer.decode(r) for r in tokens[: a.lm_samples].tolist()]
            row["lm_score"] = self.lm.score(texts)
        row["seconds"] = round(time.time() - t0, 2)
        return row

    def curve(self, temperatures, targets, axes, label: str) -> list[dict]:
        from tqdm import tqdm

        from seqgan.metrics.frontier import next_temperatures

        rows = []
        todo = [float(t) for t in temperatures]
        for round_ in range(self.args.rounds + 1):
            for t in tqdm(todo, desc=f"{label} round {round_}", leave=False, file=sys.stdout):
                rows.append(self.point(t))
            if targets is None or round_ == self.args.rounds:
                break
            # a target within 1% of the range counts as reached
            todo = next_temperatures(rows, targets, axes.x, tolerance=0.01 * abs(targets[1] - targets[0]))
            if not todo:
                break
        return sorted(rows, key=lambda r: r["temperature"])

    def real_row(self) -> dict:
        """The real-data point: as many training sentences, scored the same way (sentences only)."""
        if self.oracle is not None:
            return {}
        row = self.ev.real_data_row(self.data.raw["train"], self.args.samples, self.args.seed)
        if self.lm is not None:
            row["lm_score"] = self.lm.score(self.data.raw["train"][: self.args.lm_samples])
        return row


def plot(result: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax_keys = result["axes"]
    panels = [(ax_keys["y"], ax_keys["y_label"])]
    if result["task"] == "sentences" and result["lm"]:
        panels.append(("lm_score", "LM score, nats/token (lower = more natural)"))
    fig, axs = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.5), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (key, label) in zip(axs[0], panels, strict=True):
        for i, (name, seeds) in enumerate(result["models"].items()):
            for j, s in enumerate(seeds):
                pts = sorted((r[ax_keys["x"]], r[key]) for r in s["rows"] if r.get(key) is not None)
                ax.plot(
                    [x for x, _ in pts], [y for _, y in pts], marker="o", ms=3, color=colors[i % len(colors)],
                    alpha=0.9 if j == 0 else 0.5, label=name if j == 0 else None,
                )  # fmt: skip
        real = result.get("real_data") or {}
        if real.get(key) is not None:
            ax.scatter(
                [real[ax_keys["x"]]], [real[key]], marker="*", s=120, color="k", label="real data", zorder=3
            )
        ax.set_xlabel(ax_keys["x_label"])
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axs[0][0].set_title("Temperature curves (one line per seed)")
    if len(panels) > 1:
        axs[0][1].set_title(f"LM score under {result['lm']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch

    from seqgan.metrics.frontier import COCO_AXES, ORACLE_AXES, curve_points, frontier_gap, summarize
    from seqgan.metrics.lm_score import lm_scorer

    if args.threads:
        torch.set_num_threads(args.threads)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    if args.quick:
        args.samples, args.lm_samples, args.rounds = min(args.samples, 200), min(args.lm_samples, 100), 1
        args.model = quick_models(out_dir)
        if args.lm == "smollm2":  # the quick run scores with the tiny MLE model itself (no claim)
            args.lm = args.model[0][1]
    models = {m[0]: m[1:] for m in args.model}
    ref_name = args.reference or args.model[0][0]
    lm = None if args.lm == "none" else lm_scorer(args.lm)
    cache = PointCache(None if args.no_cache or args.quick else out_dir / "points.json")
    order = [ref_name, *(n for n in models if n != ref_name)]
    result: dict = {"models": {}, "gaps": {}}
    reference_rows: list[list[dict]] = []
    axes = None
    for name in order:
        result["models"][name] = []
        for i, path in enumerate(models[name]):
            t0 = time.time()
            tracer = Tracer(path, args, lm, cache)
            task = "oracle" if tracer.oracle is not None else "sentences"
            if axes is None:
                axes = ORACLE_AXES if task == "oracle" else COCO_AXES
                result.update(
                    task=task, axes=axes.__dict__, lm=None if lm is None or task == "oracle" else lm.name
                )
                if task == "sentences":
                    result["real_data"] = tracer.real_row()
            elif (task == "oracle") != (axes is ORACLE_AXES):
                raise SystemExit(f"error: {path} is a {task} checkpoint; the others are not")
            ref = None
            if name != ref_name:
                ref = reference_rows[min(i, len(reference_rows) - 1)]
            targets = None
            if ref is not None:
                xs, _ = curve_points(ref, axes)
                targets = [float(xs[0]), float(xs[-1])]
            rows = tracer.curve(args.temperatures, targets, axes, f"{name} seed {i}")
            entry = {"path": path, "rows": rows, "seconds": round(time.time() - t0, 1)}
            at_one = [r for r in rows if r["temperature"] == 1.0]
            entry["nll_test"] = at_one[0]["nll_test"] if at_one else None
            if ref is not None:
                entry["gap"] = frontier_gap(rows, ref, axes)
            else:
                reference_rows.append(rows)
            result["models"][name].append(entry)
            gap = entry.get("gap", {}).get("gap")
            print(
                f"{name} [{i}] {path}: {len(rows)} temperatures, {entry['seconds']:.0f}s"
                + (f", gap {gap:+.4f}" if gap is not None else " (reference)")
            )
    ref_nll = [e["nll_test"] for e in result["models"][ref_name]]
    for name in order[1:]:
        entries = result["models"][name]
        result["gaps"][name] = {
            **summarize([e["gap"]["gap"] for e in entries]),
            "nll_test_minus_reference": summarize(
                [
                    e["nll_test"] - ref_nll[min(i, len(ref_nll) - 1)]
                    for i, e in enumerate(entries)
                    if e["nll_test"] is not None and ref_nll[min(i, len(ref_nll) - 1)] is not None
                ]
            ),
        }
    result["protocol"] = {
        "samples_per_point": args.samples,
        "sampling_seed": args.seed,
        "starting_temperatures": args.temperatures,
        "extra_rounds": args.rounds,
        "lm_samples_per_point": args.lm_samples if result.get("lm") else None,
        "gap": "mean over 101 evenly spaced x in the range both curves cover of (y_model - y_reference), linear "
        "interpolation between a curve's points, positive = better than the reference",
        "std": "sample standard deviation over seeds (n - 1)",
        "quick": args.quick,
    }
    result["wall_seconds"] = round(time.time() - t_start, 1)
    (out_dir / "frontier.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, out_dir / "frontier.png")

    unit = "BLEU-4" if axes is COCO_AXES else "nats"
    print(f"\ngap to {ref_name}'s curve ({unit} at matched {axes.x}; positive = above it):")
    print(f"| method | seeds | gap mean | gap std | shared {axes.x} range | NLL_test - {ref_name} (T=1) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, g in result["gaps"].items():
        ranges = [e["gap"] for e in result["models"][name]]
        rng = ", ".join(f"{r['lo']:.3f}-{r['hi']:.3f}" for r in ranges if not math.isnan(r["lo"])) or "none"
        d = g["nll_test_minus_reference"]
        print(f"| {name} | {g['n']} | {g['mean']:+.4f} | {g['std']:.4f} | {rng} | {d['mean']:+.3f} |")
    if cache.reused:
        print(f"reused {cache.reused} points of unchanged checkpoints from {cache.path}")
    print(f"wrote {out_dir / 'frontier.json'} and {out_dir / 'frontier.png'} ({result['wall_seconds']:.0f}s)")
    summary = {
        "task": result["task"],
        "reference": ref_name,
        "gaps": {n: {"mean": g["mean"], "std": g["std"], "n": g["n"]} for n, g in result["gaps"].items()},
        "wall_seconds": result["wall_seconds"],
        "quick": args.quick,
    }
    print(json.dumps(summary))
    return result


if __name__ == "__main__":
    main()
