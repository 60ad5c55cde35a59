"""Training objectives as plain functions with documented shapes.

Currently: the masked maximum-likelihood loss of MLE pretraining and the discriminator's binary cross-entropy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_nll(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood per real token; padding never counts.

    Args:
        logits: ``(B, T, V)`` next-token logits.
        targets: ``(B, T)`` target ids.
        mask: ``(B, T)`` bool, True for real tokens.
    Returns:
        Scalar: sum of -log p(target) over masked positions divided by the number of masked positions.
    """
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction="none")
    m = mask.reshape(-1).to(nll.dtype)
    return (nll * m).sum() / m.sum().clamp(min=1.0)


def discriminator_bce(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Standard GAN discriminator loss: -log D(real) - log(1 - D(fake)), each averaged over its batch.

    Args:
        logits_real: ``(B_r,)`` logits on real sequences.
        logits_fake: ``(B_f,)`` logits on generated sequences.
    """
    real = F.binary_cross_entropy_with_logits(logits_real, torch.ones_like(logits_real))  # -log(sigmoid(l))
    fake = F.binary_cross_entropy_with_logits(
        logits_fake, torch.zeros_like(logits_fake)
    )  # -log(1-sigmoid(l))
    return real + fake
