"""Negative log-likelihood of held-out data under a generator (NLL_test).

Protocol: the mean, over every real token of the held-out split (EOS included, padding excluded), of
``-log p(y_t | y_<t)`` in nats, computed in eval mode without gradients. Held-out words outside the vocabulary
are encoded as UNK and scored as the UNK token (the metric is over the model's closed vocabulary; the UNK rate
is reported beside it by the recipes). This differs from toolkits that average over padding or compute
"NLL-test" on the training data.
"""

from __future__ import annotations

import torch

from seqgan.losses import sequence_nll
from seqgan.models.base import Generator


@torch.no_grad()
def nll_test(
    generator: Generator, tokens: torch.Tensor, batch_size: int = 256, temperature: float = 1.0
) -> float:
    """Per-token NLL (nats) of ``tokens`` under ``generator``.

    Args:
        generator: any generator.
        tokens: ``(N, T)`` encoded held-out sequences (``y_1 .. y_n EOS PAD ..``).
        batch_size: rows per forward pass.
        temperature: score under ``softmax(logits / temperature)``, the distribution sampled at that
            temperature (quality-diversity sweeps); 1.0 is the model itself.
    Returns:
        ``sum(-log p) / number of real tokens``.
    """
    was_training = generator.training
    generator.eval()
    total, count = 0.0, 0
    try:
        for start in range(0, tokens.shape[0], batch_size):
            batch = tokens[start : start + batch_size].to(generator.device)
            nll, n = sequence_nll(generator, batch, temperature)
            total += float(nll)
            count += n
    finally:
        generator.train(was_training)
    return total / max(count, 1)
