#!/usr/bin/env python
"""The SeqGAN paper's synthetic-oracle experiment (Table 1): NLL_oracle after MLE and after SeqGAN.

    python benchmarks/oracle.py [--config benchmarks/configs/oracle_seqgan.yaml] [--out-dir DIR] [--quick]
        [--oracle PATH] [--overwrite | --resume] [key=value ...]

Runs the same stages as the recipes (pretrain -> adversarial) on 10,000 sequences of length 20 sampled from the
oracle (``--oracle``: the paper's published weights, by default ../shared/data/seqgan_oracle/seqgan_oracle.npz
when that file exists, or a file made by recipes/prepare_oracle.py; without one a seeded random oracle), prints
NLL_oracle of the untrained generator (the paper's "random" row), after MLE and after adversarial training, with
the paper's Table 1 beside them (its scheduled-sampling and PG-BLEU rows are printed as the paper's only), and
writes the NLL_oracle curve over both stages as ``oracle_curve.png``. ``--quick`` is a one-minute smoke run
(tiny sizes, no quality claim). The last line is one JSON object.
"""

from __future__ import annotations

from seqgan.runtime import prefer_passive_waits

prefer_passive_waits()  # before torch loads: see seqgan.runtime

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAPER_ORACLE = ROOT.parent / "shared/data/seqgan_oracle/seqgan_oracle.npz"
PAPER = {"random": 10.310, "mle": 9.038, "schedule_sampling": 8.985, "pg_bleu": 8.946, "seqgan": 8.736}
QUICK = [
    "data.num_train=512",
    "data.num_test=256",
    "pretrain.epochs=2",
    "pretrain.d_rounds=1",
    "pretrain.d_num_negatives=256",
    "pretrain.oracle_eval_samples=256",
    "adversarial.epochs=2",
    "seqgan.d_num_negatives=256",
    "seqgan.num_rollouts=2",
    "seqgan.batch_size=16",
    "adversarial.eval_every=1",
    "adversarial.eval_num_samples=256",
    "discriminator.filter_sizes=[2,3]",
    "discriminator.num_filters=[16,16]",
    "discriminator.embed_dim=16",
]


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot(pre: list[dict], adv: list[dict], mle_epochs: int, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    xs = [r["epoch"] for r in pre if r.get("eval/nll_oracle") is not None]
    ax.plot(xs, [r["eval/nll_oracle"] for r in pre if r.get("eval/nll_oracle") is not None], label="MLE")
    pts = [
        (mle_epochs + r["epoch"], r["eval/nll_oracle"]) for r in adv if r.get("eval/nll_oracle") is not None
    ]
    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label="SeqGAN (adversarial)")
    ax.axhline(PAPER["mle"], ls="--", c="gray", lw=0.8)
    ax.axhline(PAPER["seqgan"], ls=":", c="gray", lw=0.8)
    ax.text(0, PAPER["mle"], " paper MLE 9.038", va="bottom", fontsize=7, color="gray")
    ax.text(0, PAPER["seqgan"], " paper SeqGAN 8.736", va="top", fontsize=7, color="gray")
    ax.axvline(mle_epochs, c="k", lw=0.5)
    ax.set_xlabel("epoch (MLE, then adversarial)")
    ax.set_ylabel("NLL_oracle (nats/token)")
    ax.set_title("SeqGAN synthetic benchmark")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def untrained_nll_oracle(cfg, oracle) -> float:
    """The paper's "random" row: NLL_oracle under ``oracle`` of ``pretrain.oracle_eval_samples`` samples of the
    config's generator as initialised (seed ``cfg.seed``, ``generator.init_std``), before any training."""
    import torch

    from seqgan.data.tokenizers import IdTokenizer
    from seqgan.models import build_generator
    from seqgan.sampling import sample

    tok = IdTokenizer(oracle.vocab_size, oracle.start_token)
    torch.manual_seed(cfg.seed)
    gen = build_generator(cfg, tok)
    rng = torch.Generator().manual_seed(cfg.seed)
    return oracle.nll(
        sample(gen, cfg.pretrain.oracle_eval_samples, cfg.data.max_len, rng=rng, batch_size=1024).tokens
    )


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "benchmarks/configs/oracle_seqgan.yaml"))
    p.add_argument("--out-dir", default="runs/oracle_seqgan")
    p.add_argument("--quick", action="store_true", help="tiny one-minute smoke run")
    p.add_argument(
        "--oracle",
        default=str(PAPER_ORACLE) if PAPER_ORACLE.is_file() else None,
        help="oracle weights (.npz); default: the paper's from ../shared when present, else a random oracle",
    )
    run = p.add_mutually_exclusive_group()
    run.add_argument("--resume", action="store_true", help="continue the stages that have a checkpoint")
    run.add_argument("--overwrite", action="store_true", help="start again in an out_dir that holds a run")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    oracle = [f"data.oracle_path={args.oracle}"] if args.oracle else []
    overrides = [*(QUICK if args.quick else []), *oracle, f"out_dir={args.out_dir}", *args.overrides]

    from seqgan import runtime
    from seqgan.config import load_config
    from seqgan.runs import load_oracle
    from seqgan.stages import adversarial, pretrain
    from seqgan.stages.pipeline import _mode

    cfg = load_config(args.config, overrides)
    runtime.configure(cfg)
    out = Path(cfg.out_dir)
    start = time.time()
    run_pre, resume_pre, over_pre = _mode(out, "pretrain", args.resume, args.overwrite)
    if run_pre:
        pretrain(cfg, resume=resume_pre, overwrite=over_pre)
    t_mle = time.time() - start
    _, resume_adv, over_adv = _mode(out, "adversarial", args.resume, args.overwrite)
    adversarial(cfg, resume=resume_adv, overwrite=over_adv)
    wall = time.time() - start

    oracle, kind = load_oracle(cfg.data)
    nll_random = untrained_nll_oracle(cfg, oracle)
    pre = _records(out / "metrics.jsonl")
    adv = _records(out / "adversarial_metrics.jsonl")
    evals = [r for r in adv if r.get("eval/nll_oracle") is not None]
    nll_mle, nll_adv = evals[0]["eval/nll_oracle"], evals[-1]["eval/nll_oracle"]
    plot(pre, adv, cfg.pretrain.epochs, out / "oracle_curve.png")

    print(f"oracle: {kind}; {cfg.data.num_train} training sequences of length {cfg.data.max_len}")
    print(f"{'':28s}{'ours':>8s}{'paper':>8s}")
    print(f"{'NLL_oracle untrained':28s}{nll_random:8.3f}{PAPER['random']:8.3f}")
    print(f"{'NLL_oracle after MLE':28s}{nll_mle:8.3f}{PAPER['mle']:8.3f}")
    print(f"{'NLL_oracle after SeqGAN':28s}{nll_adv:8.3f}{PAPER['seqgan']:8.3f}")
    print(f"{'improvement':28s}{nll_mle - nll_adv:8.3f}{PAPER['mle'] - PAPER['seqgan']:8.3f}")
    print(f"{'paper only: scheduled sampling':36s}{PAPER['schedule_sampling']:8.3f}")
    print(f"{'paper only: PG-BLEU':36s}{PAPER['pg_bleu']:8.3f}")
    print(
        f"wall time: MLE + discriminator pretraining {t_mle:.0f}s, adversarial {wall - t_mle:.0f}s, "
        f"total {wall:.0f}s; curve: {out / 'oracle_curve.png'}"
    )
    result = {
        "nll_oracle_random": nll_random,
        "nll_oracle_mle": nll_mle,
        "nll_oracle_adversarial": nll_adv,
        "improvement": nll_mle - nll_adv,
        "oracle": kind,
        "wall_s": wall,
        "mle_s": t_mle,
        "adversarial_s": wall - t_mle,
        "mle_epochs": cfg.pretrain.epochs,
        "adversarial_epochs": cfg.adversarial.epochs,
        "quick": args.quick,
        "paper": PAPER,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
