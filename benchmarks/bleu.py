"""Benchmark seqgan.metrics.bleu against nltk (per-hypothesis sentence_bleu) and fast-bleu on COCO captions.

Side by side, in one run, setup (reference statistics) always included in the timed region:

1. BLEU-2..5: first 1,000 training captions (hypotheses) vs all 10k test captions (references).
   nltk is called per hypothesis and per order as the classic text-GAN toolkits do; it takes ~0.15 s
   per hypothesis per order, so it is timed on a subsample and scaled (the output says so).
2. Self-BLEU-2..5 on those 1,000 captions (each against the other 999); nltk again on a subsample.
3. fast-bleu (``BLEU(refs, weights).get_score(hyps)`` / ``SelfBLEU(samples, weights).get_score()``) on the
   same inputs if it is installed.
4. The full protocol: 10k x 10k BLEU-2..5 plus Self-BLEU-2..5 on the 10k training captions.

Tokenisation: ``nltk.word_tokenize(line.lower(), preserve_line=True)`` (timed separately, not counted).
The last output line is a JSON object with the headline figures.

Usage: ``python benchmarks/bleu.py [--quick] [--nltk-subsample N] [--self-nltk-subsample N]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nltk
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from seqgan.metrics.bleu import bleu_per_hypothesis_multi, self_bleu_per_sample_multi

ROOT = Path(__file__).resolve().parents[1]

ORDERS = (2, 3, 4, 5)
WEIGHTS = {n: (1 / n,) * n for n in ORDERS}


def load(path: Path, limit: int | None = None) -> list[list[str]]:
    """Read one caption per line (no trailing newline assumed, tolerated) and tokenize it."""
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if limit is not None:
        lines = lines[:limit]
    return [nltk.word_tokenize(line.lower(), preserve_line=True) for line in lines]


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Median wall time of ``repeat`` calls and the result of the last one."""
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def nltk_per_hypothesis(hyps: list[list[str]], refs: list[list[str]]) -> dict[int, list[float]]:
    """Classic toolkit loop: one nltk sentence_bleu call per hypothesis and per order."""
    smooth = SmoothingFunction().method1
    out: dict[int, list[float]] = {n: [] for n in ORDERS}
    for hyp in hyps:
        for n in ORDERS:
            out[n].append(float(sentence_bleu(refs, hyp, weights=WEIGHTS[n], smoothing_function=smooth)))
    return out


def nltk_self(samples: list[list[str]], count: int) -> dict[int, list[float]]:
    """nltk Self-BLEU of the first ``count`` samples, each against all the other samples."""
    smooth = SmoothingFunction().method1
    out: dict[int, list[float]] = {n: [] for n in ORDERS}
    for i in range(count):
        refs = samples[:i] + samples[i + 1 :]
        for n in ORDERS:
            score = sentence_bleu(refs, samples[i], weights=WEIGHTS[n], smoothing_function=smooth)
            out[n].append(float(score))
    return out


