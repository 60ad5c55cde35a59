"""The conditional (chatbot) stages behind ``recipes/pretrain.py``, ``recipes/adversarial.py`` and
``recipes/evaluate.py``: each recipe hands a config with ``conditional.train`` set to the function here.

* :func:`pretrain`: MLE on (context, response) pairs, then pair-discriminator pretraining on real pairs vs
  generated and mismatched negatives; writes ``out_dir/pretrain.pt``.
* :func:`adversarial`: :class:`~seqgan.conditional.trainer.ConditionalTrainer` epochs from the MLE checkpoint
  (resumable); writes ``out_dir/adversarial.pt``.
* :func:`evaluate`: the response metrics of :mod:`seqgan.conditional.metrics` on the test pairs, with example
  exchanges.

Checkpoints have the unconditional layout (config, tokenizer, generator and discriminator specs and weights,
optimizers, RNG, step; ``torch.load(weights_only=True)``); the generator spec's kind is ``seq2seq`` or
``seq2seq_transformer`` and the discriminator's ``pair_cnn``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from seqgan.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, set_rng_state
from seqgan.conditional.discriminator import PairDiscriminator
from seqgan.conditional.metrics import evaluator_scores, response_metrics, train_evaluator
from seqgan.conditional.models import (
    BoundGenerator,
    ConditionalGenerator,
    build_conditional_generator,
    conditional_generator_from_spec,
)
from seqgan.conditional.pairs import EncodedPairs, encode_pairs, load_pairs
from seqgan.conditional.trainer import ConditionalTrainer, pair_discriminator_round, sample_responses
from seqgan.config import Config, from_dict, save_config
from seqgan.data.datasets import DataError, batches
from seqgan.data.tokenizers import Tokenizer, build_tokenizer, tokenizer_from_state
from seqgan.losses import sequence_nll
from seqgan.metrics.suite import format_table
from seqgan.training import make_checkpoint, mle_step
from seqgan.utils import MetricsLogger, resolve_device, seed_everything

__all__ = [
    "PairData",
    "prepare_pairs",
    "pair_nll",
    "ConditionalRun",
    "load_conditional_run",
    "is_conditional_checkpoint",
    "pretrain",
    "adversarial",
    "evaluate",
    "reply",
]


@dataclass
class PairData:
    tokenizer: Tokenizer
    train: EncodedPairs
    test: EncodedPairs | None


def prepare_pairs(cfg: Config, tokenizer: Tokenizer | None = None) -> PairData:
    """Loads ``conditional.train`` / ``conditional.test``, trains the tokenizer on both sides of the training
    pairs (unless one is given) and encodes them."""
    c = cfg.conditional
    if not c.train:
        raise DataError("conditional.train is not set: no (context, response) pairs to load")
    train_raw = load_pairs(c.train).head(c.max_train_pairs)
    test_raw = load_pairs(c.test).head(c.max_test_pairs) if c.test else None
    if tokenizer is None:
        tokenizer = build_tokenizer(
            cfg.tokenizer, train_raw.contexts + train_raw.responses, cfg.data.lowercase
        )

    def enc(raw):
        return encode_pairs(raw, tokenizer, cfg.data.max_len, c.context_max_len, cfg.data.overlong)

    return PairData(tokenizer, enc(train_raw), enc(test_raw) if test_raw is not None else None)


@torch.no_grad()
def pair_nll(
    model: ConditionalGenerator, contexts: torch.Tensor, responses: torch.Tensor, batch_size: int = 256
) -> float:
    """Mean per-token NLL (nats) of ``responses`` given ``contexts`` (EOS included, padding excluded), eval mode."""
    was = model.training
    model.eval()
    total, count = 0.0, 0
    bound = BoundGenerator(model, contexts[:1])
    try:
        for s in range(0, contexts.shape[0], batch_size):
            ctx = contexts[s : s + batch_size].to(model.device)
            nll, n = sequence_nll(bound.rebind(ctx), responses[s : s + batch_size].to(model.device))
            total, count = total + float(nll), count + n
    finally:
        model.train(was)
    return total / max(count, 1)


@dataclass
class ConditionalRun:
    cfg: Config
    tokenizer: Tokenizer
    generator: ConditionalGenerator
    discriminator: PairDiscriminator | None
    payload: dict


def is_conditional_checkpoint(path: str | Path) -> bool:
    """Whether a checkpoint holds a conditional generator."""
    spec = load_checkpoint(path)["generator"]["spec"]
    return str(spec.get("kind", "")).startswith("seq2seq")


def load_conditional_run(path: str | Path, device: torch.device | str = "cpu") -> ConditionalRun:
    ckpt = load_checkpoint(path)
    cfg = from_dict(Config, ckpt["config"])
    tok = tokenizer_from_state(ckpt["tokenizer"])
    try:
        model = conditional_generator_from_spec(ckpt["generator"]["spec"])
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from e
    model.load_state_dict(ckpt["generator"]["state_dict"])
    model.to(device)
    disc = None
    if ckpt.get("discriminator"):
        disc = PairDiscriminator.from_spec(ckpt["discriminator"]["spec"])
        disc.load_state_dict(ckpt["discriminator"]["state_dict"])
        disc.to(device)
    return ConditionalRun(cfg, tok, model, disc, ckpt)


def _setup(cfg: Config, out: Path):
    out.mkdir(parents=True, exist_ok=True)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = resolve_device(cfg.device)
    data_rng = seed_everything(cfg.seed)
    sample_rng = torch.Generator(device=device)
    sample_rng.manual_seed(cfg.seed + 1)
    return device, data_rng, sample_rng


def reply(
    model: ConditionalGenerator,
    tokenizer: Tokenizer,
    contexts: list[str],
    max_len: int,
    context_max_len: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    rng: torch.Generator | None = None,
) -> list[str]:
    """Detokenized responses to raw context strings (a context that encodes to nothing reads as just EOS)."""
    rows = []
    for text in contexts:
        ids = tokenizer.encode(text)[-context_max_len:]
        if len(ids) < context_max_len:
            ids = ids + [tokenizer.eos_id]
        rows.append(ids + [tokenizer.pad_id] * (context_max_len - len(ids)))
    ctx = torch.tensor(rows, dtype=torch.long, device=model.device)
    out = sample_responses(model, ctx, max_len, temperature, top_k, top_p, rng)
    return [tokenizer.decode(r) for r in out.tokens.tolist()]


def _examples(model, data: PairData, cfg: Config, num: int, rng, temperature=1.0, top_k=0, top_p=1.0):
    pairs = (data.test or data.train).kept_raw
    ctx = pairs.contexts[:num]
    got = reply(
        model,
        data.tokenizer,
        ctx,
        cfg.data.max_len,
        cfg.conditional.context_max_len,
        temperature,
        top_k,
        top_p,
        rng,
    )
    return [
        {"context": c, "reference": r, "reply": g}
        for c, r, g in zip(ctx, pairs.responses[:num], got, strict=False)
    ]


# ---------------------------------------------------------------------------------------------- pretrain
def pretrain(cfg: Config) -> Path:
    """MLE then pair-discriminator pretraining; returns the checkpoint path."""
    out = Path(cfg.out_dir)
    device, data_rng, sample_rng = _setup(cfg, out)
    save_config(cfg, out / "config.yaml")
    start = time.time()
    data = prepare_pairs(cfg)
    tok, train = data.tokenizer, data.train
    print(
        f"tokenizer: {tok.kind}, {tok.vocab_size} tokens; responses <= {cfg.data.max_len}, contexts <= "
        f"{cfg.conditional.context_max_len} tokens"
    )
    print("  " + train.summary("train"))
    if data.test is not None:
        print("  " + data.test.summary("test"))
    ctx, resp = train.contexts.to(device), train.responses.to(device)
    model = build_conditional_generator(cfg, tok, cfg.data.max_len, cfg.conditional.context_max_len).to(
        device
    )
    disc = PairDiscriminator.from_config(cfg, tok).to(device)
    print(
        f"generator: {cfg.generator.kind}, {sum(p.numel() for p in model.parameters()):,} parameters; "
        f"discriminator {sum(p.numel() for p in disc.parameters()):,}; device {device}"
    )
    pc = cfg.pretrain
    g_opt = torch.optim.Adam(model.parameters(), lr=pc.lr)
    logger = MetricsLogger(out)
    bound = BoundGenerator(model, ctx[:1])
    step = 0
    for epoch in range(1, pc.epochs + 1):
        total, count = 0.0, 0
        bar = tqdm(
            batches(len(train), pc.batch_size, True, data_rng),
            desc=f"MLE {epoch}/{pc.epochs}",
            total=(len(train) + pc.batch_size - 1) // pc.batch_size,
            leave=False,
            disable=None,
        )
        for idx in bar:
            idx = idx.to(device)
            loss = mle_step(bound.rebind(ctx[idx]), g_opt, resp[idx], pc.grad_clip)
            total, count, step = total + loss, count + 1, step + 1
            bar.set_postfix(nll=f"{loss:.3f}")
        metrics = {"epoch": epoch, "generator/train_nll": total / max(count, 1)}
        if data.test is not None:
            metrics["eval/nll_test"] = pair_nll(
                model, data.test.contexts, data.test.responses, pc.eval_batch_size
            )
        logger.log(step, metrics)
        print(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "epoch"))
        sc = cfg.sample
        for ex in _examples(
            model, data, cfg, pc.num_print_samples, sample_rng, sc.temperature, sc.top_k, sc.top_p
        ):
            print(f"    {ex['context']!r} -> {ex['reply']!r}")

    d_opt = torch.optim.Adam(disc.parameters(), lr=pc.d_lr)
    for rnd in range(1, pc.d_rounds + 1):
        t0 = time.time()
        metrics = pair_discriminator_round(
            disc, d_opt, model, ctx, resp, pc.d_num_negatives, pc.d_epochs, pc.d_batch_size,
            cfg.conditional.mismatch_fraction, cfg.data.max_len, data_rng, sample_rng,
        )  # fmt: skip
        step += 1
        logger.log(step, {"d_round": rnd, **metrics})
        print(
            f"discriminator round {rnd}/{pc.d_rounds} ({time.time() - t0:.1f}s): "
            + ", ".join(f"{k.split('/')[-1]} {v:.3f}" for k, v in metrics.items())
        )

    ckpt = make_checkpoint(
        cfg, tok, model, disc, {"generator": g_opt, "discriminator": d_opt}, step, "pretrain",
        {"wall_s": time.time() - start},
    )  # fmt: skip
    path = save_checkpoint(ckpt, out / "pretrain.pt")
    logger.close()
    print(f"saved {path} ({time.time() - start:.1f}s)")
    return path


# ---------------------------------------------------------------------------------------------- adversarial
def _eval_row(model, data: PairData, cfg: Config, num: int, seed: int) -> dict[str, float]:
    """Response metrics (no evaluator) on the first ``num`` test pairs, sampled with the config's settings."""
    test = data.test
    if test is None:
        return {}
    n = min(num, len(test)) if num else len(test)
    rng = torch.Generator(device=model.device)
    rng.manual_seed(seed)
    sc = cfg.sample
    gen = sample_responses(
        model, test.contexts[:n].to(model.device), cfg.data.max_len, sc.temperature, sc.top_k, sc.top_p, rng
    )
    tok = data.tokenizer
    hyps = [tok.decode_tokens(r) for r in gen.tokens.tolist()]
    refs = [tok.decode_tokens(r) for r in test.responses[:n].tolist()]
    row = response_metrics(hyps, refs)
    row["nll_test"] = pair_nll(model, test.contexts, test.responses)
    return row


