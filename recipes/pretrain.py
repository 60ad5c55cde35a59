#!/usr/bin/env python
"""Maximum-likelihood pretraining of the generator, then discriminator pretraining on real vs generated text.

    python recipes/pretrain.py --config recipes/configs/coco_lstm.yaml [key=value ...] [--resume]
    torchrun --nproc_per_node 2 recipes/pretrain.py --config ...        # DDP, one process per device

Writes to ``out_dir``: config.yaml (resolved), metrics.jsonl, pretrain_curves.png and pretrain.pt (config,
tokenizer, generator, discriminator, optimizers, RNG states, progress), rewritten after every MLE epoch and
every discriminator round so that ``--resume`` continues from the last one.
"""

from __future__ import annotations

import seqgan  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads)

# isort: split
import argparse
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from seqgan import distributed
from seqgan.checkpoint import (
    CheckpointError,
    check_compatible,
    drop_records_after,
    load_checkpoint,
    run_rng_state,
    save_numbered,
    set_run_rng_state,
)
from seqgan.config import Config, ConfigError, describe, load_config, save_config, to_dict
from seqgan.data.datasets import DataError, batches
from seqgan.metrics.nll import nll_test
from seqgan.plotting import plot_curves
from seqgan.sampling import sample
from seqgan.training import (
    NonFiniteGuard,
    autocast,
    compile_models,
    decode_samples,
    discriminator_accuracy,
    discriminator_epochs,
    load_oracle,
    make_checkpoint,
    mle_step,
    new_models,
    prepare_data,
)
from seqgan.utils import adam, resolve_device, seed_everything


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML config file (defaults are used for missing keys)")
    p.add_argument("--help-config", action="store_true", help="list every config key with its documentation")
    p.add_argument("--resume", action="store_true", help="continue from out_dir/pretrain.pt")
    p.add_argument(
        "overrides", nargs="*", help="dotted overrides, e.g. pretrain.epochs=5 generator.kind=transformer"
    )
    return p.parse_intermixed_args(argv)