def max_diff(a: dict[int, list[float]], b: dict[int, list[float]]) -> float:
    return max(abs(x - y) for n in ORDERS for x, y in zip(a[n], b[n], strict=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data" / "coco")
    parser.add_argument(
        "--hyps", type=int, default=1000, help="hypotheses / Self-BLEU samples (default 1000)"
    )
    parser.add_argument("--nltk-subsample", type=int, default=20, help="hypotheses timed with nltk")
    parser.add_argument("--self-nltk-subsample", type=int, default=20, help="Self-BLEU samples run with nltk")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of the fast timings (median)")
    parser.add_argument("--no-fast-bleu", action="store_true", help="skip fast-bleu even if installed")
    parser.add_argument("--quick", action="store_true", help="small sizes, runs in a few seconds")
    args = parser.parse_args()

    limit = None
    if args.quick:
        args.hyps, limit = 200, 2000
        args.nltk_subsample = min(args.nltk_subsample, 3)
        args.self_nltk_subsample = min(args.self_nltk_subsample, 5)
        args.repeat = 1

    t0 = time.perf_counter()
    train = load(args.data_dir / "image_coco.txt", limit)
    test = load(args.data_dir / "test_coco.txt", limit)
    tokenize_s = time.perf_counter() - t0
    hyps = train[: args.hyps]
    n_h = len(hyps)
    k_b = min(args.nltk_subsample, n_h)
    k_s = min(args.self_nltk_subsample, n_h)
    print(f"nltk {nltk.__version__}, python {sys.version.split()[0]}, {os.cpu_count()} CPU cores")
    print(f"train {len(train)} / test {len(test)} captions, tokenized in {tokenize_s:.2f} s (not counted)")
    print(f"orders {ORDERS}; fast timings are the median of {args.repeat} run(s), setup included\n")

    # ---- BLEU-2..5: hyps vs all test captions ------------------------------------------------------
    ours_b_s, ours_b = timed(lambda: bleu_per_hypothesis_multi(hyps, test, ORDERS), args.repeat)
    nltk_b_sub_s, nltk_b = timed(lambda: nltk_per_hypothesis(hyps[:k_b], test))
    nltk_s_per_hyp = nltk_b_sub_s / k_b
    ours_s_per_hyp = ours_b_s / n_h
    diff_b = max_diff({n: ours_b[n][:k_b] for n in ORDERS}, nltk_b)

    # ---- Self-BLEU-2..5 on hyps ---------------------------------------------------------------------
    ours_s_s, ours_s = timed(lambda: self_bleu_per_sample_multi(hyps, ORDERS), args.repeat)
    nltk_s_sub_s, nltk_s = timed(lambda: nltk_self(hyps, k_s))
    nltk_self_s_per_sample = nltk_s_sub_s / k_s
    diff_s = max_diff({n: ours_s[n][:k_s] for n in ORDERS}, nltk_s)

    # ---- fast-bleu ----------------------------------------------------------------------------------
    fb_b_s = fb_s_s = fb_diff = None
    fb_status = "skipped (--no-fast-bleu)"
    if not args.no_fast_bleu:
        try:
            from fast_bleu import BLEU, SelfBLEU

            fb_b_s, fb_b = timed(lambda: BLEU(test, WEIGHTS).get_score(hyps), args.repeat)
            fb_s_s, fb_s = timed(lambda: SelfBLEU(hyps, WEIGHTS).get_score(), args.repeat)
            fb_diff = max(max_diff(ours_b, fb_b), max_diff(ours_s, fb_s))
            fb_status = "available"
        except ImportError:
            fb_status = "not installed"

    # ---- full protocol ------------------------------------------------------------------------------
    full_b_s, full_b = timed(lambda: bleu_per_hypothesis_multi(train, test, ORDERS))
    full_s_s, full_s = timed(lambda: self_bleu_per_sample_multi(train, ORDERS))
    full_s = {n: math.fsum(v) / len(v) for n, v in full_s.items()}
    full_b = {n: math.fsum(v) / len(v) for n, v in full_b.items()}
    full_protocol_s = full_b_s + full_s_s

    # ---- report -------------------------------------------------------------------------------------
    nltk_b_scaled = nltk_s_per_hyp * n_h
    nltk_s_scaled = nltk_self_s_per_sample * n_h
    speedup_nltk = nltk_b_scaled / ours_b_s
    speedup_self_nltk = nltk_s_scaled / ours_s_s
    speedup_fb = fb_b_s / ours_b_s if fb_b_s is not None else None
    speedup_self_fb = fb_s_s / ours_s_s if fb_s_s is not None else None

    def fmt(x: float | None, spec: str = ".4f") -> str:
        return "n/a" if x is None else format(x, spec)

    rows = [
        ("task", "ours (s)", "nltk (s)", "fast-bleu (s)", "vs nltk", "vs fast-bleu"),
        (
            f"BLEU-2..5 {n_h} x {len(test)}",
            fmt(ours_b_s),
            f"{nltk_b_scaled:.1f}*",
            fmt(fb_b_s),
            f"{speedup_nltk:.0f}x",
            fmt(speedup_fb, ".1f") + ("x" if speedup_fb else ""),
        ),
        (
            f"Self-BLEU-2..5 {n_h}",
            fmt(ours_s_s),
            f"{nltk_s_scaled:.1f}*",
            fmt(fb_s_s),
            f"{speedup_self_nltk:.0f}x",
            fmt(speedup_self_fb, ".1f") + ("x" if speedup_self_fb else ""),
        ),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print(
            "  ".join(
                c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print(
        f"* nltk timed on a subsample and scaled linearly: BLEU on {k_b} hypotheses "
        f"({nltk_b_sub_s:.1f} s, {nltk_s_per_hyp:.3f} s/hypothesis for 4 orders = "
        f"{nltk_s_per_hyp / len(ORDERS):.3f} s per hypothesis per order); Self-BLEU on {k_s} samples "
        f"({nltk_s_sub_s:.1f} s) each against the other {n_h - 1}"
    )
    print(f"per hypothesis (4 orders): ours {ours_s_per_hyp:.2e} s, nltk {nltk_s_per_hyp:.2e} s")
    print(
        f"max |ours - nltk|: BLEU {diff_b:.3g} (on {k_b} x 4 scores), Self-BLEU {diff_s:.3g} (on {k_s} x 4)"
    )
    print(
        f"fast-bleu: {fb_status}"
        + (f"; max |ours - fast-bleu| = {fb_diff:.3g}" if fb_diff is not None else "")
    )
    print(
        f"full protocol: BLEU-2..5 {len(train)} x {len(test)} in {full_b_s:.2f} s + Self-BLEU-2..5 on "
        f"{len(train)} in {full_s_s:.2f} s = {full_protocol_s:.2f} s (tokenization excluded)"
    )
    print("  BLEU     " + "  ".join(f"{n}: {full_b[n]:.4f}" for n in ORDERS))
    print("  Self-BLEU " + "  ".join(f"{n}: {full_s[n]:.4f}" for n in ORDERS))

    result = {
        "ours_s_per_hyp": ours_s_per_hyp,
        "nltk_s_per_hyp": nltk_s_per_hyp,
        "speedup_vs_nltk": speedup_nltk,
        "speedup_vs_fast_bleu": speedup_fb,
        "max_abs_diff": max(diff_b, diff_s),
        "full_protocol_s": full_protocol_s,
        "max_abs_diff_bleu": diff_b,
        "max_abs_diff_self_bleu": diff_s,
        "self_bleu_speedup_vs_nltk": speedup_self_nltk,
        "self_bleu_speedup_vs_fast_bleu": speedup_self_fb,
        "ours_bleu_s": ours_b_s,
        "ours_self_bleu_s": ours_s_s,
        "fast_bleu_bleu_s": fb_b_s,
        "fast_bleu_self_bleu_s": fb_s_s,
        "max_abs_diff_vs_fast_bleu": fb_diff,
        "fast_bleu": fb_status,
        "nltk_subsample": k_b,
        "self_nltk_subsample": k_s,
        "num_hypotheses": n_h,
        "num_references": len(test),
        "full_protocol_bleu_s": full_b_s,
        "full_protocol_self_bleu_s": full_s_s,
        "tokenize_s": tokenize_s,
        "nltk_version": nltk.__version__,
        "quick": args.quick,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