def adversarial(cfg: Config, resume: bool = False) -> Path:
    """Adversarial epochs of :class:`ConditionalTrainer` from the MLE checkpoint; returns the checkpoint path."""
    out = Path(cfg.out_dir)
    device, data_rng, sample_rng = _setup(cfg, out)
    a = cfg.adversarial
    pre_path = Path(a.pretrain_checkpoint or out / "pretrain.pt")
    run = load_conditional_run(pre_path, device)
    if run.discriminator is None:
        raise CheckpointError(f"{pre_path} has no discriminator; run recipes/pretrain.py first")
    save_config(cfg, out / "adversarial_config.yaml")
    data = prepare_pairs(cfg, run.tokenizer)
    model, disc = run.generator, run.discriminator
    trainer = ConditionalTrainer.from_config(
        cfg,
        model,
        disc,
        data.train.contexts.to(device),
        data.train.responses.to(device),
        sample_rng,
        data_rng,
    )
    ckpt_path = out / "adversarial.pt"
    start_epoch = 0
    if resume:
        state = load_checkpoint(ckpt_path)
        trainer.load_state_dict(state["trainer"])
        start_epoch = state["epoch"]
        set_rng_state(state["rng"])
        sample_rng.set_state(state["sample_rng"])
        print(f"resumed from {ckpt_path} at epoch {start_epoch}")
    logger = MetricsLogger(out, append=resume, name="adversarial_metrics.jsonl")
    c = cfg.conditional

    def save(epoch: int) -> None:
        payload = make_checkpoint(
            cfg, run.tokenizer, model, disc, {}, trainer.g_steps, "adversarial",
            {"epoch": epoch, "trainer": trainer.state_dict(), "sample_rng": sample_rng.get_state()},
        )  # fmt: skip
        save_checkpoint(payload, ckpt_path)

    start = time.time()
    if start_epoch == 0:
        metrics = {f"eval/{k}": v for k, v in _eval_row(model, data, cfg, c.eval_num_pairs, cfg.seed).items()}
        logger.log(0, {"epoch": 0, **metrics})
        print("before adversarial training: " + _fmt(metrics))
    for epoch in tqdm(range(start_epoch + 1, a.epochs + 1), desc="adversarial", disable=None):
        t0 = time.time()
        metrics = {"epoch": epoch, **trainer.train_epoch()}
        metrics["time/epoch_s"] = time.time() - t0
        if epoch % a.eval_every == 0 or epoch == a.epochs:
            metrics.update(
                {f"eval/{k}": v for k, v in _eval_row(model, data, cfg, c.eval_num_pairs, cfg.seed).items()}
            )
        logger.log(epoch, metrics)
        nan = float("nan")
        line = (
            f"epoch {epoch} ({metrics['time/epoch_s']:.1f}s): reward {metrics.get('rollout/reward_mean', nan):.3f}, "
            f"d_acc_fake {metrics.get('discriminator/acc_fake', nan):.3f}, "
            f"d_acc_real {metrics.get('discriminator/acc_real', nan):.3f}, "
            f"tf_nll {metrics.get('generator/teacher_forcing_nll', nan):.3f}"
        )
        tqdm.write(line + (" | " + _fmt(metrics) if any(k.startswith("eval/") for k in metrics) else ""))
        if epoch % a.checkpoint_every == 0 or epoch == a.epochs:
            save(epoch)
    if start_epoch >= a.epochs:
        save(a.epochs)
    logger.close()
    print(f"saved {ckpt_path} ({time.time() - start:.1f}s)")
    return ckpt_path


