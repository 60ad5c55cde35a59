"""Monte-Carlo rollout rewards for SeqGAN's policy gradient (Yu et al. 2017, arXiv 1609.05473, Sec. 2, eq. 4).

For a sampled sequence ``y_1 .. y_T`` the action value of token ``y_t`` is the expected discriminator probability
of a complete sequence that starts with the prefix ``y_1 .. y_t``; it is estimated by completing the prefix
``R`` times with a *rollout policy* ``G_beta`` and averaging ``sigmoid(D(completion))``. The last real token
(the first EOS, or position ``T`` if there is none) gets ``sigmoid(D(y))`` of the sequence itself, and positions
after it get 0.

The rollout policy is a lagged copy of the generator: after every generator update
``beta <- rate * beta + (1 - rate) * theta`` (SeqGAN's ``update_rate``, 0.8 in the reference code, which also
copies the embeddings without lag; here every parameter is lagged the same way). ``rate = 0`` rolls out with
the current generator (TextGAN-PyTorch's choice) and keeps no copy.

Engine (``MonteCarloRollout.__call__``), for a batch ``tokens`` ``(B, T)``:

* Completion rows. Prefix ``t`` of sample ``b`` (``1 <= t < L_b``, ``L_b`` the number of real tokens) is completed
  ``R`` times; completion ``(b, t, r)`` is row ``(b * (T - 1) + t - 1) * R + r`` of a ``(B * (T - 1) * R, T)``
  buffer (rows for ``t >= L_b`` are never decoded nor scored). Columns ``< t`` hold the real prefix, columns
  ``>= t`` the sampled continuation, ``pad_id`` after its first EOS.
* One decoding loop over time steps ``s = 0 .. T-1`` runs every row of a chunk in lockstep. *Teacher* rows
  (one per sample) read ``[BOS, y_1 .. y_{T-1}]``, i.e. the single pass over the sample that provides every
  prefix state; no prefix is ever recomputed. At step ``s >= 1`` the teacher row of ``b`` has just read ``y_s``:
  its next-token distribution is the one after prefix ``t = s``, so it draws the first continuation token of
  the ``R`` completions of that prefix (``R`` draws from one distribution), and those ``R`` rows *join* the
  batch with a copy of its state (``select_state``). Continuing rows read their own last token and draw the
  next one. A completion of prefix ``t`` therefore decodes exactly the ``T - t`` tokens it needs (``T - t - 1``
  steps); rows stop at EOS and are dropped from the batch, and teacher rows retire after the last prefix their
  sample needs. There is no Python loop over rollouts or prefixes, only over the ``T`` time steps.
* Chunks: samples are split so that one chunk has at most ``max_rows`` rows (``1 + R * (T - 1)`` per sample).
* Sampling: temperature and the generator's ``never_sample`` ids, by inverse-CDF draws (one uniform per draw),
  from an optional ``torch.Generator``. For :class:`~seqgan.models.lstm.LSTMGenerator` and for
  :class:`~seqgan.models.transformer.TransformerGenerator` the output projection is fused with the draw (the
  temperature and the excluded ids are folded into the weights, logits are written into a reused buffer, and
  the CDF is searched in two levels: block sums of 64 ids, then inside the chosen block); the transformer keeps
  its key / value cache in preallocated slots instead of copying it every step (attending over whole slots
  with a mask of the filled positions, through an HF attention function registered for the duration of the
  rollout; the slots are reused by the next chunk), runs its HF base model on blocks of rows, and evaluates
  GPT-2's ``gelu_new`` with HF's fused ``GELUTanh`` (same formula) while decoding. Any
  other generator is decoded through its ``step`` / ``select_state`` contract and :func:`seqgan.sampling.draw`.
* Scoring: all completions are scored by the discriminator in eval mode without gradient, ``score_batch`` rows
  at a time, in prefix-length order. For a :class:`~seqgan.models.discriminator.CNNDiscriminator` the scores are
  computed exactly (up to float rounding; checked against the module on the first batch of every call) but
  faster: convolution windows that lie inside the real prefix are shared (a running max over the sample's own
  windows), and the remaining windows are sums of per-token, per-tap filter responses looked up in a
  ``(k * (V + 1), filters)`` table with ``F.embedding_bag``, built once per call. Any other discriminator is
  called on the completed ``(N, T)`` id sequences.
* Memory: the completion buffer (``B * (T - 1) * R * T`` ids), one chunk's decoding state (the transformer's
  key / value slots are capped at 256 MiB per chunk and reused), and one score batch of window responses.
"""

from __future__ import annotations

import copy
import functools
import math
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seqgan.data.datasets import sequence_mask
from seqgan.models.base import Generator
from seqgan.sampling import draw

__all__ = ["MonteCarloRollout"]

_BLOCK = 64  # vocabulary block size of the two-level inverse-CDF search
_SAMPLER_ELEMENTS = 2**22  # logits buffer of the fused sampler (16 MiB): rows per block = this / padded vocab
_ACTIVATION_ELEMENTS = 2**20  # transformer fast path: rows per model call = this / (4 * width)
_SLOT_BYTES = 2**28  # most key / value slot memory of one transformer decoding chunk


# ---------------------------------------------------------------------------------------------- sampling
class _LogitSampler:
    """Draws from ``(N, V)`` logits: ban ids, divide by the temperature, softmax, :func:`seqgan.sampling.draw`."""

    def __init__(self, temperature: float, banned: list[int], device: torch.device) -> None:
        self.temperature = temperature
        self.banned = torch.tensor(banned, dtype=torch.long, device=device)

    def __call__(self, logits: torch.Tensor, num_draws: int, rng: torch.Generator | None) -> torch.Tensor:
        """``(N, V)`` logits -> ``(N, num_draws)`` ids."""
        logits = logits.float()
        if len(self.banned):
            logits = logits.index_fill(1, self.banned, float("-inf"))
        probs = torch.softmax(logits / self.temperature, dim=-1)
        if num_draws > 1:
            probs = probs.repeat_interleave(num_draws, dim=0)
        return draw(probs, rng).view(-1, num_draws)


