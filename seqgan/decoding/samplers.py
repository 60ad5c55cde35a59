"""Drawing tokens: logit filtering, inverse-CDF draws, and the samplers the decoders use.

* :func:`filter_logits`: top-k and nucleus (top-p, Holtzman et al. 2020, arXiv 1904.09751) filtering.
* :func:`draw`: one token per row of a probability matrix by inverse-CDF sampling (one uniform number per row,
  ``searchsorted`` over the cumulative probabilities). It draws from exactly the same distribution as
  ``torch.multinomial`` and is much cheaper on CPU, where ``multinomial`` draws one random number per
  vocabulary entry.
* :class:`LogitSampler`: ``(N, V)`` logits -> ids, with a temperature and banned ids (any generator's ``step``).
* :class:`FusedSampler`: ``(N, H)`` features -> ids, the output projection fused with the draw: the temperature
  and the banned ids are folded into the weights, logits are written into a reused buffer, ``exp2`` replaces
  ``exp``, and the CDF is searched in two levels (block sums of 64 ids, then inside the chosen block).
"""

from __future__ import annotations

import copy
import math

import torch

__all__ = ["filter_logits", "draw", "LogitSampler", "FusedSampler"]

_BLOCK = 64  # vocabulary block size of the two-level inverse-CDF search
_SAMPLER_ELEMENTS = 2**22  # logits buffer of the fused sampler (16 MiB): rows per block = this / padded vocab


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Sets logits outside the top-k / nucleus to -inf.

    Args:
        logits: ``(B, V)``.
        top_k: keep the k largest (0 keeps all).
        top_p: keep the smallest set of most likely tokens whose probability reaches top_p (1.0 keeps all);
            the most likely token is always kept.
    Returns:
        ``(B, V)`` filtered logits.
    """
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cum - sorted_logits.softmax(dim=-1) >= top_p  # mass before this token already reaches top_p
        remove[:, 0] = False
        logits = logits.masked_fill(remove.scatter(1, order, remove), float("-inf"))
    return logits


def draw(probs: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
    """One index per row by inverse-CDF sampling.

    Args:
        probs: ``(B, V)`` probabilities (unnormalised rows are fine: the uniform is scaled by the row total).
        rng: ``torch.Generator`` on ``probs``' device (the global RNG when None).
    Returns:
        ``(B,)`` long indices.
    """
    cdf = probs.cumsum(dim=-1)
    u = torch.rand(probs.shape[0], 1, device=probs.device, generator=rng, dtype=cdf.dtype) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=probs.shape[-1] - 1)


class LogitSampler:
    """Draws from ``(N, V)`` logits: ban ids, divide by the temperature, softmax, :func:`draw`.

    Args:
        temperature: softmax temperature (> 0).
        banned: ids never drawn (a generator's ``never_sample``).
        device: where the logits live.
    """

    def __init__(self, temperature: float, banned: list[int], device: torch.device) -> None:
        self.temperature = temperature
        self.banned = torch.tensor(banned, dtype=torch.long, device=device)

    def __call__(self, logits: torch.Tensor, num_draws: int, rng: torch.Generator | None) -> torch.Tensor:
        """``(N, V)`` logits -> ``(N, num_draws)`` ids (``num_draws`` independent draws per row)."""
        logits = logits.float()
        if len(self.banned):
            logits = logits.index_fill(1, self.banned, float("-inf"))
        probs = torch.softmax(logits / self.temperature, dim=-1)  # (N, V)
        if num_draws > 1:
            probs = probs.repeat_interleave(num_draws, dim=0)  # (N * num_draws, V)
        return draw(probs, rng).view(-1, num_draws)

    def fork(self) -> LogitSampler:
        """The sampler for another thread: it keeps no buffers, so itself."""
        return self


class FusedSampler:
    """Draws from ``softmax((x @ W.T + b) / temperature)`` with banned ids, a block of rows at a time.

    The vocabulary is padded to ``nb * 64`` ids; ``W`` and ``b`` are scaled once by ``log2(e) / temperature``
    (``-inf`` bias for banned and padding ids) so that ``exp2`` -- several times faster than ``exp`` on CPU --
    gives the unnormalised probabilities. Per block of rows: ``addmm`` into a reused buffer, ``exp2`` in place
    (rows whose sum overflows or underflows are redone shifted by their maximum), block sums, then a two-level
    inverse-CDF search: the block whose cumulative mass first exceeds ``u * total``, then the id inside that
    block. This is :func:`draw`'s method (one uniform per draw, first id whose CDF exceeds it) with an
    ``(nb,)`` + ``(64,)`` search instead of a ``(V,)`` cumulative sum.

    Args:
        weight: ``(V, H)`` output projection.
        bias: ``(V,)`` or None.
        temperature: softmax temperature (> 0).
        banned: ids never drawn.
        row_block: rows per block (default: a 16 MiB logits buffer, at least 64 rows).
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        temperature: float,
        banned: list[int],
        row_block: int | None = None,
    ) -> None:
        vocab, hidden = weight.shape
        self.vocab_size = vocab
        self.nb = math.ceil(vocab / _BLOCK)
        padded = self.nb * _BLOCK
        w = torch.zeros(padded, hidden, dtype=torch.float32, device=weight.device)
        scale = math.log2(math.e) / temperature
        w[:vocab] = weight.detach().float() * scale
        b = torch.full((padded,), float("-inf"), dtype=torch.float32, device=weight.device)
        b[:vocab] = 0.0 if bias is None else bias.detach().float() * scale
        if banned:
            b[torch.tensor(banned, dtype=torch.long, device=weight.device)] = float("-inf")
        self.w_t = w.t()  # (H, Vp) view; addmm reads it transposed
        self.bias = b
        self.row_block = row_block or max(64, _SAMPLER_ELEMENTS // padded)
        self.buf = torch.empty(self.row_block, padded, dtype=torch.float32, device=weight.device)
        self.cum = torch.zeros(self.row_block, self.nb + 1, dtype=torch.float32, device=weight.device)
        self.row_base = torch.arange(self.row_block, device=weight.device) * self.nb
        self.zero = torch.zeros((), device=weight.device)

    def __call__(self, x: torch.Tensor, num_draws: int, rng: torch.Generator | None) -> torch.Tensor:
        """``(N, H)`` features -> ``(N, num_draws)`` ids."""
        n = x.shape[0]
        out = torch.empty(n, num_draws, dtype=torch.long, device=x.device)
        x = x.float()
        for start in range(0, n, self.row_block):
            stop = min(n, start + self.row_block)
            out[start:stop] = self._block(x[start:stop], num_draws, rng)
        return out

    def fork(self) -> FusedSampler:
        """The same sampler with its own buffers (for another thread)."""
        twin = copy.copy(self)
        twin.buf, twin.cum = torch.empty_like(self.buf), torch.zeros_like(self.cum)
        return twin

    def draw_with_log_probs(
        self, x: torch.Tensor, rng: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One draw per row with its log-probability (the same draws as ``self(x, 1, rng)``).

        Args:
            x: ``(N, H)`` features.
            rng: ``torch.Generator`` for the draws (the global RNG when None).
        Returns:
            ``(N,)`` ids and their ``(N,)`` float32 log-probabilities under the sampling distribution.
        """
        n = x.shape[0]
        ids = torch.empty(n, dtype=torch.long, device=x.device)
        log_probs = torch.empty(n, dtype=torch.float32, device=x.device)
        x = x.float()
        for start in range(0, n, self.row_block):
            stop = min(n, start + self.row_block)
            idx = self._block(x[start:stop], 1, rng).squeeze(1)
            m = stop - start
            # the drawn id has positive mass; probs and the total share the row's shift, so the ratio is exact
            chosen = self.buf[:m].gather(1, idx[:, None]).squeeze(1)
            torch.sub(chosen.log(), self.cum[:m, -1].log(), out=log_probs[start:stop])
            ids[start:stop] = idx
        return ids, log_probs

    def _block(self, x: torch.Tensor, k: int, rng: torch.Generator | None) -> torch.Tensor:
        """``(m, H)`` features, ``m <= row_block`` -> ``(m, k)`` ids; leaves the probabilities in ``buf``."""
        m = x.shape[0]
        probs = torch.addmm(self.bias, x, self.w_t, out=self.buf[:m])  # (m, Vp) logits * log2(e)
        torch.exp2(probs, out=probs)
        blocks = probs.view(m, self.nb, _BLOCK)
        cum = self.cum[:m]  # (m, nb + 1), column 0 stays 0: cum[:, j] = mass of the blocks before block j
        torch.sum(blocks, dim=2, out=cum[:, 1:])
        cum[:, 1:].cumsum_(dim=1)
        total = cum[:, -1:]
        low, high = torch.aminmax(total)
        if not (float(low) > 0.0 and float(high) < math.inf):  # overflow / underflow of exp2 (or NaN)
            rows = (~((total > 0) & (total < math.inf))).squeeze(1).nonzero().squeeze(1)
            logits = torch.addmm(self.bias, x[rows], self.w_t)
            probs[rows] = torch.exp2(logits - logits.amax(dim=1, keepdim=True))  # shifted by the row max
            cum[rows, 1:] = blocks[rows].sum(2).cumsum(1)
            if not bool(torch.isfinite(total[rows]).all()):
                raise FloatingPointError("non-finite generator outputs while sampling rollouts")
        u = torch.rand(m, k, generator=rng, device=x.device).mul_(total)  # (m, k) one uniform per draw
        u = torch.minimum(u, torch.nextafter(total, self.zero))  # u < total
        blk = torch.searchsorted(cum, u, right=True).sub_(1)  # block whose cumulative mass first exceeds u
        rest = (u - cum.gather(1, blk)).view(-1, 1)  # (m * k, 1) mass still to cover inside the block
        flat = (self.row_base[:m, None] + blk).view(-1)
        cw = blocks.reshape(m * self.nb, _BLOCK).index_select(0, flat).cumsum_(dim=1)  # (m * k, 64)
        rest = torch.minimum(rest, torch.nextafter(cw[:, -1:], self.zero))
        idx = torch.searchsorted(cw, rest, right=True).view(m, k)
        return idx.add_(blk, alpha=_BLOCK)
