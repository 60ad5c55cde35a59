"""PNG plots of training curves (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

from seqgan.utils import read_metrics


def plot_curves(
    metrics_path: str | Path, keys: list[str], png: str | Path, x: str = "step", title: str = ""
) -> Path:
    """Plots each metric in ``keys`` against ``x`` from a metrics.jsonl file, one panel per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    keys = [k for k in keys if any(r.get(k) is not None for r in records)]
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(4.5 * max(1, len(keys)), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=False):
        pts = [(r[x], r[key]) for r in records if r.get(key) is not None and r.get(x) is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o" if len(pts) < 40 else None, ms=3)
        ax.set_xlabel(x)
        ax.set_title(key)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    png = Path(png)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png