def main(argv=None) -> Path:
    args = parse_args(argv)
    if args.help_config:
        print(describe(Config))
        sys.exit(0)
    cfg = load_config(args.config, args.overrides)
    if cfg.conditional.train:  # (context, response) pairs: the chatbot path of seqgan.conditional
        from seqgan.conditional import stages

        return stages.pretrain(cfg)
    out = Path(cfg.out_dir)
    ckpt_path = out / "pretrain.pt"
    if args.resume and not ckpt_path.is_file():
        raise CheckpointError(f"--resume: no checkpoint to continue from at {ckpt_path}")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = distributed.init(resolve_device(cfg.device))  # joins the process group under torchrun
    rcfg = distributed.per_rank_config(cfg)  # batch sizes and sample counts of this rank
    data_rng = seed_everything(distributed.rank_seed(cfg.seed))
    sample_rng = torch.Generator(device=device)
    sample_rng.manual_seed(distributed.rank_seed(cfg.seed) + 1)
    start = time.time()

    # ---- data and models
    data = prepare_data(cfg)
    tok = data.tokenizer
    print(f"tokenizer: {tok.kind}, {tok.vocab_size} tokens; max_len {cfg.data.max_len}")
    for name, rep in data.reports.items():
        print("  " + rep.summary(name))
    train = distributed.shard(data.splits["train"])  # this rank's share
    heldout = [s for s in ("valid", "test") if s in data.splits]
    generator, discriminator = new_models(cfg, tok, device)
    n_params = sum(p.numel() for p in generator.parameters())
    print(f"generator: {cfg.generator.kind}, {n_params:,} parameters; device {device}")
    g_opt = adam(generator.parameters(), lr=cfg.pretrain.lr)
    d_opt = adam(discriminator.parameters(), lr=cfg.pretrain.d_lr)
    pc, sc = cfg.pretrain, cfg.sample
    oracle = load_oracle(cfg.data)[0] if cfg.data.synthetic == "oracle" else None
    guard = NonFiniteGuard(cfg.nan_policy, cfg.nan_max_consecutive)

    # ---- resume: weights, optimizers, progress, and every random stream of this rank
    step, done_epochs, done_rounds = 0, 0, 0
    if args.resume:
        state = load_checkpoint(ckpt_path)
        check_compatible(ckpt_path, state["config"], to_dict(cfg), state["tokenizer"], tok.state_dict())
        generator.load_state_dict(state["generator"]["state_dict"])
        discriminator.load_state_dict(state["discriminator"]["state_dict"])
        g_opt.load_state_dict(state["optimizers"]["generator"])
        if "discriminator" in state["optimizers"]:
            d_opt.load_state_dict(state["optimizers"]["discriminator"])
        progress = state.get("progress", {"epoch": pc.epochs, "d_round": pc.d_rounds})
        step, done_epochs, done_rounds = state["step"], progress["epoch"], progress["d_round"]
        set_run_rng_state(state, distributed.rank(), distributed.world_size(), data_rng, sample_rng)
        print(f"resumed from {ckpt_path} after MLE epoch {done_epochs} and discriminator round {done_rounds}")
    if distributed.is_main():  # after the data and checkpoint checks: bad input leaves out_dir untouched
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    gen_model, disc_model = generator, discriminator
    compile_models(cfg.compile, generator, discriminator)
    generator, discriminator = distributed.wrap(generator, device), distributed.wrap(discriminator, device)
    logger = distributed.metrics_logger(out, append=args.resume)
    if args.resume and distributed.is_main():
        drop_records_after(logger.path, "step", step)

    def save(epoch: int, rnd: int) -> None:
        """pretrain.pt after MLE epoch ``epoch`` and discriminator round ``rnd`` (rank 0 writes it)."""
        rank_rng = distributed.gather_objects(run_rng_state(data_rng, sample_rng))
        distributed.check_in_sync(gen_model, disc_model, when=f"after step {step}")
        if not distributed.is_main():
            return
        ckpt = make_checkpoint(
            cfg,
            tok,
            gen_model,
            disc_model,
            {"generator": g_opt, "discriminator": d_opt},
            step,
            "pretrain",
            {
                "wall_s": time.time() - start,
                "progress": {
                    "epoch": epoch,
                    "d_round": rnd,
                    "done": epoch == pc.epochs and rnd == pc.d_rounds,
                },
                "rank_rng": rank_rng,
            },
        )
        save_numbered(ckpt, ckpt_path, step, cfg.checkpoint_keep)
        guard.note = f"the last checkpoint, {ckpt_path} (MLE epoch {epoch}, round {rnd}), is left as it was"

    # ---- MLE pretraining
    per_rank_batch = rcfg.pretrain.batch_size
    for epoch in range(done_epochs + 1, pc.epochs + 1):
        total, count = 0.0, 0
        bar = tqdm(
            batches(len(train), per_rank_batch, True, data_rng),
            desc=f"MLE {epoch}/{pc.epochs}",
            total=(len(train) + per_rank_batch - 1) // per_rank_batch,
            leave=False,
            disable=None,
        )
        for idx in bar:
            with autocast(cfg.precision, device):
                loss = mle_step(generator, g_opt, train[idx].to(device), pc.grad_clip, guard)
            step += 1
            if loss == loss:  # a skipped non-finite step returns NaN and is not averaged
                total, count = total + loss, count + 1
            bar.set_postfix(nll=f"{loss:.3f}")
        metrics = {
            "epoch": epoch,
            "generator/train_nll": total / max(count, 1),
            "nan/skipped_steps": guard.skipped,
        }
        metrics = distributed.mean_metrics(metrics)  # mean over ranks
        if distributed.is_main():  # held-out metrics: rank 0 alone
            for name in heldout:
                metrics[f"eval/nll_{name}"] = nll_test(gen_model, data.splits[name], pc.eval_batch_size)
            if oracle is not None:  # NLL_oracle of fresh samples, the synthetic benchmark's metric
                fresh = sample(
                    gen_model, pc.oracle_eval_samples, cfg.data.max_len, rng=sample_rng, batch_size=1024
                )
                metrics["eval/nll_oracle"] = oracle.nll(fresh.tokens.cpu())
        logger.log(step, metrics)
        print(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "epoch"))
        if pc.num_print_samples and distributed.is_main():
            samples = sample(
                gen_model,
                pc.num_print_samples,
                cfg.data.max_len,
                sc.temperature,
                sc.top_k,
                sc.top_p,
                rng=sample_rng,
            )
            for text in decode_samples(tok, samples.tokens):
                print("   ", text)
        save(epoch, 0)

    # ---- discriminator pretraining on real vs freshly generated sentences
    num_neg = rcfg.pretrain.d_num_negatives
    for rnd in range(done_rounds + 1, pc.d_rounds + 1):
        t0 = time.time()
        fake = sample(gen_model, num_neg, cfg.data.max_len, rng=sample_rng, batch_size=1024).tokens
        real = train[torch.randperm(len(train), generator=data_rng)[:num_neg]].to(device)
        with autocast(cfg.precision, device):
            metrics = discriminator_epochs(
                discriminator,
                d_opt,
                real,
                fake,
                pc.d_epochs,
                rcfg.pretrain.d_batch_size,
                data_rng,
                guard,
                by_length=cfg.discriminator.batch_by_length,
            )
        metrics = distributed.mean_metrics(metrics)
        metrics["d_round"] = rnd
        if "test" in data.splits and distributed.is_main():
            test = data.splits["test"][: pc.d_num_negatives].to(device)
            fresh = sample(gen_model, len(test), cfg.data.max_len, rng=sample_rng, batch_size=1024).tokens
            metrics.update(discriminator_accuracy(disc_model, test, fresh))
        step += 1
        logger.log(step, metrics)
        print(
            f"discriminator round {rnd}/{pc.d_rounds} ({time.time() - t0:.1f}s): "
            + ", ".join(f"{k.split('/')[-1]} {v:.3f}" for k, v in metrics.items() if k != "d_round")
        )
        save(pc.epochs, rnd)

    # ---- final checkpoint (already written by the last epoch or round) and curves
    if pc.epochs == 0 and pc.d_rounds == 0 and not args.resume:
        save(0, 0)
    path, main_rank = ckpt_path, distributed.is_main()
    distributed.cleanup()
    if not main_rank:
        return path
    plot_curves(
        out / "metrics.jsonl",
        ["generator/train_nll", "eval/nll_valid", "eval/nll_test", "eval/nll_oracle"],
        out / "pretrain_curves.png",
        x="epoch",
        title="MLE pretraining",
    )
    logger.close()
    print(f"saved {path} ({time.time() - start:.1f}s)")
    return path


if __name__ == "__main__":
    try:
        main()
    except (ConfigError, DataError, CheckpointError, FileNotFoundError, FloatingPointError) as e:
        sys.exit(f"error: {e}")
