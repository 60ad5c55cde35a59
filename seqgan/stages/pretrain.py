"""The pretraining stage: maximum likelihood, then discriminator pretraining on real vs generated examples.

One loop for either task (:mod:`seqgan.runs`): sentences, or (context, response) pairs with mismatched and
generated negatives. Writes to ``out_dir``: ``config.yaml`` (resolved), ``metrics.jsonl``,
``pretrain_curves.png`` and ``pretrain.pt`` (config, tokenizer, generator, discriminator, optimizers, every
process's RNG streams, progress), rewritten after every MLE epoch and every discriminator round so that
``resume`` continues from the last one and ends bit-identical to an uninterrupted run. Runs under ``torchrun``
(DDP: data sharded, per-update counts divided, one process writes).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from tqdm import tqdm

from seqgan import distributed
from seqgan.checkpoint import (
    check_compatible,
    drop_records_after,
    load_checkpoint,
    run_rng_state,
    save_numbered,
    set_run_rng_state,
)
from seqgan.config import Config, inactive_settings, save_config, to_dict
from seqgan.plotting import plot_curves
from seqgan.runs import check_stage_models, load_oracle, make_checkpoint, new_models, prepare_data, task_of
from seqgan.runtime import autocast, compile_models, resolve_device
from seqgan.sampling import sample
from seqgan.stages.rundir import check_run_dir, claim_run_dir
from seqgan.trainers.base import NonFiniteGuard
from seqgan.utils import adam, seed_everything

__all__ = ["pretrain"]


def _shard(examples):
    """This rank's share of a split (tensors, pairs or labelled sentences: anything indexed by rows)."""
    if isinstance(examples, torch.Tensor):
        return distributed.shard(examples)
    if distributed.world_size() == 1:
        return examples
    return examples[distributed.shard(torch.arange(len(examples)))]


def check_single_process(cfg: Config) -> None:
    """The category task's trainers and LeakGAN's generator (two objectives per MLE step, each a forward of its
    own) run in one process: refuse ``torchrun`` with several."""
    if distributed.world_size() > 1 and (cfg.task == "category" or cfg.generator.kind == "leakgan"):
        from seqgan.config import ConfigError

        what = "the category task (category.train)" if cfg.task == "category" else "generator.kind=leakgan"
        raise ConfigError(
            f"{what} trains in one process; run it without torchrun (got {distributed.world_size()} processes)"
        )


