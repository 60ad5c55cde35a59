"""Quality-diversity sweeps over sampling temperature ("Language GANs Falling Short", Caccia et al. 2020,
arXiv 1811.02549): sample at several temperatures, score quality (BLEU against the test set) and diversity
(Self-BLEU), plus NLL_test of the test set under the temperature-scaled model. The MLE model's curve is the
baseline every GAN is read against: a GAN point below the MLE curve is no better than tuning temperature.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from seqgan.metrics.bleu import ReferenceBleu
from seqgan.metrics.nll import nll_test
from seqgan.metrics.suite import text_metrics
from seqgan.models.base import Generator
from seqgan.sampling import sample


def temperature_sweep(
    generator: Generator,
    to_tokens: Callable[[torch.Tensor], list[list[str]]],
    references: ReferenceBleu,
    test_tokens: torch.Tensor | None,
    temperatures: Sequence[float],
    num_samples: int,
    max_len: int,
    seed: int = 0,
) -> list[dict]:
    """One row of metrics per temperature.

    Args:
        generator: the model.
        to_tokens: ``(N, T)`` ids -> evaluation tokens (the same tokenization as the references).
        references: prepared test references.
        test_tokens: ``(N, T)`` encoded test split for NLL_test at each temperature (None to skip).
        temperatures: the sweep.
        num_samples: samples per temperature.
        max_len: maximum sample length.
        seed: sampling seed (the same for every temperature).
    Returns:
        ``[{"temperature": t, "bleu2": .., "self_bleu2": .., "nll_test": ..}, ...]``.
    """
    rows = []
    for t in temperatures:
        rng = torch.Generator(device=generator.device)
        rng.manual_seed(seed)
        tokens = sample(generator, num_samples, max_len, temperature=t, rng=rng, batch_size=1024).tokens
        row = {"temperature": float(t), **text_metrics(to_tokens(tokens.cpu()), references)}
        if test_tokens is not None:
            row["nll_test"] = nll_test(generator, test_tokens, temperature=t)
        rows.append(row)
    return rows


def plot_quality_diversity(
    curves: dict[str, list[dict]],
    png: str | Path,
    order: int = 4,
    points: dict[str, dict] | None = None,
) -> Path:
    """Left: BLEU-n (quality) against Self-BLEU-n (lower = more diverse), one curve per model with its
    temperatures written at the points, plus single points (real data, GAN checkpoints). Right: NLL_test
    against temperature.

    Args:
        curves: name -> sweep rows (from :func:`temperature_sweep`).
        png: output file.
        order: the BLEU order to plot.
        points: name -> one metrics row each (e.g. ``{"real data": {...}, "SeqGAN": {...}}``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.3))
    bk, sk = f"bleu{order}", f"self_bleu{order}"
    for name, rows in curves.items():
        xs, ys = [r[sk] for r in rows], [r[bk] for r in rows]
        (line,) = ax.plot(xs, ys, marker="o", label=name)
        for r in rows:
            ax.annotate(
                f"T={r['temperature']:g}",
                (r[sk], r[bk]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
                color=line.get_color(),
            )
        nll = [(r["temperature"], r["nll_test"]) for r in rows if r.get("nll_test") is not None]
        if nll:
            ax2.plot([a for a, _ in nll], [b for _, b in nll], marker="o", label=name)
    markers = iter("*sD^vP")
    for name, r in (points or {}).items():
        if r.get(sk) is not None and r.get(bk) is not None:
            ax.scatter([r[sk]], [r[bk]], marker=next(markers, "x"), s=90, label=name, zorder=3)
    ax.set_xlabel(f"Self-BLEU-{order} (lower = more diverse)")
    ax.set_ylabel(f"BLEU-{order} against the test set (higher = better quality)")
    ax.set_title("Quality vs diversity over sampling temperature")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax2.set_xlabel("temperature")
    ax2.set_ylabel("NLL_test (nats/token)")
    ax2.set_title("NLL_test of the temperature-scaled model")
    ax2.grid(alpha=0.3)
    if ax2.lines:
        ax2.legend(fontsize=8)
    fig.tight_layout()
    png = Path(png)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def save_sweep(rows: list[dict], path: str | Path, **meta) -> Path:
    path = Path(path)
    path.write_text(json.dumps({"rows": rows, **meta}, indent=2) + "\n")
    return path
