"""Building blocks the recipes share: data preparation, MLE and discriminator updates, checkpoint assembly.

The recipes own the outer loops and I/O; the maths lives here and in :mod:`seqgan.losses`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from seqgan.checkpoint import CheckpointError, load_checkpoint, rng_state
from seqgan.config import Config, from_dict, to_dict
from seqgan.data.datasets import EncodeReport, encode_sentences, load_text_splits
from seqgan.data.tokenizers import IdTokenizer, Tokenizer, build_tokenizer, tokenizer_from_state
from seqgan.losses import discriminator_bce, sequence_nll
from seqgan.models import build_discriminator, build_generator, generator_from_spec
from seqgan.models.base import Generator
from seqgan.models.discriminator import CNNDiscriminator
from seqgan.sampling import sample


@dataclass
class PreparedData:
    """Tokenizer, encoded ``(N, max_len)`` splits, their encoding reports and the raw sentences."""

    tokenizer: Tokenizer
    splits: dict[str, torch.Tensor]
    reports: dict[str, EncodeReport]
    raw: dict[str, list[str]]


def load_oracle(data_cfg):
    """The synthetic oracle a config names: (oracle, "seqgan_paper" | "random")."""
    from seqgan.metrics.oracle import OracleLSTM

    if data_cfg.oracle_path:
        return OracleLSTM.from_npz(data_cfg.oracle_path, seq_len=data_cfg.max_len), "file"
    oracle, kind = OracleLSTM.load_or_random(None, data_cfg.oracle_seed)
    oracle.seq_len = data_cfg.max_len
    return oracle, kind


def _prepare_synthetic(cfg: Config) -> PreparedData:
    oracle, _ = load_oracle(cfg.data)
    rng = torch.Generator()
    rng.manual_seed(cfg.seed)
    splits = {
        "train": oracle.sample(cfg.data.num_train, generator=rng),
        "test": oracle.sample(cfg.data.num_test, generator=rng),
    }
    tok = IdTokenizer(oracle.vocab_size, oracle.start_token)
    reports = {k: EncodeReport(len(v), len(v), tokens=v.numel()) for k, v in splits.items()}
    raw = {k: [tok.decode(r) for r in v.tolist()] for k, v in splits.items()}
    return PreparedData(tok, splits, reports, raw)


def prepare_data(cfg: Config, tokenizer: Tokenizer | None = None) -> PreparedData:
    """Loads the splits, trains the tokenizer on train (unless one is given) and encodes every split.

    With ``data.synthetic: oracle`` the splits are sampled from the oracle instead (seeded by ``cfg.seed``).
    """
    if cfg.data.synthetic == "oracle":
        return _prepare_synthetic(cfg)
    raw = load_text_splits(cfg.data, cfg.seed)
    if tokenizer is None:
        tokenizer = build_tokenizer(cfg.tokenizer, raw["train"], cfg.data.lowercase)
    splits, reports = {}, {}
    for name, lines in raw.items():
        splits[name], reports[name] = encode_sentences(lines, tokenizer, cfg.data.max_len, cfg.data.overlong)
    return PreparedData(tokenizer, splits, reports, raw)


def mle_step(
    generator: Generator, optimizer: torch.optim.Optimizer, tokens: torch.Tensor, grad_clip: float = 0.0
) -> float:
    """One teacher-forced maximum-likelihood update on ``(B, T)`` target sequences; returns the loss."""
    generator.train()
    total, count = sequence_nll(generator, tokens)
    loss = total / max(count, 1)  # mean NLL per real token
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite MLE loss {loss.item()}; lower pretrain.lr or check the data")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(generator.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


def discriminator_step(
    discriminator: CNNDiscriminator,
    optimizer: torch.optim.Optimizer,
    real: torch.Tensor,
    fake: torch.Tensor,
) -> dict[str, float]:
    """One update on a batch of real and a batch of generated ``(B, T)`` sequences (BCE loss).

    Returns ``discriminator/loss``, ``discriminator/acc_real`` and ``discriminator/acc_fake``.
    """
    discriminator.train()
    logits_real, logits_fake = discriminator(real), discriminator(fake)
    loss = discriminator_bce(logits_real, logits_fake)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {
        "discriminator/loss": loss.item(),
        "discriminator/acc_real": float((logits_real > 0).float().mean()),
        "discriminator/acc_fake": float((logits_fake < 0).float().mean()),
    }


def discriminator_epochs(
    discriminator: CNNDiscriminator,
    optimizer: torch.optim.Optimizer,
    real: torch.Tensor,
    fake: torch.Tensor,
    epochs: int,
    batch_size: int,
    rng: torch.Generator,
) -> dict[str, float]:
    """``epochs`` passes over (real, fake) pairs of batches in a seeded order; returns the mean metrics."""
    n = min(real.shape[0], fake.shape[0])
    sums: dict[str, float] = {}
    count = 0
    for _ in range(epochs):
        real_order = torch.randperm(real.shape[0], generator=rng)[:n]
        fake_order = torch.randperm(fake.shape[0], generator=rng)[:n]
        for start in range(0, n, batch_size):
            r = real[real_order[start : start + batch_size]]
            f = fake[fake_order[start : start + batch_size]]
            for k, v in discriminator_step(discriminator, optimizer, r, f).items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
    return {k: v / max(count, 1) for k, v in sums.items()}


@torch.no_grad()
def discriminator_accuracy(
    discriminator: CNNDiscriminator, real: torch.Tensor, fake: torch.Tensor, batch_size: int = 512
) -> dict[str, float]:
    """Eval-mode accuracy on real and on generated sequences."""
    was_training = discriminator.training
    discriminator.eval()
    try:
        acc_real = torch.cat(
            [discriminator(real[i : i + batch_size]) > 0 for i in range(0, len(real), batch_size)]
        )
        acc_fake = torch.cat(
            [discriminator(fake[i : i + batch_size]) < 0 for i in range(0, len(fake), batch_size)]
        )
    finally:
        discriminator.train(was_training)
    return {
        "discriminator/eval_acc_real": float(acc_real.float().mean()),
        "discriminator/eval_acc_fake": float(acc_fake.float().mean()),
    }


def make_checkpoint(
    cfg: Config,
    tokenizer: Tokenizer,
    generator: Generator,
    discriminator: CNNDiscriminator | None,
    optimizers: dict[str, torch.optim.Optimizer],
    step: int,
    stage: str,
    extra: dict | None = None,
) -> dict:
    """The checkpoint payload: everything needed to resume or sample, without pickled objects."""
    payload = {
        "stage": stage,
        "step": step,
        "config": to_dict(cfg),
        "tokenizer": tokenizer.state_dict(),
        "generator": {"spec": generator.spec(), "state_dict": generator.state_dict()},
        "discriminator": None
        if discriminator is None
        else {"spec": discriminator.spec(), "state_dict": discriminator.state_dict()},
        "optimizers": {k: opt.state_dict() for k, opt in optimizers.items()},
        "rng": rng_state(),
    }
    if extra:
        payload.update(extra)
    return payload


@dataclass
class LoadedRun:
    """What a checkpoint rebuilds: config, tokenizer, models (on ``device``) and the raw payload."""

    cfg: Config
    tokenizer: Tokenizer
    generator: Generator
    discriminator: CNNDiscriminator | None
    payload: dict


def load_run(path, device: torch.device | str = "cpu") -> LoadedRun:
    """Rebuilds config, tokenizer, generator and discriminator from a checkpoint file."""
    ckpt = load_checkpoint(path)
    cfg = from_dict(Config, ckpt["config"])
    tokenizer = tokenizer_from_state(ckpt["tokenizer"])
    gen_spec = ckpt["generator"]["spec"]
    if gen_spec.get("vocab_size", tokenizer.vocab_size) < tokenizer.vocab_size:
        raise CheckpointError(
            f"{path}: generator vocabulary ({gen_spec['vocab_size']}) is smaller than the tokenizer's "
            f"({tokenizer.vocab_size})"
        )
    generator = generator_from_spec(gen_spec)
    generator.load_state_dict(ckpt["generator"]["state_dict"])
    generator.to(device)
    discriminator = None
    if ckpt.get("discriminator"):
        discriminator = CNNDiscriminator.from_spec(ckpt["discriminator"]["spec"])
        discriminator.load_state_dict(ckpt["discriminator"]["state_dict"])
        discriminator.to(device)
    return LoadedRun(cfg, tokenizer, generator, discriminator, ckpt)


def new_models(cfg: Config, tokenizer: Tokenizer, device: torch.device) -> tuple[Generator, CNNDiscriminator]:
    """Fresh generator and discriminator for ``cfg``, on ``device``."""
    generator = build_generator(cfg.generator, tokenizer, cfg.data.max_len).to(device)
    discriminator = build_discriminator(cfg.discriminator, tokenizer).to(device)
    return generator, discriminator


def decode_samples(tokenizer: Tokenizer, tokens: torch.Tensor) -> list[str]:
    """``(N, T)`` ids -> detokenized strings."""
    return [tokenizer.decode(row) for row in tokens.tolist()]


def sample_texts(
    generator: Generator,
    tokenizer: Tokenizer,
    num: int,
    max_len: int,
    rng: torch.Generator | None = None,
    **kw,
) -> list[str]:
    """Samples ``num`` sequences and detokenizes them."""
    return decode_samples(tokenizer, sample(generator, num, max_len, rng=rng, **kw).tokens)