class _FusedSampler:
    """Draws from ``softmax((x @ W.T + b) / temperature)`` with banned ids, a block of rows at a time.

    The vocabulary is padded to ``nb * 64`` ids; ``W`` and ``b`` are scaled once by ``log2(e) / temperature``
    (``-inf`` bias for banned and padding ids) so that ``exp2`` -- several times faster than ``exp`` on CPU --
    gives the unnormalised probabilities. Per block of rows: ``addmm`` into a reused buffer, ``exp2`` in place
    (rows whose sum overflows or underflows are redone shifted by their maximum), block sums, then a two-level
    inverse-CDF search: the block whose cumulative mass first exceeds ``u * total``, then the id inside that
    block. This is :func:`seqgan.sampling.draw`'s method (one uniform per draw, first id whose CDF exceeds it)
    with an ``(nb,)`` + ``(64,)`` search instead of a ``(V,)`` cumulative sum.
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

    def fork(self) -> _FusedSampler:
        """The same sampler with its own buffers (for another thread)."""
        twin = copy.copy(self)
        twin.buf, twin.cum = torch.empty_like(self.buf), torch.zeros_like(self.cum)
        return twin

    def draw_with_log_probs(
        self, x: torch.Tensor, rng: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, H)`` features -> one draw per row, ``(N,)`` ids and their ``(N,)`` log-probabilities under the
        sampling distribution (the same draws as ``self(x, 1, rng)``)."""
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


# ---------------------------------------------------------------------------------------------- decoders
class _Decoder:
    """Decoding adapter: ``init`` / ``step`` / ``rearrange`` plus a ``sampler``; used as a context manager around
    one rollout (the transformer adapter swaps in faster, equivalent activation kernels meanwhile)."""

    compact_fraction = 0.0  # drop finished rows once more than this fraction of the rows is finished

    def __enter__(self) -> _Decoder:
        return self

    def fork(self) -> _Decoder:
        """An equivalent decoder that another thread can use at the same time (own sampler buffers; the model
        and whatever ``__enter__`` set up are shared)."""
        twin = copy.copy(self)
        if hasattr(self.sampler, "fork"):
            twin.sampler = self.sampler.fork()
        return twin

    def __exit__(self, *exc: object) -> None:
        return None


