"""Building blocks the recipes share: data preparation, MLE and discriminator updates, checkpoint assembly.

The recipes own the outer loops and I/O; the maths lives here and in :mod:`seqgan.losses`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from seqgan.checkpoint import CheckpointError, load_checkpoint, rng_state
from seqgan.config import Config, from_dict, to_dict
from seqgan.data.datasets import DataError, EncodeReport, encode_sentences, load_text_splits
from seqgan.data.tokenizers import IdTokenizer, Tokenizer, build_tokenizer, tokenizer_from_state
from seqgan.losses import discriminator_bce, sequence_nll
from seqgan.models import build_discriminator, build_generator, discriminator_from_spec, generator_from_spec
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
        try:
            splits[name], reports[name] = encode_sentences(
                lines, tokenizer, cfg.data.max_len, cfg.data.overlong
            )
        except DataError as e:  # say which split and file
            source = getattr(cfg.data, name, None) if not cfg.data.hf_dataset else cfg.data.hf_dataset
            raise DataError(f"the {name} split" + (f" ({source})" if source else "") + f": {e}") from None
    return PreparedData(tokenizer, splits, reports, raw)


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The autocast context of ``precision`` (``"bf16"``: bfloat16 autocast on ``device``; ``"fp32"``: none).

    The context may span many optimizer steps (a whole adversarial epoch), so autocast's cache of lower-precision
    weight copies is off: with it, every forward inside the context would reuse the copies made before the
    first update, and training would follow stale weights.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, cache_enabled=False)
    raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")


def compile_models(enabled: bool, *modules: nn.Module) -> None:
    """``torch.compile`` each module's forward in place when ``enabled`` (config key ``compile``).

    In place (``nn.Module.compile``), so the modules keep their class, methods and state-dict keys: checkpoints,
    the fused decoders and the rollout scorer see the same objects, and only calls through ``module(...)`` run the
    compiled graph.
    """
    if enabled:
        for module in modules:
            module.compile()


class NonFiniteLossError(FloatingPointError):
    """A loss or gradient was NaN/inf and the NaN policy says stop (no parameter was changed by that step)."""


def _all_finite(values) -> bool:
    """Whether every element of every tensor (or number) is finite, with one host sync per device.

    Tensors are reduced to their norms by one fused pass (``torch._foreach_norm``): a NaN/inf element makes its
    norm NaN/inf, and finite values too large for a float32 norm (above about 1e19) also count as non-finite.
    """
    tensors: dict[torch.device, list[torch.Tensor]] = {}
    for v in values:
        if isinstance(v, torch.Tensor):
            if v.numel():
                t = v.detach() if v.is_floating_point() else v.detach().float()
                tensors.setdefault(t.device, []).append(t)
        elif not math.isfinite(float(v)):
            return False
    return all(bool(torch.stack(torch._foreach_norm(ts)).isfinite().all()) for ts in tensors.values())


class NonFiniteGuard:
    """What to do with a step whose loss or gradient is NaN/inf (``nan_policy`` in the config).

    ``stop`` raises :class:`NonFiniteLossError`; ``skip`` skips the update, counts it (``skipped``, and in a
    row per kind of update: generator, discriminator, MLE) and raises only after ``max_consecutive`` skipped
    updates of one kind in a row (a good update of another kind does not reset the count). The decision is
    taken on every rank alike when distributed (a step is bad when it is bad on any rank), so ranks never
    disagree about whether to step.

    Args:
        policy: ``"stop"`` or ``"skip"``.
        max_consecutive: with ``skip``, raise after this many bad steps in a row.
    """

    def __init__(self, policy: str = "stop", max_consecutive: int = 10) -> None:
        if policy not in ("stop", "skip"):
            raise ValueError(f"nan_policy must be 'stop' or 'skip', got {policy!r}")
        self.policy, self.max_consecutive = policy, max_consecutive
        self.skipped = 0
        self.in_a_row: dict[str, int] = {}
        self.note = ""
        """Appended to the stop message (the recipes say which checkpoint is intact)."""

    @property
    def consecutive(self) -> int:
        """The longest current run of skipped updates of one kind."""
        return max(self.in_a_row.values(), default=0)

    def ok(
        self, *values: torch.Tensor | float, what: str | Callable[[], str] = "loss", kind: str = "update"
    ) -> bool:
        """True when every value is finite on every rank; else counts the step and returns False (``skip``) or
        raises :class:`NonFiniteLossError` (``stop``, or too many bad steps in a row). ``what`` (a string or a
        function returning one, called only for a bad step) describes the values in the message."""
        from seqgan import distributed

        finite = _all_finite(values)
        if not distributed.any_rank(not finite):
            self.in_a_row[kind] = 0
            return True
        self.skipped += 1
        self.in_a_row[kind] = self.in_a_row.get(kind, 0) + 1
        what = what() if callable(what) else what
        note = f"; {self.note}" if self.note else ""
        if self.policy == "stop":
            raise NonFiniteLossError(f"non-finite {what} (nan_policy=stop){note}")
        if self.in_a_row[kind] >= self.max_consecutive:
            raise NonFiniteLossError(
                f"non-finite {what} in {self.in_a_row[kind]} consecutive {kind} steps (nan_policy=skip, "
                f"nan_max_consecutive={self.max_consecutive}){note}"
            )
        return False


def mle_step(
    generator: Generator,
    optimizer: torch.optim.Optimizer,
    tokens: torch.Tensor,
    grad_clip: float = 0.0,
    guard: NonFiniteGuard | None = None,
) -> float:
    """One teacher-forced maximum-likelihood update on ``(B, T)`` target sequences; returns the loss.

    A NaN/inf loss or gradient norm skips the update; ``guard`` decides whether that raises (default: raise
    :class:`NonFiniteLossError`).
    """
    guard = guard or NonFiniteGuard("stop")
    generator.train()
    total, count = sequence_nll(generator, tokens)
    loss = total / max(count, 1)  # mean NLL per real token
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = nn.utils.clip_grad_norm_(generator.parameters(), grad_clip if grad_clip > 0 else float("inf"))
    if not guard.ok(
        loss.detach(), norm, what="MLE loss / gradient norm; lower pretrain.lr or check the data", kind="MLE"
    ):
        optimizer.zero_grad(set_to_none=True)
        return float("nan")
    optimizer.step()
    return loss.item()


def discriminator_step(
    discriminator: CNNDiscriminator,
    optimizer: torch.optim.Optimizer,
    real: torch.Tensor,
    fake: torch.Tensor,
    guard: NonFiniteGuard | None = None,
) -> dict[str, float]:
    """One update on a batch of real and a batch of generated ``(B, T)`` sequences (BCE loss).

    With a ``guard``, a NaN/inf loss or gradient skips the update (or raises, as the guard's policy says).

    Returns ``discriminator/loss``, ``discriminator/acc_real`` and ``discriminator/acc_fake``.
    """
    discriminator.train()
    if real.shape[1:] == fake.shape[1:]:  # one call: larger matrix products, half the per-call work
        logits_real, logits_fake = discriminator(torch.cat([real, fake])).split(
            [real.shape[0], fake.shape[0]]
        )
    else:
        logits_real, logits_fake = discriminator(real), discriminator(fake)
    loss = discriminator_bce(logits_real, logits_fake)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grads = [p.grad for p in discriminator.parameters() if p.grad is not None]
    if guard is None or guard.ok(
        loss.detach(), *grads, what="discriminator loss / gradient", kind="discriminator"
    ):
        optimizer.step()
    else:
        optimizer.zero_grad(set_to_none=True)
    return {
        "discriminator/loss": loss.item(),
        "discriminator/acc_real": float((logits_real > 0).float().mean()),
        "discriminator/acc_fake": float((logits_fake < 0).float().mean()),
    }


def length_batches(
    tokens: torch.Tensor | tuple[torch.Tensor, ...],
    num: int,
    batch_size: int,
    rng: torch.Generator,
    lengths_of=None,
    pool_batches: int = 50,
) -> list:
    """Index batches over ``num`` rows of ``tokens`` ``(N, T)`` drawn in a seeded random order.

    With ``lengths_of`` (``tokens -> (N,)`` lengths), rows are bucketed: the random order is cut into pools of
    ``pool_batches`` batches, each pool is sorted by length (stable) and cut into batches, and the batches are
    shuffled. Every row is still used once per call and each batch is a random draw from its pool's lengths,
    but a batch's longest row is close to its shortest. Without it, plain consecutive slices of the order.

    ``tokens`` may be a tuple of tensors (real and generated sentences): each gets its own random order, and the
    result is a list of tuples of index batches, one per tensor; bucketed, the i-th shortest batches of each
    tensor's pool go together, so the batches of a tuple have similar lengths too.
    """
    parts = tokens if isinstance(tokens, tuple) else (tokens,)
    orders = [torch.randperm(t.shape[0], generator=rng)[:num] for t in parts]
    lengths = None if lengths_of is None else [lengths_of(t) for t in parts]
    if lengths is None or any(x is None for x in lengths):
        groups = list(zip(*(order.split(batch_size) for order in orders), strict=True))
    else:
        groups = []
        for pools in zip(*(order.split(batch_size * pool_batches) for order in orders), strict=True):
            ranked = [
                p[torch.argsort(x[p], stable=True)].split(batch_size)
                for p, x in zip(pools, lengths, strict=True)
            ]
            groups.extend(zip(*ranked, strict=True))
        groups = [groups[i] for i in torch.randperm(len(groups), generator=rng).tolist()]
    return groups if isinstance(tokens, tuple) else [g[0] for g in groups]


def discriminator_epochs(
    discriminator: CNNDiscriminator,
    optimizer: torch.optim.Optimizer,
    real: torch.Tensor,
    fake: torch.Tensor,
    epochs: int,
    batch_size: int,
    rng: torch.Generator,
    guard: NonFiniteGuard | None = None,
    by_length: bool = False,
) -> dict[str, float]:
    """``epochs`` passes over (real, fake) pairs of batches in a seeded order; returns the mean metrics
    (skipped non-finite steps, see ``guard``, count in the loss mean as NaN).

    ``by_length``: batches of similar lengths (see :func:`length_batches`), so that the discriminator, which
    skips the all-padding columns of a batch, computes fewer padded windows; the real and the generated batches
    are drawn independently either way.
    """
    n = min(real.shape[0], fake.shape[0])
    lengths = getattr(getattr(discriminator, "module", discriminator), "lengths", None)  # DDP wraps it
    sums: dict[str, float] = {}
    count = 0
    for _ in range(epochs):
        for real_idx, fake_idx in length_batches(
            (real, fake), n, batch_size, rng, lengths if by_length else None
        ):
            r, f = real[real_idx], fake[fake_idx]
            for k, v in discriminator_step(discriminator, optimizer, r, f, guard).items():
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
    if str(gen_spec.get("kind", "")).startswith("seq2seq"):
        raise CheckpointError(
            f"{path} holds a conditional (context -> response) model; reply with recipes/chat.py or score it "
            "with recipes/evaluate.py --checkpoint"
        )
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
        discriminator = discriminator_from_spec(ckpt["discriminator"]["spec"])
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
