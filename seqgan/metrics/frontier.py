"""Where a model's temperature curve lies relative to the MLE model's: the quality-diversity frontier.

Caccia et al. ("Language GANs Falling Short", arXiv 1811.02549) showed that a GAN's single point says little: the
MLE model traces a whole curve of (diversity, quality) points as its sampling temperature moves, and a GAN is
only better if its own curve lies *above* that one. This module holds the maths of that comparison:

* a **curve** is the list of rows of a temperature sweep (one row of metrics per temperature), read on two axes:
  ``x`` (diversity, or coverage) and ``y`` (quality);
* the **gap** of a curve to a reference curve is the mean, over an evenly spaced grid of ``x`` across the range
  both curves cover, of ``y_model(x) - y_reference(x)``, each curve interpolated linearly in ``x`` between its
  points (never extrapolated); its sign is chosen so that a positive gap means *better than the reference*;
* :func:`next_temperatures` proposes the temperatures that extend a model's curve over a target ``x`` range
  (each model gets its own temperatures, so that every curve covers the reference's range).

Two sets of axes are defined:

* :data:`COCO_AXES`: ``x`` = Self-BLEU-4 (lower = more diverse), ``y`` = BLEU-4 against the test set
  (higher = better); gap in BLEU-4 at matched Self-BLEU-4.
* :data:`ORACLE_AXES`: ``x`` = NLL_test of held-out oracle samples under the temperature-scaled model
  (lower = better coverage), ``y`` = NLL_oracle of the samples (lower = better quality); gap in nats, positive
  when the model's NLL_oracle is lower than the reference's at the same NLL_test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Axes",
    "COCO_AXES",
    "ORACLE_AXES",
    "curve_points",
    "frontier_gap",
    "interpolate",
    "next_temperatures",
    "summarize",
]


@dataclass(frozen=True)
class Axes:
    """The two metrics a curve is read on."""

    x: str
    """Row key of the diversity (or coverage) axis."""
    y: str
    """Row key of the quality axis."""
    higher_is_better: bool
    """Whether a larger ``y`` is better (BLEU) or worse (NLL)."""
    x_label: str
    y_label: str


COCO_AXES = Axes(
    "self_bleu4", "bleu4", True, "Self-BLEU-4 (lower = more diverse)", "BLEU-4 against the test set"
)
ORACLE_AXES = Axes(
    "nll_test",
    "nll_oracle",
    False,
    "NLL_test of held-out oracle samples (lower = better coverage)",
    "NLL_oracle of the samples (lower = better)",
)


def curve_points(rows: Sequence[dict], axes: Axes) -> tuple[np.ndarray, np.ndarray]:
    """The curve's ``(x, y)`` points sorted by ``x``; rows missing either metric (or NaN) are skipped and
    points at the same ``x`` are averaged."""
    pts: dict[float, list[float]] = {}
    for r in rows:
        x, y = r.get(axes.x), r.get(axes.y)
        if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
            continue
        pts.setdefault(float(x), []).append(float(y))
    xs = np.array(sorted(pts), dtype=np.float64)
    ys = np.array([sum(pts[x]) / len(pts[x]) for x in xs], dtype=np.float64)
    return xs, ys


def interpolate(xs: np.ndarray, ys: np.ndarray, x: np.ndarray | float) -> np.ndarray:
    """Piecewise-linear ``y`` at ``x`` (``xs`` increasing); NaN outside ``[xs[0], xs[-1]]``."""
    x = np.asarray(x, dtype=np.float64)
    if len(xs) == 0:
        return np.full(x.shape, np.nan)
    out = np.interp(x, xs, ys)
    return np.where((x < xs[0]) | (x > xs[-1]), np.nan, out)


def frontier_gap(rows: Sequence[dict], reference: Sequence[dict], axes: Axes, num: int = 101) -> dict:
    """The gap of a curve to the reference curve over the ``x`` range both cover.

    Args:
        rows: the model's sweep rows.
        reference: the reference (MLE) sweep rows.
        axes: which metrics, and which direction is better.
        num: grid points across the shared range.
    Returns:
        ``{"gap": .., "lo": .., "hi": .., "coverage": ..}``: the mean signed difference (positive = the model is
        better at matched ``x``), the shared ``x`` range, and the fraction of the reference's range it spans.
        ``gap`` is NaN when the curves share no range (fewer than two points each, or disjoint ``x``).
    """
    mx, my = curve_points(rows, axes)
    rx, ry = curve_points(reference, axes)
    nan = {"gap": math.nan, "lo": math.nan, "hi": math.nan, "coverage": 0.0}
    if len(mx) < 2 or len(rx) < 2:
        return nan
    lo, hi = max(mx[0], rx[0]), min(mx[-1], rx[-1])
    if not hi > lo:
        return nan
    grid = np.linspace(lo, hi, num)
    diff = interpolate(mx, my, grid) - interpolate(rx, ry, grid)
    if not axes.higher_is_better:
        diff = -diff
    return {
        "gap": float(diff.mean()),
        "lo": float(lo),
        "hi": float(hi),
        "coverage": float((hi - lo) / (rx[-1] - rx[0])),
    }


def next_temperatures(
    rows: Sequence[dict],
    targets: Sequence[float],
    x_key: str,
    bounds: tuple[float, float] = (0.2, 5.0),
    tolerance: float = 0.0,
) -> list[float]:
    """Temperatures predicted to reach the ``targets`` values of ``x`` that the evaluated ``rows`` do not cover.

    ``x`` is taken as a monotone function of log-temperature: inside the evaluated range nothing is proposed;
    beyond it each missing target is extrapolated linearly in ``log T`` from the two evaluated points at that end
    (x rising or falling with temperature alike). Proposals are clipped to ``bounds`` and never repeat an
    evaluated temperature.

    Args:
        rows: the sweep rows so far (each with ``temperature`` and ``x_key``).
        targets: the ``x`` values the curve should reach (e.g. the reference curve's smallest and largest).
        x_key: the metric (``self_bleu4``, ``nll_test``).
        bounds: the lowest and highest temperature to propose.
        tolerance: a target within this distance of the covered range counts as covered.
    """
    pts = sorted((float(r["temperature"]), float(r[x_key])) for r in rows if r.get(x_key) is not None)
    if len(pts) < 2:
        raise ValueError("next_temperatures needs at least two evaluated temperatures")
    xs = [x for _, x in pts]
    lo, hi = min(xs), max(xs)
    done = {round(t, 4) for t, _ in pts}
    out: list[float] = []
    for target in targets:
        if lo - tolerance <= target <= hi + tolerance:
            continue
        # the end of the temperature range on the target's side
        ends = [pts[0], pts[1]], [pts[-1], pts[-2]]
        for (t0, x0), (t1, x1) in ends:
            slope = (x1 - x0) / (math.log(t1) - math.log(t0))
            if slope == 0:
                continue
            log_t = math.log(t0) + (target - x0) / slope
            beyond = log_t < math.log(t0) if t0 < t1 else log_t > math.log(t0)
            if beyond:  # the extrapolation leaves the evaluated range on this end
                t = min(max(math.exp(log_t), bounds[0]), bounds[1])
                if round(t, 4) not in done:
                    done.add(round(t, 4))
                    out.append(round(t, 4))
                break
    return sorted(out)


def summarize(values: Sequence[float]) -> dict:
    """Mean, sample standard deviation (n - 1; 0 for one value) and count of the finite ``values``."""
    v = [float(x) for x in values if x is not None and math.isfinite(x)]
    if not v:
        return {"mean": math.nan, "std": math.nan, "n": 0}
    mean = sum(v) / len(v)
    std = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return {"mean": mean, "std": std, "n": len(v)}