def pretrain(cfg: Config, resume: bool = False, overwrite: bool = False) -> Path:
    """MLE then discriminator pretraining for ``cfg``; returns the path of ``out_dir/pretrain.pt``.

    Args:
        cfg: the run's config.
        resume: continue from ``out_dir/pretrain.pt`` (weights, optimizers, progress, every random stream).
        overwrite: start again in an ``out_dir`` that holds a pretraining run (its files are removed once the
            inputs are checked).
    Raises:
        RunDirError: ``out_dir`` holds a pretraining run and neither ``resume`` nor ``overwrite`` is given, or
            it cannot be written. ConfigError, DataError, CheckpointError: bad input (nothing written).
        NonFiniteLossError: a NaN/inf loss under ``nan_policy=stop`` (the last checkpoint is left as it was).
    """
    out = Path(cfg.out_dir)
    ckpt_path = out / "pretrain.pt"
    check_run_dir(out, "pretrain", resume, overwrite)
    check_stage_models(cfg)
    task = task_of(cfg)
    device = distributed.init(resolve_device(cfg.device))  # joins the process group under torchrun
    check_single_process(cfg)
    rcfg = distributed.per_rank_config(cfg)  # batch sizes and sample counts of this rank
    data_rng = seed_everything(distributed.rank_seed(cfg.seed))
    sample_rng = torch.Generator(device=device)
    sample_rng.manual_seed(distributed.rank_seed(cfg.seed) + 1)
    start = time.time()
    for key in inactive_settings(cfg, "pretrain"):
        print(f"note: {key} has no effect in this run")

    # ---- data and models
    data = prepare_data(cfg)
    tok = data.tokenizer
    print(f"tokenizer: {tok.kind}, {tok.vocab_size} tokens; max_len {cfg.data.max_len}")
    for line in data.reports.values():
        print("  " + line)
    train = _shard(data.splits["train"])  # this rank's share
    heldout = [s for s in ("valid", "test") if s in data.splits]
    generator, discriminator = new_models(cfg, tok, device, data.classes)
    n_params = sum(p.numel() for p in generator.parameters())
    n_disc = sum(p.numel() for p in discriminator.parameters())
    print(
        f"generator: {cfg.generator.kind}, {n_params:,} parameters; discriminator {n_disc:,}; device {device}"
    )
    g_opt = adam(generator.parameters(), lr=cfg.pretrain.lr)
    d_opt = adam(discriminator.parameters(), lr=cfg.pretrain.d_lr)
    pc = cfg.pretrain
    oracle = load_oracle(cfg.data)[0] if cfg.data.synthetic == "oracle" else None
    guard = NonFiniteGuard(cfg.nan_policy, cfg.nan_max_consecutive)

    # ---- resume: weights, optimizers, progress, and every random stream of this rank
    step, done_epochs, done_rounds = 0, 0, 0
    if resume:
        state = load_checkpoint(ckpt_path)
        check_compatible(ckpt_path, state["config"], to_dict(cfg), state["tokenizer"], tok.state_dict())
        generator.load_state_dict(state["generator"]["state_dict"])
        discriminator.load_state_dict(state["discriminator"]["state_dict"])
        g_opt.load_state_dict(state["optimizers"]["generator"])
        if "discriminator" in state["optimizers"]:
            d_opt.load_state_dict(state["optimizers"]["discriminator"])
        progress = state.get("progress", {"epoch": pc.epochs, "d_round": pc.d_rounds})
        step, done_epochs, done_rounds = state["step"], progress["epoch"], progress["d_round"]
        if "nan_guard" in state:
            guard.load_state_dict(state["nan_guard"])
        set_run_rng_state(state, distributed.rank(), distributed.world_size(), data_rng, sample_rng)
        print(f"resumed from {ckpt_path} after MLE epoch {done_epochs} and discriminator round {done_rounds}")
    if distributed.is_main():  # after the data and checkpoint checks: bad input leaves out_dir untouched
        claim_run_dir(out, "pretrain", resume, overwrite)
        save_config(cfg, out / "config.yaml")
    gen_model, disc_model = generator, discriminator
    compile_models(cfg.compile, generator, discriminator)
    generator, discriminator = distributed.wrap(generator, device), distributed.wrap(discriminator, device)
    logger = distributed.metrics_logger(
        out,
        report_to=cfg.report_to,
        stage="pretrain",
        append=resume,
        first_step=step + 1,
        config=to_dict(cfg),
    )
    if resume and distributed.is_main():
        drop_records_after(logger.path, "step", step)

    def save(epoch: int, rnd: int) -> None:
        """pretrain.pt after MLE epoch ``epoch`` and discriminator round ``rnd`` (rank 0 writes it)."""
        rank_rng = distributed.gather_objects(run_rng_state(data_rng, sample_rng))
        distributed.check_in_sync(gen_model, disc_model, when=f"after step {step}")
        if not distributed.is_main():
            return
        done = epoch == pc.epochs and rnd == pc.d_rounds
        ckpt = make_checkpoint(
            cfg, tok, gen_model, disc_model, {"generator": g_opt, "discriminator": d_opt}, step, "pretrain",
            {"wall_s": time.time() - start, "progress": {"epoch": epoch, "d_round": rnd, "done": done},
             "rank_rng": rank_rng, "nan_guard": guard.state_dict()},
        )  # fmt: skip
        save_numbered(ckpt, ckpt_path, step, cfg.checkpoint_keep)
        guard.note = f"the last checkpoint, {ckpt_path} (MLE epoch {epoch}, round {rnd}), is left as it was"

    # ---- MLE pretraining, and discriminator pretraining on real vs freshly generated (and, for pairs,
    # mismatched) examples; the discriminator first when the generator reads its features (LeakGAN), so that the
    # generator learns to read the features of a discriminator that already tells real from generated
    d_first = bool(getattr(gen_model, "needs_features", False))

    def mle_epochs() -> None:
        nonlocal step
        per_rank_batch = rcfg.pretrain.batch_size
        for epoch in range(done_epochs + 1, pc.epochs + 1):
            total, count = 0.0, 0
            bar = tqdm(
                task.batches(train, per_rank_batch, data_rng, cfg),
                desc=f"MLE {epoch}/{pc.epochs}",
                total=(len(train) + per_rank_batch - 1) // per_rank_batch,
                leave=False,
                disable=None,
            )
            for idx in bar:
                with autocast(cfg.precision, device):
                    loss = task.mle_step(generator, g_opt, train[idx].to(device), pc.grad_clip, guard)
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
                    metrics[f"eval/nll_{name}"] = task.heldout_nll(
                        gen_model, data.splits[name], pc.eval_batch_size
                    )
                if oracle is not None:  # NLL_oracle of fresh samples, the synthetic benchmark's metric
                    fresh = sample(
                        gen_model, pc.oracle_eval_samples, cfg.data.max_len, rng=sample_rng, batch_size=1024
                    )
                    metrics["eval/nll_oracle"] = oracle.nll(fresh.tokens.cpu())
            logger.log(step, metrics)
            print(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "epoch"))
            if pc.num_print_samples and distributed.is_main():
                for text in task.show(gen_model, data, cfg, pc.num_print_samples, sample_rng):
                    print("   ", text)
            save(epoch, pc.d_rounds if d_first else 0)

    def discriminator_rounds() -> None:
        nonlocal step
        for rnd in range(done_rounds + 1, pc.d_rounds + 1):
            t0 = time.time()
            with autocast(cfg.precision, device):
                metrics = task.discriminator_round(
                    discriminator, d_opt, gen_model, train, rcfg.pretrain.d_num_negatives, pc.d_epochs,
                    rcfg.pretrain.d_batch_size, cfg, data_rng, sample_rng, guard,
                )  # fmt: skip
            metrics = distributed.mean_metrics(metrics)
            metrics["d_round"] = rnd
            if distributed.is_main():
                metrics.update(task.discriminator_heldout(disc_model, gen_model, data, cfg, sample_rng))
            step += 1
            logger.log(step, metrics)
            print(
                f"discriminator round {rnd}/{pc.d_rounds} ({time.time() - t0:.1f}s): "
                + ", ".join(f"{k.split('/')[-1]} {v:.3f}" for k, v in metrics.items() if k != "d_round")
            )
            save(0 if d_first else pc.epochs, rnd)

    for phase in (discriminator_rounds, mle_epochs) if d_first else (mle_epochs, discriminator_rounds):
        phase()

    # ---- final checkpoint (already written by the last epoch or round) and curves
    if pc.epochs == done_epochs and pc.d_rounds == done_rounds and not resume:
        save(pc.epochs, pc.d_rounds)
    main_rank = distributed.is_main()
    distributed.cleanup()
    if not main_rank:
        return ckpt_path
    plot_curves(
        out / "metrics.jsonl",
        ["generator/train_nll", "eval/nll_valid", "eval/nll_test", "eval/nll_oracle"],
        out / "pretrain_curves.png",
        x="epoch",
        title="MLE pretraining",
    )
    logger.close()
    print(f"saved {ckpt_path} ({time.time() - start:.1f}s)")
    return ckpt_path