def _fmt(metrics: dict) -> str:
    return ", ".join(f"{k.split('/')[-1]} {v:.4f}" for k, v in metrics.items() if k.startswith("eval/"))


# ---------------------------------------------------------------------------------------------- evaluate
def evaluate(
    checkpoint: str | Path,
    num_pairs: int = 0,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    evaluator: bool = True,
    num_examples: int = 5,
    device: str = "cpu",
) -> dict:
    """Response metrics of a conditional checkpoint on its config's test pairs (all of them when ``num_pairs``
    is 0), the human responses' own row, and example exchanges. Returns a JSON-ready dict."""
    dev = resolve_device(device)
    run = load_conditional_run(checkpoint, dev)
    cfg, tok, model = run.cfg, run.tokenizer, run.generator
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    data = prepare_pairs(cfg, tok)
    if data.test is None:
        raise DataError("the checkpoint's config has no test pairs (conditional.test)")
    test, train = data.test, data.train
    n = min(num_pairs, len(test)) if num_pairs else len(test)
    t0 = time.time()
    rng = torch.Generator(device=dev)
    rng.manual_seed(seed)
    gen = sample_responses(
        model, test.contexts[:n].to(dev), cfg.data.max_len, temperature, top_k, top_p, rng
    ).tokens
    hyps = [tok.decode_tokens(r) for r in gen.tolist()]
    refs = [tok.decode_tokens(r) for r in test.responses[:n].tolist()]
    row = response_metrics(hyps, refs)
    row["nll_test"] = pair_nll(model, test.contexts[:n], test.responses[:n])
    # the human row: the reference responses' own diversity / generic share / length (BLEU against themselves is 1)
    human = response_metrics(refs, refs)
    human = {k: v for k, v in human.items() if not k.startswith("bleu")}
    if evaluator:
        c = cfg.conditional
        m = min(c.evaluator_num_pairs, len(train))
        g = torch.Generator()
        g.manual_seed(seed + 7)
        idx = torch.randperm(len(train), generator=g)[:m]
        ev_ctx, ev_human = train.contexts[idx].to(dev), train.responses[idx].to(dev)
        ev_gen = sample_responses(model, ev_ctx, cfg.data.max_len, temperature, top_k, top_p, rng).tokens
        torch.manual_seed(seed + 11)
        ev = PairDiscriminator.from_config(cfg, tok).to(dev)
        train_evaluator(
            ev, ev_ctx, ev_human, ev_gen, c.evaluator_epochs, cfg.pretrain.d_batch_size, c.evaluator_lr, g
        )
        row.update(evaluator_scores(ev, test.contexts[:n].to(dev), test.responses[:n].to(dev), gen.to(dev)))
    examples = [
        {
            "context": test.kept_raw.contexts[i],
            "reference": test.kept_raw.responses[i],
            "reply": tok.decode(gen[i].tolist()),
        }
        for i in range(min(num_examples, n))
    ]
    stage = run.payload.get("stage", "model")
    name = f"{cfg.generator.kind} ({stage})"
    print(format_table({name: row, "human responses": human}))
    for ex in examples:
        print(f"  > {ex['context']}\n    reference: {ex['reference']}\n    reply:     {ex['reply']}")
    print(
        f"({n} test pairs, temperature {temperature}, top-k {top_k}, top-p {top_p}; {time.time() - t0:.1f}s)"
    )
    return {
        **row,
        "human": human,
        "examples": examples,
        "protocol": {
            "checkpoint": str(checkpoint),
            "stage": stage,
            "test_pairs": n,
            "bleu": "mean over pairs of sentence BLEU-n against the pair's one reference (nltk method1 smoothing)",
            "tokens": "the run tokenizer's tokens",
            "generic_share_top_k": 10,
            "sampling": {"temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed},
            "evaluator": None
            if not evaluator
            else {
                "train_pairs": min(cfg.conditional.evaluator_num_pairs, len(train)),
                "epochs": cfg.conditional.evaluator_epochs,
                "lr": cfg.conditional.evaluator_lr,
            },
        },
    }


def write_json(result: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(result, indent=2) + "\n")
