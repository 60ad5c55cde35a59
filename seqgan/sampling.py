"""Sampling whole sequences from any generator: temperature, top-k, top-p (nucleus), stop at EOS.

:func:`sample` returns :class:`Samples` (tokens, the log-probability of each drawn token, the mask of real
tokens). Tokens are drawn by inverse-CDF sampling (one uniform number per row, ``searchsorted`` over the
cumulative probabilities; see :func:`seqgan.decoding.draw`): the same distribution as ``torch.multinomial``, much
cheaper on CPU. Without top-k / top-p filtering, on the CPU, a generator with a fused decoder
(:func:`seqgan.decoding.make_decoder`: LSTM, transformer) is decoded through it, finished rows leaving the batch;
otherwise through ``step`` with the filtering of :func:`seqgan.decoding.filter_logits`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seqgan.decoding import Decoder, filter_logits, make_decoder
from seqgan.models.base import Generator

__all__ = ["Samples", "sample"]


@dataclass
class Samples:
    """A batch of sampled sequences.

    Attributes:
        tokens: ``(B, T)`` ids, ``pad_id`` after the first EOS.
        log_probs: ``(B, T)`` log-probability of each chosen token under the distribution it was drawn from
            (after temperature and filtering); 0 where ``mask`` is False.
        mask: ``(B, T)`` True for real tokens (EOS included).
    """

    tokens: torch.Tensor
    log_probs: torch.Tensor
    mask: torch.Tensor

    @property
    def lengths(self) -> torch.Tensor:
        return self.mask.sum(dim=1)


@torch.no_grad()
def sample(
    generator: Generator,
    num: int,
    max_len: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    rng: torch.Generator | None = None,
    batch_size: int | None = None,
) -> Samples:
    """Draws ``num`` sequences of at most ``max_len`` tokens, in eval mode and without gradients.

    Args:
        generator: any :class:`~seqgan.models.base.Generator`.
        num: number of sequences.
        max_len: maximum tokens per sequence (EOS included when it is drawn).
        temperature, top_k, top_p: sampling distribution (see :func:`seqgan.decoding.filter_logits`).
        rng: a ``torch.Generator`` on the generator's device for reproducible draws (global RNG when None).
        batch_size: rows decoded at once (all at once when None).
    Returns:
        :class:`Samples` with ``(num, max_len)`` tensors.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    was_training = generator.training
    generator.eval()
    try:
        chunks = []
        step = batch_size or num
        decoder = _fast_decoder(generator, temperature, top_k, top_p)
        for start in range(0, num, step):
            n = min(step, num - start)
            if decoder is None:
                chunks.append(_sample_batch(generator, n, max_len, temperature, top_k, top_p, rng))
            else:
                with decoder:
                    chunks.append(_sample_batch_fused(generator, decoder, n, max_len, rng))
    finally:
        generator.train(was_training)
    return Samples(*(torch.cat([getattr(c, f) for c in chunks]) for f in ("tokens", "log_probs", "mask")))


def _fast_decoder(generator: Generator, temperature: float, top_k: int, top_p: float) -> Decoder | None:
    """The fused decoder (output projection fused with the draw) when it applies: a generator with a fast path
    (plain LSTM or transformer) on the CPU, no top-k / top-p filtering. None otherwise."""
    if top_k or top_p < 1.0 or generator.device.type != "cpu":
        return None
    decoder = make_decoder(generator, temperature)
    return decoder if decoder.fused else None


def _sample_batch_fused(
    generator: Generator, decoder: Decoder, num: int, max_len: int, rng: torch.Generator | None
) -> Samples:
    """:func:`_sample_batch` through a fused decoder: same distribution, finished rows leave the batch."""
    device = generator.device
    tokens = torch.full((num, max_len), generator.pad_id, dtype=torch.long, device=device)
    log_probs = torch.zeros(num, max_len, device=device)
    mask = torch.zeros(num, max_len, dtype=torch.bool, device=device)
    rows = torch.arange(num, device=device)  # output row of each decoding row
    alive = torch.ones(num, dtype=torch.bool, device=device)
    prev = torch.full((num,), generator.bos_id, dtype=torch.long, device=device)
    state = decoder.init(num, capacity=num, seq_len=max_len)
    no_rows = rows[:0]
    for t in range(max_len):
        feats, state = decoder.step(prev, state)
        live = None if bool(alive.all()) else alive.nonzero().squeeze(1)
        tok, chosen = decoder.sampler.draw_with_log_probs(feats if live is None else feats[live], rng)
        out_rows = rows if live is None else rows[live]
        tokens[out_rows, t], log_probs[out_rows, t], mask[out_rows, t] = tok, chosen, True
        if generator.eos_id is None or t == max_len - 1:
            prev = tok if live is None else prev.index_copy_(0, live, tok)
            continue
        if live is None:
            prev, alive = tok, tok != generator.eos_id
        else:
            prev[live], alive[live] = tok, tok != generator.eos_id
        n = alive.numel()
        dead = n - int(alive.sum())
        if dead == n:
            break
        if dead and dead > decoder.compact_fraction * n:  # finished rows leave the batch
            keep = alive.nonzero().squeeze(1)
            state = decoder.rearrange(state, n, keep, no_rows)
            rows, prev, alive = rows[keep], prev[keep], alive[keep]
    return Samples(tokens, log_probs, mask)


def _sample_batch(generator, num, max_len, temperature, top_k, top_p, rng) -> Samples:
    device = generator.device
    tokens = torch.full((num, max_len), generator.pad_id, dtype=torch.long, device=device)
    log_probs = torch.zeros(num, max_len, device=device)
    mask = torch.zeros(num, max_len, dtype=torch.bool, device=device)
    alive = torch.ones(num, dtype=torch.bool, device=device)
    state = generator.init_state(num)
    banned = torch.tensor(generator.never_sample, dtype=torch.long, device=device)
    prev = torch.full((num,), generator.bos_id, dtype=torch.long, device=device)
    for t in range(max_len):
        logits, state = generator.step(prev, state)
        logits = logits.float().index_fill(1, banned, float("-inf")) if len(banned) else logits.float()
        if temperature != 1.0:
            logits = logits / temperature
        if top_k or top_p < 1.0:
            logits = filter_logits(logits, top_k, top_p)
        # unnormalised probabilities, their CDF and the chosen token's log-probability in few passes over V
        top = logits.amax(dim=1, keepdim=True)  # (B, 1)
        cdf = (logits - top).exp_().cumsum_(dim=1)  # (B, V)
        total = cdf[:, -1:]
        u = torch.rand(num, 1, device=device, generator=rng) * total
        tok = torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=cdf.shape[1] - 1)
        chosen = (logits.gather(1, tok[:, None]) - top - total.log()).squeeze(1)  # log p(tok)
        tokens[:, t] = torch.where(alive, tok, generator.pad_id)
        log_probs[:, t] = torch.where(alive, chosen, 0.0)
        mask[:, t] = alive
        if generator.eos_id is not None:
            alive = alive & (tok != generator.eos_id)
            # the device-to-host check is the only sync per step; skip it on accelerators
            if device.type == "cpu" and not bool(alive.any()):
                break
        prev = tok
    return Samples(tokens, log_probs, mask)
