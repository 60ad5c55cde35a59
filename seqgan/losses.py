"""Training objectives as plain functions with documented shapes.

Currently: the masked maximum-likelihood loss of MLE pretraining (also NLL_test), the discriminator's binary cross-entropy, and
the REINFORCE loss of SeqGAN's adversarial generator updates (Yu et al. 2017, arXiv 1609.05473, eq. 6) with an
optional baseline and entropy bonus.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from seqgan.data.datasets import sequence_mask


def sequence_nll(generator, tokens: torch.Tensor, temperature: float = 1.0) -> tuple[torch.Tensor, int]:
    """Summed negative log-likelihood of ``tokens`` under ``generator`` (teacher forcing); padding never counts.

    Real tokens are those up to and including the first EOS (:func:`~seqgan.data.datasets.sequence_mask`).
    Trailing all-padding columns are dropped first (they change nothing in a causal model) and the vocabulary
    projection runs only at real tokens (``Generator.masked_logits``).

    Args:
        generator: any :class:`~seqgan.models.base.Generator`.
        tokens: ``(B, T)`` target sequences ``y_1 .. y_n EOS PAD ..``.
        temperature: score under ``softmax(logits / temperature)``.
    Returns:
        ``(sum of -log p(y_t) over real tokens, number of real tokens)``; the mean NLL is their ratio.
    """
    mask = sequence_mask(tokens, generator.eos_id)  # (B, T)
    width = int(mask.sum(dim=1).max())
    tokens, mask = tokens[:, :width], mask[:, :width]
    logits = generator.masked_logits(generator.teacher_inputs(tokens), mask).float()  # (N, V)
    if temperature != 1.0:
        logits = logits / temperature
    return F.cross_entropy(logits, tokens[mask], reduction="sum"), int(mask.sum())


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


def policy_gradient_loss(
    log_probs: torch.Tensor,
    rewards: torch.Tensor,
    mask: torch.Tensor,
    baseline: torch.Tensor | None = None,
) -> torch.Tensor:
    """REINFORCE loss of SeqGAN: ``-sum(log p(y_t) * (Q_t - b_t) * mask) / sum(mask)``.

    Its gradient is the policy gradient of eq. 6 of Yu et al. (2017), averaged over real tokens. Rewards and
    baseline are constants (detached); padding after EOS gets no gradient and never contributes, even where its
    log-probability is ``-inf`` (e.g. PAD excluded from the sampling distribution).

    Args:
        log_probs: ``(B, T)`` log-probability of each sampled token under the generator (with gradient).
        rewards: ``(B, T)`` action values ``Q_t`` (e.g. Monte-Carlo rollout rewards).
        mask: ``(B, T)`` bool, True for real tokens (up to and including the first EOS).
        baseline: ``(B, T)`` (or broadcastable, e.g. ``(T,)``) baseline ``b_t``, or None for no baseline.
    Returns:
        Scalar loss (0 when the mask is empty).
    """
    advantage = rewards.detach().to(log_probs.dtype)
    if baseline is not None:
        advantage = advantage - baseline.detach().to(log_probs.dtype)
    mask = mask.bool()
    terms = (log_probs.masked_fill(~mask, 0.0) * advantage).masked_fill(~mask, 0.0)
    return -terms.sum() / mask.sum().clamp(min=1).to(log_probs.dtype)


def entropy_bonus(log_probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean entropy of the next-token distributions over real tokens (subtract ``coef *`` it from a loss).

    Args:
        log_probs: ``(B, T, V)`` log-probabilities (``-inf`` allowed for excluded ids; they contribute 0).
        mask: ``(B, T)`` bool, True for real tokens.
    Returns:
        Scalar: ``sum_t mask_t * H(p_t) / sum_t mask_t`` with ``H(p) = -sum_v p_v log p_v``.
    """
    # 0 * log 0 := 0, with a finite gradient
    finite_log = log_probs.masked_fill(torch.isneginf(log_probs), 0.0)
    entropy = -(log_probs.exp() * finite_log).sum(dim=-1)  # (B, T)
    m = mask.to(entropy.dtype)
    return (entropy * m).sum() / m.sum().clamp(min=1.0)
