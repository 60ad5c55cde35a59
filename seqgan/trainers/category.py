"""Pieces every trainer of the category task shares: sampling by class, class-balanced draws of real rows, and the
(k+1)-class discriminator's cross-entropy step and rounds (SentiGAN, Wang & Wan 2018; also the discriminator
pretraining of every category run).

The discriminator has ``k + 1`` outputs: classes ``0 .. k-1`` are the real classes, class ``k`` is "generated"
(:func:`~seqgan.losses.multiclass_targets`).
"""

from __future__ import annotations

import torch
from torch import nn

from seqgan.distributed import unwrap
from seqgan.losses import multiclass_d_loss, multiclass_targets
from seqgan.models.class_conditional import class_labels
from seqgan.models.seq2seq import BoundGenerator
from seqgan.sampling import Samples, sample
from seqgan.trainers.base import NonFiniteGuard, guarded_update

__all__ = [
    "class_draw",
    "class_members",
    "multiclass_discriminator_round",
    "multiclass_discriminator_step",
    "sample_class",
    "sample_classes",
]


@torch.no_grad()
def sample_class(
    model: nn.Module,
    label: int,
    num: int,
    max_len: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    rng: torch.Generator | None = None,
    batch_size: int = 1024,
) -> Samples:
    """``num`` sentences of class ``label`` from a class-conditional generator (eval mode, no gradient).

    Returns:
        :class:`~seqgan.sampling.Samples` with ``(num, max_len)`` tensors.
    """
    model = unwrap(model)
    bound = BoundGenerator(model, class_labels(label, 1, model.device))
    return sample(bound, num, max_len, temperature, top_k, top_p, rng=rng, batch_size=batch_size)


def sample_classes(
    model: nn.Module,
    per_class: int,
    max_len: int,
    temperature: float = 1.0,
    rng: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` samples of every class, class 0's first: ``(k * per_class, T)`` ids and ``(k * per_class,)``
    their classes."""
    k = unwrap(model).num_classes
    tokens = torch.cat(
        [sample_class(model, c, per_class, max_len, temperature, rng=rng).tokens for c in range(k)]
    )
    labels = torch.arange(k, device=tokens.device).repeat_interleave(per_class)
    return tokens, labels


def check_multiclass(method: str, generator: nn.Module, discriminator: nn.Module) -> int:
    """The number of classes ``k`` of a class-conditional ``generator``, after checking that ``discriminator`` has
    the ``k + 1`` outputs (the classes, then fake) that ``method`` needs.

    Raises:
        ValueError: another number of outputs.
    """
    k = unwrap(generator).num_classes
    outputs = getattr(unwrap(discriminator), "num_outputs", 1)
    if outputs != k + 1:
        raise ValueError(
            f"{method} needs a discriminator with {k + 1} outputs (k classes + fake), got {outputs}"
        )
    return k


def class_members(labels: torch.Tensor, num_classes: int) -> list[torch.Tensor]:
    """The row indices of every class (``(n_c,)`` each); ValueError when a class has none."""
    members = [(labels == c).nonzero().squeeze(1) for c in range(num_classes)]
    empty = [c for c, m in enumerate(members) if m.numel() == 0]
    if empty:
        raise ValueError(f"classes {empty} have no training sentence")
    return members


def class_draw(members: list[torch.Tensor], per_class: int, rng: torch.Generator | None) -> torch.Tensor:
    """``per_class`` random rows of every class, class 0's first (``(k * per_class,)`` indices); without
    replacement inside a class while it lasts, then from a fresh permutation."""
    out = []
    for m in members:
        reps = (per_class + m.numel() - 1) // m.numel()
        perm = torch.cat([torch.randperm(m.numel(), generator=rng) for _ in range(reps)])[:per_class]
        out.append(m[perm.to(m.device)])
    return torch.cat(out)


def multiclass_discriminator_step(
    discriminator: nn.Module,
    optimizer: torch.optim.Optimizer,
    real: torch.Tensor,
    real_labels: torch.Tensor,
    fake: torch.Tensor,
    guard: NonFiniteGuard | None = None,
) -> dict[str, float]:
    """One cross-entropy update of a ``(k + 1)``-class discriminator: real rows ``(B_r, T)`` against their
    classes, generated rows ``(B_f, T)`` against the fake class ``k``, scored in one call.

    Returns:
        ``discriminator/loss``, ``acc_real`` (real rows put in their own class), ``acc_fake`` (generated rows put
        in the fake class) and ``acc_real_vs_fake`` (real rows not put in the fake class).
    """
    guard = guard or NonFiniteGuard("stop")
    discriminator.train()
    k = unwrap(discriminator).num_outputs - 1
    logits = discriminator(torch.cat([real, fake]))  # (B_r + B_f, k + 1); both (., max_len)
    targets = multiclass_targets(real_labels.to(logits.device), fake.shape[0], k)
    loss = multiclass_d_loss(logits, targets)
    guarded_update(
        loss, optimizer, discriminator.parameters(), guard, "discriminator",
        what="discriminator loss / gradient; lower the discriminator's learning rate",
    )  # fmt: skip
    with torch.no_grad():
        pred = logits.argmax(dim=1)
        b = real.shape[0]
        return {
            "discriminator/loss": loss.item(),
            "discriminator/acc_real": float((pred[:b] == targets[:b]).float().mean()),
            "discriminator/acc_fake": float((pred[b:] == k).float().mean()) if fake.shape[0] else 0.0,
            "discriminator/acc_real_vs_fake": float((pred[:b] != k).float().mean()),
        }


def multiclass_discriminator_round(
    discriminator: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: nn.Module,
    tokens: torch.Tensor,
    labels: torch.Tensor,
    num: int,
    epochs: int,
    batch_size: int,
    max_len: int,
    data_rng: torch.Generator,
    sample_rng: torch.Generator | None = None,
    temperature: float = 1.0,
    guard: NonFiniteGuard | None = None,
) -> dict[str, float]:
    """``num`` fresh generated sentences (split evenly over the classes) against as many real ones (the same
    number of every class), then ``epochs`` passes of minibatches of ``batch_size`` real and ``batch_size``
    generated rows in seeded orders; returns the mean metrics."""
    k = unwrap(generator).num_classes
    per_class = max(1, num // k)
    fake, _ = sample_classes(generator, per_class, max_len, temperature, sample_rng)
    idx = class_draw(class_members(labels, k), per_class, data_rng).to(tokens.device)
    real, real_labels = tokens[idx], labels[idx]
    fake = fake.to(tokens.device)
    n = real.shape[0]
    sums: dict[str, float] = {}
    count = 0
    for _ in range(epochs):
        real_order = torch.randperm(n, generator=data_rng).to(tokens.device)
        fake_order = torch.randperm(n, generator=data_rng).to(tokens.device)
        for start in range(0, n, batch_size):
            r, f = real_order[start : start + batch_size], fake_order[start : start + batch_size]
            metrics = multiclass_discriminator_step(
                discriminator, optimizer, real[r], real_labels[r], fake[f], guard
            )
            for key, v in metrics.items():
                sums[key] = sums.get(key, 0.0) + v
            count += 1
    return {key: v / max(count, 1) for key, v in sums.items()}