class _StepDecoder(_Decoder):
    """Any generator, through its contract: ``init_state`` / ``step`` (logits) / ``select_state``."""

    compact_fraction = 0.0  # rearranging is a gather anyway, so drop finished rows at once

    def __init__(self, generator: Generator, temperature: float) -> None:
        self.g = generator
        self.sampler = _LogitSampler(temperature, generator.never_sample, generator.device)

    def init(self, n: int, capacity: int | None = None, seq_len: int | None = None) -> Any:
        return self.g.init_state(n)

    def step(self, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        return self.g.step(tokens, state)

    def rearrange(self, state: Any, n: int, keep: torch.Tensor | None, src: torch.Tensor) -> Any:
        """Rows ``keep`` (all ``n`` when None) in order, then copies of rows ``src``."""
        keep = torch.arange(n, device=src.device) if keep is None else keep
        return self.g.select_state(state, torch.cat([keep, src]))


class _LSTMDecoder(_Decoder):
    """:class:`LSTMGenerator` fast path: the step returns the LSTM output, the projection is fused with sampling."""

    def __init__(self, generator: Generator, temperature: float) -> None:
        self.g = generator
        self.sampler = _FusedSampler(
            generator.proj.weight, generator.proj.bias, temperature, generator.never_sample
        )

    def init(self, n: int, capacity: int | None = None, seq_len: int | None = None):
        return self.g.init_state(n)

    def step(self, tokens: torch.Tensor, state) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        out, state = self.g.lstm(self.g.embedding(tokens)[:, None, :], state)  # (n, 1, H)
        return out[:, 0], state  # dropout is the identity in eval mode

    def rearrange(self, state, n: int, keep: torch.Tensor | None, src: torch.Tensor):
        h, c = state
        if keep is None:
            return torch.cat([h, h[:, src]], dim=1), torch.cat([c, c[:, src]], dim=1)
        index = torch.cat([keep, src])
        return h[:, index], c[:, index]


class _SlotPool:
    """Preallocated key / value slots for every attention layer of a transformer decoder.

    Layer ``i`` keeps ``keys[i]`` / ``values[i]`` of shape ``(capacity, heads, max_len, head_dim)``, zero-filled
    when created; rows ``[0, n)`` are in use and positions ``[0, length)`` are filled. A step writes position
    ``length`` of the ``n`` rows in place and attends over *all* ``max_len`` positions of its rows with a mask
    of the filled ones (:func:`_slot_attention`): whole rows are contiguous, which batched attention reads
    several times faster than a ``[:length + 1]`` slice of them, and every slot holds a finite number (zeros or
    keys / values of a finished row), so the masked positions weigh exactly 0. Decoding never copies the
    cache; rows are appended by copying their prefix (new completions), the buffer is compacted only when many
    rows have finished, and :meth:`reset` reuses the buffers for the next chunk.
    """

    def __init__(self, num_layers: int, capacity: int, max_len: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.capacity, self.max_len = capacity, max_len
        self.n, self.length = 0, 0
        self.lo, self.hi = 0, 0  # rows read / written by the current model call
        self._positions: torch.Tensor | None = None

    def reset(self, n: int) -> None:
        """Empties the pool for ``n`` new rows (the buffers are kept)."""
        if n > self.capacity:
            raise RuntimeError(f"rollout KV slots overflow ({n} > {self.capacity} rows)")
        self.n, self.length = n, 0

    def mask(self, device: torch.device) -> torch.Tensor:
        """``(1, 1, 1, max_len)`` on ``device``: True at the positions a query at position ``length`` attends to."""
        if self._positions is None or self._positions.device != device:
            self._positions = torch.arange(self.max_len, device=device)
        return (self._positions <= self.length).view(1, 1, 1, -1)

    def write(self, i: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stores ``(n, heads, 1, head_dim)`` keys / values at position ``length`` of layer ``i``; returns the
        whole ``max_len`` slots of the current rows."""
        if self.keys[i] is None:
            shape = (self.capacity, k.shape[1], self.max_len, k.shape[3])
            self.keys[i] = torch.zeros(shape, dtype=k.dtype, device=k.device)
            self.values[i] = torch.zeros(shape[:3] + (v.shape[3],), dtype=v.dtype, device=v.device)
        lo, hi, pos = self.lo, self.hi, self.length
        kb, vb = self.keys[i], self.values[i]
        kb[lo:hi, :, pos] = k[:, :, 0]
        vb[lo:hi, :, pos] = v[:, :, 0]
        return kb[lo:hi], vb[lo:hi]

    def rearrange(self, keep: torch.Tensor | None, src: torch.Tensor) -> None:
        """Rows ``keep`` (all when None) in order, then copies of rows ``src`` (indices of the current layout)."""
        pos = self.length
        start = self.n if keep is None else keep.numel()
        stop = start + src.numel()
        if stop > self.capacity:
            raise RuntimeError(f"rollout KV slots overflow ({stop} > {self.capacity} rows)")
        index = None if keep is None else torch.cat([keep, src])  # both in the old layout
        for bufs in (self.keys, self.values):
            for buf in bufs:
                if buf is None:
                    continue
                if index is not None:  # compaction: one gather (into a temporary) of the kept and copied rows
                    buf[:stop, :, :pos] = buf[index, :, :pos]
                elif src.numel():  # append only: copy the joining rows' prefix slots behind the live rows
                    buf[start:stop, :, :pos].copy_(buf[:, :, :pos].index_select(0, src))
        self.n = stop


@functools.cache
def _register_slot_attention() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(_SLOT_ATTENTION, _slot_attention)


# Attention mask of the pool a thread is decoding with (see ``_slot_attention``); per thread because the parts of
# a rollout decode concurrently with one model.
_SLOT_CONTEXT = threading.local()
_SLOT_ATTENTION = "seqgan_slots"


def _slot_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """HF attention function used while a :class:`_SlotTransformerDecoder` decodes: one query per row against the
    whole ``max_len`` key / value slots of its row, masked to the filled positions. Any other call (no slot
    pool active in this thread) is passed to HF's SDPA attention."""
    mask = getattr(_SLOT_CONTEXT, "mask", None)
    if mask is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    if (
        query.shape[2] != 1
        or attention_mask is not None
        or kwargs.get("softcap") is not None
        or kwargs.get("position_bias") is not None
        or kwargs.get("sliding_window") is not None
        or key.shape[2] != mask.shape[-1]
    ):
        raise NotImplementedError("slot attention: one query per row, no extra mask / bias / softcap")
    out = F.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, scale=scaling, enable_gqa=key.shape[1] != query.shape[1]
    )
    return out.transpose(1, 2).contiguous(), None


@functools.cache
def _slot_layer_class() -> type:
    """An HF ``DynamicLayer`` whose keys / values live in a :class:`_SlotPool` (defined on first use so that
    importing this module does not import ``transformers``)."""
    from transformers.cache_utils import DynamicLayer

    class SlotLayer(DynamicLayer):
        def __init__(self, pool: _SlotPool, index: int) -> None:
            super().__init__()
            self.pool, self.index = pool, index

        def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
            self.is_initialized = True

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
            self.is_initialized = True
            self.keys, self.values = self.pool.write(self.index, key_states, value_states)
            return self.keys, self.values

    return SlotLayer


class _SlotState:
    """Decoding state of :class:`_SlotTransformerDecoder`: the slot pool and the HF cache that reads it."""

    def __init__(self, pool: _SlotPool, cache: Any) -> None:
        self.pool, self.cache = pool, cache


class _SlotTransformerDecoder(_Decoder):
    """:class:`TransformerGenerator` fast path: the HF base model (no LM head) with a :class:`_SlotPool` cache,
    the LM head fused with sampling. Used only if a numerical check against ``generator.step`` passes."""

    compact_fraction = 0.25  # compaction copies the whole cache: tolerate some finished rows first

    def __init__(self, generator: Generator, base: nn.Module, head: nn.Linear, temperature: float) -> None:
        self.g, self.base = generator, base
        config = generator.model.config.get_text_config(decoder=True)
        self.num_layers = int(config.num_hidden_layers)
        self.sampler = _FusedSampler(head.weight, head.bias, temperature, generator.never_sample)
        self.max_len = generator.max_positions or 0
        width = int(getattr(config, "hidden_size", 0) or getattr(config, "n_embd", 0) or 128)
        self.row_block = max(256, _ACTIVATION_ELEMENTS // (4 * width))  # MLP activations of a block: 4 MiB
        self._pool: _SlotPool | None = None
        self._attn: str | None = None  # the model's attention implementation while the context is open
        self._swapped: list[tuple[nn.Module, str, nn.Module]] = []  # GELU modules replaced while it is open
        from seqgan.models.transformer import cache_kwargs

        self.cache_arg = functools.partial(cache_kwargs, base)

    @classmethod
    def create(cls, generator: Generator, temperature: float) -> _SlotTransformerDecoder | None:
        model = generator.model
        base = getattr(model, "base_model", None)
        head = model.get_output_embeddings()
        if base is None or base is model or not isinstance(head, nn.Linear):
            return None
        try:
            from transformers.cache_utils import DynamicCache, DynamicLayer

            if {type(layer) for layer in DynamicCache(config=model.config).layers} != {DynamicLayer}:
                return None  # sliding-window / linear-attention layers: use the generic path
            decoder = cls(generator, base, head, temperature)
            with decoder:
                agrees = decoder._agrees_with_step(head)
            return decoder if agrees else None
        except Exception:  # any HF variant this adapter does not understand falls back to ``step``
            return None

    def row_bytes(self, seq_len: int) -> int:
        """Bytes of key / value slots per decoding row (float32)."""
        config = self.g.model.config.get_text_config(decoder=True)
        width = int(getattr(config, "hidden_size", 0) or getattr(config, "n_embd", 0))
        heads = int(getattr(config, "num_attention_heads", 1) or 1)
        kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
        head_dim = int(getattr(config, "head_dim", None) or width // heads)
        return 2 * self.num_layers * seq_len * head_dim * kv_heads * 4

    def init(self, n: int, capacity: int | None = None, seq_len: int | None = None) -> _SlotState:
        """``n`` empty rows, room for ``capacity``; the previous pool's buffers are reused when they are large
        enough (chunks of one rollout), which spares the memory's first-touch cost."""
        from transformers.cache_utils import Cache

        capacity, seq_len = max(n, capacity or n), seq_len or self.max_len
        pool = self._pool
        if pool is None or pool.capacity < capacity or pool.max_len != seq_len:
            pool = self._pool = _SlotPool(self.num_layers, capacity, seq_len)
        pool.reset(n)
        layer_cls = _slot_layer_class()
        return _SlotState(pool, Cache(layers=[layer_cls(pool, i) for i in range(self.num_layers)]))

    def step(self, tokens: torch.Tensor, state: _SlotState) -> tuple[torch.Tensor, _SlotState]:
        pool = state.pool
        if tokens.shape[0] != pool.n:
            raise ValueError(f"expected {pool.n} tokens, got {tokens.shape[0]}")
        if self._attn is None:
            raise RuntimeError("decode inside `with decoder:` (it installs the masked slot attention)")
        n = pool.n
        positions = torch.full((n, 1), pool.length, dtype=torch.long, device=tokens.device)
        _SLOT_CONTEXT.mask = pool.mask(tokens.device)
        try:
            feats = None
            for lo in range(0, n, self.row_block):  # row blocks keep the activations in cache
                pool.lo, pool.hi = lo, min(n, lo + self.row_block)
                out = self.base(
                    input_ids=tokens[pool.lo : pool.hi, None],
                    position_ids=positions[pool.lo : pool.hi],
                    use_cache=True,
                    **self.cache_arg(state.cache),
                ).last_hidden_state[:, -1]
                if feats is None:
                    if pool.hi == n:
                        feats = out
                        break
                    feats = out.new_empty(n, out.shape[1])
                feats[pool.lo : pool.hi] = out
        finally:
            _SLOT_CONTEXT.mask = None
        pool.length += 1
        return feats, state

    def fork(self) -> _SlotTransformerDecoder:
        twin = super().fork()
        twin._pool = None  # own key / value slots
        return twin

    def __enter__(self) -> _SlotTransformerDecoder:
        """While decoding: the model's attention is :func:`_slot_attention`, and GPT-2's ``gelu_new`` (eight
        elementwise kernels) is HF's ``GELUTanh`` (one fused kernel, the same tanh approximation); both are
        restored on exit."""
        self._swapped = []
        model = self.g.model
        self._attn = model.config._attn_implementation
        _register_slot_attention()
        model.set_attn_implementation(_SLOT_ATTENTION)
        try:
            from transformers.activations import GELUTanh, NewGELUActivation
        except ImportError:
            return self
        for module in model.modules():
            for name, child in module.named_children():
                if type(child) is NewGELUActivation:
                    self._swapped.append((module, name, child))
                    setattr(module, name, GELUTanh())
        return self

    def __exit__(self, *exc: object) -> None:
        for module, name, child in self._swapped:
            setattr(module, name, child)
        self._swapped = []
        if self._attn is not None:
            self.g.model.set_attn_implementation(self._attn)
            self._attn = None
        self._pool = None  # the slots are freed with the decoder's last use

    def rearrange(
        self, state: _SlotState, n: int, keep: torch.Tensor | None, src: torch.Tensor
    ) -> _SlotState:
        state.pool.rearrange(keep, src)
        return state

    def _agrees_with_step(self, head: nn.Linear) -> bool:
        """``head(features)`` equals ``generator.step``'s logits over a few steps (with a row copy between)."""
        g = self.g
        seq = torch.randint(0, g.vocab_size, (2, 3), generator=torch.Generator().manual_seed(0)).to(g.device)
        was_training = g.training
        g.eval()
        try:
            ref_state, state = g.init_state(2), self.init(2, capacity=3, seq_len=3)
            for s in range(3):
                ref, ref_state = g.step(seq[:, s], ref_state)
                feats, state = self.step(seq[:, s], state)
                if not torch.allclose(head(feats).float(), ref.float(), atol=1e-4, rtol=1e-4):
                    return False
                if s == 0:  # exercise the slot copy: rows become [0, 1, 0]
                    state = self.rearrange(state, 2, None, torch.tensor([0], device=g.device))
                    ref_state = g.select_state(ref_state, torch.tensor([0, 1, 0], device=g.device))
                    seq = seq[[0, 1, 0]]
            return True
        finally:
            g.train(was_training)


def _is_plain(obj: Any, cls: type, *methods: str) -> bool:
    """``obj`` is a ``cls`` whose named methods are not overridden by a subclass."""
    return isinstance(obj, cls) and all(getattr(type(obj), m) is getattr(cls, m) for m in methods)


def make_decoder(generator: Generator, temperature: float, fast: bool = True):
    """The decoding adapter for ``generator``: a fused fast path for plain :class:`LSTMGenerator` and
    :class:`TransformerGenerator` (``fast``), else the generic ``step`` contract. Also used by
    :func:`seqgan.sampling.sample`."""
    from seqgan.models.lstm import LSTMGenerator

    if fast and _is_plain(generator, LSTMGenerator, "step", "forward", "init_state"):
        return _LSTMDecoder(generator, temperature)
    if fast and type(generator).__name__ == "TransformerGenerator":
        from seqgan.models.transformer import TransformerGenerator

        if _is_plain(generator, TransformerGenerator, "step", "forward", "init_state"):
            decoder = _SlotTransformerDecoder.create(generator, temperature)
            if decoder is not None:
                return decoder
    return _StepDecoder(generator, temperature)


# ---------------------------------------------------------------------------------------------- scoring
class _ModuleScorer:
    """Calls the discriminator on completed ``(N, T)`` id sequences.

    A discriminator with a true ``scores_by_sample`` attribute (a conditional discriminator bound to the batch's
    contexts, :class:`seqgan.conditional.BoundDiscriminator`) is called as ``d(seqs, b)``, ``b`` being the sample
    index of every row, so each completion is scored against its own sample's context; the whole-sequence call
    in :meth:`MonteCarloRollout.__call__` passes rows in sample order and needs no index.
    """

    def __init__(self, discriminator: nn.Module, tokens: torch.Tensor) -> None:
        self.d = discriminator
        self.by_sample = bool(getattr(discriminator, "scores_by_sample", False))

    def __call__(self, seqs: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.by_sample:
            return self.d(seqs, b).float().view(-1)
        return self.d(seqs).float().view(-1)


class _CNNScorer:
    """Exact, faster scores of :class:`CNNDiscriminator` (eval mode) on completions of prefixes of ``tokens``.

    The discriminator max-pools, per width ``k``, the windows that *start* on one of the sequence's ``L`` real
    (non-padding) tokens, reading zeros past the end. Completion ``(b, t)`` equals ``tokens[b, :t]`` on its
    first ``t`` positions, so every window that ends before ``t`` has the value it has on the sample: their max
    is a running max over the sample's windows (``prefix_max``). The remaining windows are sums of per-token,
    per-tap responses ``W_k[:, :, j] @ emb[v]`` looked up in a ``(k * (V + 1), n_k)`` table (row ``V``: the zero
    past the end) with one ``F.embedding_bag`` per width. ReLU, highway and output layer follow
    ``CNNDiscriminator.forward`` in eval mode. The first batch is checked against the module itself.
    """

    def __init__(self, d: nn.Module, tokens: torch.Tensor) -> None:
        self.d = d
        emb = d.embedding.weight.detach().float()  # (V, E)
        vocab = emb.shape[0]
        self.rows = vocab + 1  # table rows per tap; id ``vocab`` reads the zeros past the end of a sequence
        self.pad_id = d.pad_id
        self.widths = [conv.kernel_size[0] for conv in d.convs]
        self.kmax = max(self.widths)
        self.tables = []  # per width: (k * (V + 1), n_k); row j * (V + 1) + v is W_k[:, :, j] @ emb[v]
        self.biases = []
        for conv in d.convs:
            w = conv.weight.detach().float()  # (n, E, k)
            k = w.shape[2]
            table = torch.zeros(k, self.rows, w.shape[0], device=emb.device)
            table[:, :vocab] = torch.einsum("ve,nej->jvn", emb, w)
            self.tables.append(table.view(k * self.rows, w.shape[0]))
            self.biases.append(conv.bias.detach().float() if conv.bias is not None else None)
        # running max over the sample's own windows: prefix_max[k][b, t] = max over windows ending before t
        x = d.embedding(tokens).float().transpose(1, 2)  # (B, E, T)
        seq_len = tokens.shape[1]
        self.prefix_max = []
        for conv, k in zip(d.convs, self.widths, strict=True):
            run = conv(x).cummax(dim=2).values.transpose(1, 2)  # (B, T - k + 1, n)
            pm = torch.full((tokens.shape[0], seq_len, run.shape[2]), float("-inf"), device=tokens.device)
            pm[:, k:] = run[:, : seq_len - k]  # prefix t covers windows 0 .. t - k
            self.prefix_max.append(pm)
        if isinstance(d.highway, nn.Identity):
            self.hw_weight = None
        else:
            hw = d.highway
            self.hw_weight = torch.cat([hw.transform.weight, hw.gate.weight]).detach().float().t()  # (F, 2F)
            self.hw_bias = torch.cat([hw.transform.bias, hw.gate.bias]).detach().float()
        self.out_weight = d.out.weight.detach().float().t()  # (F, 1)
        self.out_bias = d.out.bias.detach().float()
        self.verified = False
        self.fallback: _ModuleScorer | None = None

    def __call__(self, seqs: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``(N, T)`` completions of prefix ``t`` ``(N,)`` of sample ``b`` ``(N,)`` -> ``(N,)`` logits."""
        if self.fallback is not None:
            return self.fallback(seqs, b, t)
        logits = self._logits(seqs, b, t)
        if not self.verified:  # guard against a discriminator whose computation differs from this replica
            self.verified = True
            ref = self.d(seqs[:8]).float().view(-1)
            if not torch.allclose(logits[:8], ref, rtol=1e-4, atol=1e-4):
                warnings.warn(
                    "MonteCarloRollout: the fast CNN-discriminator scorer disagrees with the module "
                    f"(max diff {float((logits[:8] - ref).abs().max()):.3g}); scoring with the module instead",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self.fallback = _ModuleScorer(self.d, seqs)
                return self.fallback(seqs, b, t)
        return logits

    def _logits(self, seqs: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        n, seq_len = seqs.shape
        device = seqs.device
        t_min = int(t.min())
        flat_bt = b * seq_len + t
        # windows start on the first L real tokens (at least one), as CNNDiscriminator.features
        if self.pad_id is None:
            lengths = torch.full((n,), seq_len, device=device)
        else:
            lengths = (seqs != self.pad_id).sum(dim=1).clamp(min=1)
        stop = int(lengths.max())  # no window starts after the longest completion's last real token
        short = (lengths < stop).nonzero().squeeze(1)  # rows with fewer windows than the longest
        ext = torch.cat([seqs, seqs.new_full((n, self.kmax - 1), self.rows - 1)], dim=1)  # zeros past the end
        pooled = []
        for k, table, bias, pm in zip(self.widths, self.tables, self.biases, self.prefix_max, strict=True):
            first = min(max(0, t_min - k + 1), stop - 1)  # first window start that can read a sampled token
            windows = stop - first  # starts first .. stop - 1
            ids = ext[:, first : stop + k - 1].unfold(1, k, 1)  # (N, windows, k)
            ids = ids + torch.arange(k, device=device) * self.rows
            vals = F.embedding_bag(ids.reshape(-1, k), table, mode="sum").view(n, windows, -1)
            new = vals.amax(1)
            if short.numel():  # windows starting past a row's last real token do not count
                starts = torch.arange(first, stop, device=device)
                sub = vals[short].masked_fill_(
                    (starts[None, :] >= lengths[short, None])[:, :, None], float("-inf")
                )
                new[short] = sub.amax(1)
            if bias is not None:
                new = new + bias
            prefix = pm.view(-1, pm.shape[2]).index_select(0, flat_bt)  # (N, n_k)
            pooled.append(torch.maximum(new, prefix))
        x = torch.relu(torch.cat(pooled, dim=1))  # (N, F)
        if self.hw_weight is not None:
            hg = torch.addmm(self.hw_bias, x, self.hw_weight)  # (N, 2F)
            h, g = hg.chunk(2, dim=1)
            g = torch.sigmoid(g)
            x = x + g * (torch.relu(h) - x)  # g * relu(W x) + (1 - g) * x
        return torch.addmm(self.out_bias, x, self.out_weight).view(-1)


def _make_scorer(discriminator: nn.Module, tokens: torch.Tensor, lengths: torch.Tensor, fast: bool):
    from seqgan.models.discriminator import CNNDiscriminator, Highway

    d = discriminator
    if (
        fast
        and _is_plain(d, CNNDiscriminator, "forward", "features", "embed", "lengths")
        and (isinstance(d.highway, nn.Identity) or _is_plain(d.highway, Highway, "forward"))
        and all(c.stride == (1,) and c.padding == (0,) and c.dilation == (1,) for c in d.convs)
        and tokens.shape[1] >= d.min_len
        # the prefixes must be real tokens for the discriminator too (no padding id inside them)
        and (
            d.pad_id is None
            or not bool(
                (
                    (tokens == d.pad_id)
                    & (torch.arange(tokens.shape[1], device=tokens.device) < lengths[:, None] - 1)
                ).any()
            )
        )
    ):
        return _CNNScorer(d, tokens)
    return _ModuleScorer(d, tokens)


# ---------------------------------------------------------------------------------------------- the engine
class MonteCarloRollout:
    """SeqGAN's Monte-Carlo rollout reward (Yu et al. 2017, eq. 4) with a lagged rollout policy.

    Args:
        generator: the generator being trained; the rollout policy starts as a deep copy of it.
        update_rate: SeqGAN's ``update_rate``: after each generator update, :meth:`update_policy` sets
            ``beta <- update_rate * beta + (1 - update_rate) * theta``. 0 rolls out with the generator itself
            (no copy is kept, ``policy`` *is* the generator).
        temperature: softmax temperature of the continuations (the generator's ``never_sample`` ids are
            always excluded), as in :func:`seqgan.sampling.sample`.
        max_rows: most decoding rows in one chunk (None: no cap); a sample needs ``1 + R * (T - 1)`` rows (its
            teacher row and its completions), so a chunk holds ``max(1, max_rows // (1 + R * (T - 1)))`` samples.
            The transformer fast path also keeps a chunk's key / value slots under 256 MiB.
        score_batch: completions scored by the discriminator per call.
        rng: default ``torch.Generator`` for the continuation draws (the global RNG when None).
        fast: use the fused LSTM / transformer decoders and the CNN-discriminator scorer when they apply
            (``False`` forces the generic ``step`` / ``discriminator(ids)`` paths; results agree in
            distribution, and exactly for the scores).
        parts: with a fused decoder, the batch is split into this many parts of consecutive samples, each with
            its own random stream seeded from ``rng``; on a CPU running ``n <= parts`` torch threads, ``n`` parts
            are decoded and scored at once, one thread each (decoding is many small kernels, which scale across
            independent parts better than inside each kernel). The draws depend on ``parts``, not on the thread
            count. The generic path decodes the batch in one part.
    """

    def __init__(
        self,
        generator: Generator,
        update_rate: float = 0.8,
        temperature: float = 1.0,
        max_rows: int | None = 16384,
        score_batch: int = 512,
        rng: torch.Generator | None = None,
        fast: bool = True,
        parts: int = 2,
    ) -> None:
        if parts < 1:
            raise ValueError(f"parts must be >= 1, got {parts}")
        if not 0.0 <= update_rate < 1.0:
            raise ValueError(f"update_rate must be in [0, 1), got {update_rate}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if (max_rows is not None and max_rows < 1) or score_batch < 1:
            raise ValueError("max_rows and score_batch must be positive")
        self.update_rate = float(update_rate)
        self.temperature = float(temperature)
        self.max_rows = None if max_rows is None else int(max_rows)
        self.score_batch = int(score_batch)
        self.rng = rng
        self.fast = fast
        self.parts = int(parts)
        if self.update_rate == 0.0:
            self.policy = generator
        else:
            self.policy = copy.deepcopy(generator)
            self.policy.requires_grad_(False)

    # ------------------------------------------------------------------ policy
    @torch.no_grad()
    def update_policy(self, generator: Generator) -> None:
        """``beta <- rate * beta + (1 - rate) * theta`` for every parameter (buffers are copied); with rate 0 the
        policy becomes ``generator`` itself."""
        if self.update_rate == 0.0:
            self.policy = generator
            return
        rate = self.update_rate
        own, new = list(self.policy.parameters()), list(generator.parameters())
        if len(own) != len(new):
            raise ValueError("update_policy: the generator's architecture differs from the rollout policy's")
        for p, q in zip(own, new, strict=True):
            p.copy_(rate * p + (1.0 - rate) * q.detach())
        for p, q in zip(self.policy.buffers(), generator.buffers(), strict=True):
            p.copy_(q)

    def state_dict(self) -> dict:
        """The policy's weights (None when it is the generator itself) and the update rate."""
        return {
            "update_rate": self.update_rate,
            "policy": None if self.update_rate == 0.0 else self.policy.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        if (state["policy"] is None) != (self.update_rate == 0.0):
            raise ValueError("rollout state was saved with a different update_rate (lagged copy vs none)")
        if state["policy"] is not None:
            self.policy.load_state_dict(state["policy"])

    # ------------------------------------------------------------------ rewards
    @torch.no_grad()
    def __call__(
        self,
        tokens: torch.Tensor,
        discriminator: nn.Module,
        num_rollouts: int,
        rng: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Rewards of sampled sequences.

        Args:
            tokens: ``(B, T)`` sampled ids (no BOS), ``pad_id`` after the first EOS.
            discriminator: ``(N, T)`` ids -> ``(N,)`` logits (real = positive), run in eval mode.
            num_rollouts: ``R``, completions per prefix.
            rng: ``torch.Generator`` for the draws; defaults to the one given at construction.
        Returns:
            ``(B, T)`` float rewards: column ``t - 1`` (token ``y_t``) holds the mean of ``sigmoid(D)`` over the
            ``R`` completions of ``y_1 .. y_t`` for ``t < L`` (``L`` = real tokens, EOS included), column
            ``L - 1`` holds ``sigmoid(D(tokens))``, later columns 0.
        """
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be (B, T), got shape {tuple(tokens.shape)}")
        if num_rollouts < 1:
            raise ValueError(f"num_rollouts must be >= 1, got {num_rollouts}")
        rng = self.rng if rng is None else rng
        policy = self.policy
        tokens = tokens.to(policy.device)
        batch, seq_len = tokens.shape
        lengths = sequence_mask(tokens, policy.eos_id).sum(dim=1)  # (B,) real tokens, >= 1
        was_training = (policy.training, discriminator.training)
        policy.eval()
        discriminator.eval()
        try:
            rewards = torch.zeros(batch, seq_len, device=tokens.device)
            whole = torch.sigmoid(discriminator(tokens).float().view(-1))  # (B,)
            rewards.scatter_(1, (lengths - 1)[:, None], whole[:, None])
            if seq_len > 1 and bool((lengths > 1).any()):
                rewards[:, :-1] += self._rollout_means(
                    policy, discriminator, tokens, lengths, num_rollouts, rng
                )
        finally:
            policy.train(was_training[0])
            discriminator.train(was_training[1])
        return rewards

    def _rollout_means(
        self,
        policy: Generator,
        discriminator: nn.Module,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        num_rollouts: int,
        rng: torch.Generator | None,
    ) -> torch.Tensor:
        """``(B, T-1)`` mean completion scores, the batch split into :attr:`parts` (see the class docstring)."""
        batch = tokens.shape[0]
        decoder = make_decoder(policy, self.temperature, self.fast)
        num_parts = (
            min(self.parts, batch) if isinstance(decoder, (_LSTMDecoder, _SlotTransformerDecoder)) else 1
        )
        bounds = [(i * batch // num_parts, (i + 1) * batch // num_parts) for i in range(num_parts)]
        if (
            num_parts > 1
        ):  # one random stream per part, drawn from ``rng``: the same draws for any thread count
            seeds = torch.randint(0, 2**62, (num_parts,), generator=rng, device=tokens.device).tolist()
            rngs = [torch.Generator(device=tokens.device).manual_seed(seed) for seed in seeds]
        else:
            rngs = [rng]
        scorer = _make_scorer(discriminator, tokens, lengths, self.fast)

        @torch.no_grad()  # grad mode is per thread
        def part(i: int, part_decoder) -> torch.Tensor:
            lo, hi = bounds[i]
            comp = self._complete(policy, part_decoder, tokens[lo:hi], lengths[lo:hi], num_rollouts, rngs[i])
            return self._score(scorer, tokens[lo:hi], lengths[lo:hi], comp, num_rollouts, offset=lo)

        threads = torch.get_num_threads()
        with decoder:
            if num_parts == 1 or tokens.device.type != "cpu" or threads > num_parts:
                return torch.cat([part(i, decoder) for i in range(num_parts)])
            # as many concurrent parts as threads, one thread each: the many small kernels of decoding scale
            # better across parts than inside each kernel
            decoders = [decoder] + [decoder.fork() for _ in range(num_parts - 1)]
            torch.set_num_threads(1)
            try:
                with ThreadPoolExecutor(max_workers=threads) as pool:
                    return torch.cat(list(pool.map(part, range(num_parts), decoders)))
            finally:
                torch.set_num_threads(threads)

    def _complete(
        self,
        policy: Generator,
        decoder,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        num_rollouts: int,
        rng: torch.Generator | None,
    ) -> torch.Tensor:
        """All completions, ``(B * (T - 1) * R, T)`` in ``(b, t, r)`` row order (see the module docstring);
        ``decoder`` from :func:`make_decoder`, entered."""
        batch, seq_len = tokens.shape
        per_sample = 1 + num_rollouts * (seq_len - 1)
        chunk = batch if self.max_rows is None else max(1, self.max_rows // per_sample)
        if hasattr(decoder, "row_bytes"):  # key / value slots: at most _SLOT_BYTES per chunk
            chunk = min(chunk, max(1, _SLOT_BYTES // (decoder.row_bytes(seq_len) * per_sample)))
        parts = []
        for start in range(0, batch, chunk):
            stop = min(batch, start + chunk)
            parts.append(
                _decode_chunk(policy, decoder, tokens[start:stop], lengths[start:stop], num_rollouts, rng)
            )
        comp = torch.cat(parts) if len(parts) > 1 else parts[0]  # (B, T-1, R, T) sampled part
        # real prefix: columns < t of the completions of prefix t
        col = torch.arange(seq_len, device=tokens.device)
        prefix = col[None, :] < torch.arange(1, seq_len, device=tokens.device)[:, None]  # (T-1, T)
        comp = torch.where(prefix[None, :, None, :], tokens[:, None, None, :], comp)
        return comp.reshape(-1, seq_len)

    def _score(
        self,
        scorer,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        completions: torch.Tensor,
        num_rollouts: int,
        offset: int = 0,
    ) -> torch.Tensor:
        """``(B, T-1)`` mean ``sigmoid(D)`` over the ``R`` completions of each needed prefix (0 elsewhere);
        ``tokens`` are samples ``offset ..`` of the batch ``scorer`` was built for."""
        batch, seq_len = tokens.shape
        r = num_rollouts
        t_idx = torch.arange(1, seq_len, device=tokens.device)
        needed = t_idx[None, :] < lengths[:, None]  # (B, T-1)
        tt, bb = needed.t().nonzero(as_tuple=True)  # prefixes in (t, b) order: similar lengths together
        t_of, b_of = (tt + 1).repeat_interleave(r), bb.repeat_interleave(r)
        rows = ((bb * (seq_len - 1) + tt)[:, None] * r + torch.arange(r, device=tokens.device)).view(-1)
        probs = torch.empty(rows.numel(), device=tokens.device)
        for start in range(0, rows.numel(), self.score_batch):
            sl = slice(start, start + self.score_batch)
            probs[sl] = torch.sigmoid(
                scorer(completions.index_select(0, rows[sl]), b_of[sl] + offset, t_of[sl])
            )
        means = torch.zeros(batch, seq_len - 1, device=tokens.device)
        means[bb, tt] = probs.view(-1, r).mean(dim=1)
        return means


def _decode_chunk(
    policy: Generator,
    decoder,
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    num_rollouts: int,
    rng: torch.Generator | None,
) -> torch.Tensor:
    """Samples the continuations of every needed prefix of ``tokens`` ``(Bc, T)``.

    Returns ``(Bc, T - 1, R, T)`` ids: entry ``[b, t - 1, r, s]`` for ``s >= t`` is the token sampled at column
    ``s`` by completion ``r`` of prefix ``t`` (``pad_id`` after its EOS and for unneeded prefixes); columns
    ``< t`` are left as ``pad_id`` for the caller to fill with the prefix.
    """
    nb, seq_len = tokens.shape
    r = num_rollouts
    device = tokens.device
    pad, eos = policy.pad_id, policy.eos_id
    comp = torch.full((nb * (seq_len - 1) * r, seq_len), pad, dtype=torch.long, device=device)
    teacher_in = policy.teacher_inputs(tokens)  # (Bc, T): [BOS, y_1 .. y_{T-1}]
    sampler = decoder.sampler
    arange_r = torch.arange(r, device=device)

    # Rows: [teacher rows | completion rows]; teacher rows stay first (appends go to the end, compaction keeps
    # order). Per completion row: its row id in ``comp`` and its last token.
    teach_b = torch.arange(nb, device=device)  # sample of each teacher row
    row_id = torch.empty(0, dtype=torch.long, device=device)
    last = torch.empty(0, dtype=torch.long, device=device)
    alive = torch.ones(nb, dtype=torch.bool, device=device)  # over all rows
    alive[lengths <= 1] = False  # samples without a prefix to complete
    state = decoder.init(nb, capacity=nb * (1 + r * (seq_len - 1)), seq_len=seq_len)
    for s in range(seq_len):
        n_t = teach_b.numel()
        n = n_t + row_id.numel()
        if not bool(alive.any()):
            break
        inputs = torch.cat([teacher_in[teach_b, s], last])
        out, state = decoder.step(inputs, state)  # (n, H) features or (n, V) logits
        # continuing rows: next token at column s
        live_c = alive[n_t:].nonzero().squeeze(1)
        if live_c.numel():
            tok = sampler(out[n_t + live_c], 1, rng).squeeze(1)
            comp[row_id[live_c], s] = tok
            last[live_c] = tok
            if eos is not None:
                alive[n_t + live_c] = tok != eos
        # teacher rows that just read y_s (s >= 1): the R completions of prefix t = s join
        src = torch.empty(0, dtype=torch.long, device=device)
        new_ids = src
        new_tok = src
        if s >= 1:
            live_t = alive[:n_t].nonzero().squeeze(1)
            if live_t.numel():
                draws = sampler(out[live_t], r, rng)  # (nj, R)
                ids = ((teach_b[live_t] * (seq_len - 1) + (s - 1))[:, None] * r + arange_r).view(-1)
                flat = draws.view(-1)
                comp[ids, s] = flat
                keep = flat != eos if eos is not None else torch.ones_like(flat, dtype=torch.bool)
                src = live_t.repeat_interleave(r)[keep]
                new_ids, new_tok = ids[keep], flat[keep]
        if s == seq_len - 1:
            break
        # teacher rows are needed while a later prefix t = s + 1 < L_b remains
        alive[:n_t] &= lengths[teach_b] - 1 > s
        dead = n - int(alive.sum())
        keep_rows = None
        if dead and dead > decoder.compact_fraction * n:
            keep_rows = alive.nonzero().squeeze(1)
        if keep_rows is None and src.numel() == 0:
            continue
        state = decoder.rearrange(state, n, keep_rows, src)
        if keep_rows is not None:
            kt = keep_rows[keep_rows < n_t]
            kc = keep_rows[keep_rows >= n_t] - n_t
            teach_b, row_id, last = teach_b[kt], row_id[kc], last[kc]
            alive = torch.ones(keep_rows.numel(), dtype=torch.bool, device=device)
        row_id = torch.cat([row_id, new_ids])
        last = torch.cat([last, new_tok])
        alive = torch.cat([alive, torch.ones(new_ids.numel(), dtype=torch.bool, device=device)])
    return comp.view(nb, seq_len - 1, r, seq_len)
