"""Everything that touches Hugging Face ``transformers`` internals, behind one version gate.

Supported: ``transformers >= 5.0, < 6`` (:data:`SUPPORTED_VERSIONS`); importing this module with another version
raises ``ImportError``. The version is parsed once (:data:`TRANSFORMERS_VERSION`); :data:`CACHE_KWARG` is the
keyword through which a model forward takes (and an output returns) its key / value cache: ``cache`` from 5.24,
``past_key_values`` before.

Cache operations of :class:`~seqgan.models.transformer.TransformerGenerator` (its states hold an HF
``DynamicCache`` whose per-layer ``DynamicLayer`` objects keep keys / values ``(B, H, length, D)``):
:func:`new_cache`, :func:`fork_cache` (an independent copy sharing the never-written-in-place tensors),
:func:`truncate_cache`, :func:`select_cache_rows`, :func:`cache_kwargs`, :func:`output_cache`;
:func:`attn_implementation` (the model's attention implementation, a private config field); and
:func:`silence_padding_warning` for a wrapped model (right padding after EOS is harmless under causal attention).

The transformer fast decoding path, :class:`SlotTransformerDecoder` (``TransformerGenerator.fast_decoder``):

* the HF base model (no LM head) decodes one token per row; the LM head is fused with the draw
  (:class:`~seqgan.decoding.samplers.FusedSampler`);
* keys / values live in preallocated slots (:class:`SlotPool`) instead of a cache that is copied every step: a
  ``DynamicLayer`` subclass writes into the slots, and an attention function registered with HF's
  ``AttentionInterface`` (installed on the model for the duration of a ``with decoder:`` block) attends over a
  row's whole slots with a mask of the filled positions; the slots are reused by the next chunk;
* rows run through the base model in blocks (activations stay in cache), and GPT-2's ``gelu_new`` (eight
  elementwise kernels) is evaluated as ``F.gelu(approximate="tanh")`` (one fused kernel, the same formula)
  while decoding.

It applies to models with a separate base model and a linear LM head, attention dispatched through
``AttentionInterface`` and plain ``DynamicLayer`` cache layers (GPT-2, Llama, Qwen2, Mistral without a sliding
window, ...), and only if a numerical self-check against ``generator.step`` passes; otherwise
:meth:`SlotTransformerDecoder.create` returns None and the caller decodes through ``step``.
"""

from __future__ import annotations

import copy
import functools
import re
import threading
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
import transformers
from torch import nn

SUPPORTED_VERSIONS = ">=5.0,<6"


def _parse_version(text: str) -> tuple[int, int]:
    """``"5.25.0"`` (or ``"5.26.0.dev0"``) -> ``(5, 25)``."""
    match = re.match(r"(\d+)\.(\d+)", text)
    if match is None:
        raise ImportError(f"seqgan: cannot parse the transformers version {text!r}")
    return int(match[1]), int(match[2])


TRANSFORMERS_VERSION = _parse_version(transformers.__version__)
if not (5, 0) <= TRANSFORMERS_VERSION < (6, 0):
    raise ImportError(
        f"seqgan's transformer support needs transformers {SUPPORTED_VERSIONS}; found {transformers.__version__}"
    )
CACHE_KWARG = "cache" if TRANSFORMERS_VERSION >= (5, 24) else "past_key_values"

# internals, imported once the version is known to be supported
from transformers import AttentionInterface, PreTrainedModel  # noqa: E402
from transformers.activations import NewGELUActivation  # noqa: E402
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer, DynamicSlidingWindowLayer  # noqa: E402
from transformers.integrations.sdpa_attention import sdpa_attention_forward  # noqa: E402

from seqgan.decoding.decoders import Decoder  # noqa: E402
from seqgan.decoding.samplers import FusedSampler  # noqa: E402

if TYPE_CHECKING:
    from seqgan.models.transformer import TransformerGenerator

__all__ = [
    "CACHE_KWARG",
    "SUPPORTED_VERSIONS",
    "TRANSFORMERS_VERSION",
    "Cache",
    "attn_implementation",
    "SlotPool",
    "SlotTransformerDecoder",
    "cache_kwargs",
    "fork_cache",
    "new_cache",
    "output_cache",
    "select_cache_rows",
    "silence_padding_warning",
    "truncate_cache",
]

_ACTIVATION_ELEMENTS = 2**20  # fast path: rows per model call = this / (4 * width)


# ---------------------------------------------------------------------------------------------- caches
# Cache layers whose ``update`` / ``crop`` / ``batch_select_indices`` *replace* their tensors instead of writing into
# them, so a shallow copy of the layer is an independent fork (see ``fork_cache``).
_FORKABLE_LAYERS = (DynamicLayer, DynamicSlidingWindowLayer)


def new_cache(config: Any, record_past: bool = False) -> Cache:
    """An empty ``DynamicCache`` for a model with ``config``.

    Args:
        config: the model's config (its layer types decide the cache layers).
        record_past: sliding-window layers keep every position until :func:`truncate_cache` (so that a cache
            filled by one pass over a sequence can be cut back to any prefix).
    """
    cache = DynamicCache(config=config)
    if record_past:
        cache.activate_past_recording()
    return cache


def fork_cache(cache: Cache) -> Cache:
    """An independent copy of ``cache`` that shares the (never written in place) key / value tensors.

    ``DynamicLayer.update`` concatenates into new tensors and ``crop`` / ``batch_select_indices`` slice into new
    tensors, so copying the layer objects suffices. Other layer kinds fall back to a deep copy.
    """
    if type(cache) is DynamicCache and all(type(layer) in _FORKABLE_LAYERS for layer in cache.layers):
        forked = copy.copy(cache)
        forked.layers = [copy.copy(layer) for layer in cache.layers]
        return forked
    return copy.deepcopy(cache)


def truncate_cache(cache: Cache, remove: int) -> None:
    """Drops the last ``remove`` positions of every layer of ``cache``, in place (nothing when 0)."""
    if remove > 0:
        cache.crop(-remove)  # transformers 5.x: a negative argument removes that many trailing tokens


def select_cache_rows(cache: Cache, index: torch.Tensor) -> None:
    """Keeps rows ``index`` ``(B',)`` of ``cache`` (repeats allowed), in place."""
    cache.batch_select_indices(index)


def cache_kwargs(cache: Cache | None) -> dict[str, Cache | None]:
    """The keyword argument that passes a key / value cache to a model forward (see :data:`CACHE_KWARG`)."""
    return {CACHE_KWARG: cache}


def output_cache(out: Any) -> Cache:
    """The key / value cache of a model output (see :data:`CACHE_KWARG`)."""
    return getattr(out, CACHE_KWARG)


def attn_implementation(model: nn.Module) -> str | None:
    """The attention implementation ``model`` runs (``"sdpa"``, ``"eager"``, ...; None if none is set)."""
    return getattr(model.config, "_attn_implementation", None)


def _no_padding_warning(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> None:
    return None


def silence_padding_warning(model: nn.Module) -> None:
    """Turns off HF's "input_ids may be padded and no attention mask" check on every ``PreTrainedModel`` inside
    ``model`` (an instance attribute; a fresh model still warns). Also spares the check's per-call host sync."""
    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            module.warn_if_padding_and_no_attention_mask = _no_padding_warning


# ---------------------------------------------------------------------------------------------- slots
class SlotPool:
    """Preallocated key / value slots for every attention layer of a transformer decoder.

    Layer ``i`` keeps ``keys[i]`` / ``values[i]`` of shape ``(capacity, heads, max_len, head_dim)``, zero-filled
    when created; rows ``[0, n)`` are in use and positions ``[0, length)`` are filled. A step writes position
    ``length`` of the ``n`` rows in place and attends over *all* ``max_len`` positions of its rows with a mask
    of the filled ones (:func:`_slot_attention`): whole rows are contiguous, which batched attention reads
    several times faster than a ``[:length + 1]`` slice of them, and every slot holds a finite number (zeros or
    keys / values of a finished row), so the masked positions weigh exactly 0. Decoding never copies the
    cache; rows are appended by copying their prefix (new completions), the buffer is compacted only when many
    rows have finished, and :meth:`reset` reuses the buffers for the next chunk.

    Args:
        num_layers: attention layers.
        capacity: most rows.
        max_len: most positions.
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
        whole ``max_len`` slots of the current rows, ``(n, heads, max_len, head_dim)`` each."""
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


class _SlotContext(threading.local):
    """Attention mask of the pool this thread is decoding with (per thread: the parts of a rollout may decode
    concurrently with one model); None outside :meth:`SlotTransformerDecoder.step`."""

    mask: torch.Tensor | None = None


_SLOT_CONTEXT = _SlotContext()
_SLOT_ATTENTION = "seqgan_slots"


def _slot_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """HF attention function used while a :class:`SlotTransformerDecoder` decodes: one query per row against the
    whole ``max_len`` key / value slots of its row, masked to the filled positions. Any other call (no slot
    pool active in this thread) is passed to HF's SDPA attention."""
    mask = _SLOT_CONTEXT.mask
    if mask is None:
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
    )  # (n, heads, 1, head_dim)
    return out.transpose(1, 2).contiguous(), None


@functools.cache
def _register_slot_attention() -> None:
    """Registers :func:`_slot_attention` under its name with HF (once per process; used only by models whose
    attention implementation is set to it)."""
    AttentionInterface.register(_SLOT_ATTENTION, _slot_attention)


class _SlotLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys / values live in layer ``index`` of a :class:`SlotPool`."""

    def __init__(self, pool: SlotPool, index: int) -> None:
        super().__init__()
        self.pool, self.index = pool, index

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        self.is_initialized = True
        self.keys, self.values = self.pool.write(self.index, key_states, value_states)
        return self.keys, self.values


class _GELUTanh(nn.Module):
    """``gelu_new``'s tanh approximation as one fused kernel (what HF's ``GELUTanh`` computes)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate="tanh")


class SlotState:
    """Decoding state of :class:`SlotTransformerDecoder`: the slot pool and the HF cache that reads it."""

    def __init__(self, pool: SlotPool, cache: Cache) -> None:
        self.pool, self.cache = pool, cache


class SlotTransformerDecoder(Decoder):
    """:class:`~seqgan.models.transformer.TransformerGenerator` fast path: the HF base model (no LM head) with a
    :class:`SlotPool` cache, the LM head fused with sampling. Build it with :meth:`create`.

    Args:
        generator: the transformer generator.
        base: its HF base model.
        head: its linear LM head.
        temperature: softmax temperature of the draws.
    """

    fused = True
    compact_fraction = 0.25  # compaction copies the whole cache: tolerate some finished rows first

    def __init__(
        self, generator: TransformerGenerator, base: nn.Module, head: nn.Linear, temperature: float
    ) -> None:
        self.g, self.base = generator, base
        config = generator.model.config.get_text_config(decoder=True)
        self.num_layers = int(config.num_hidden_layers)
        self.sampler = FusedSampler(head.weight, head.bias, temperature, generator.never_sample)
        self.max_len = generator.max_positions or 0
        width = int(getattr(config, "hidden_size", 0) or getattr(config, "n_embd", 0) or 128)
        self.row_block = max(256, _ACTIVATION_ELEMENTS // (4 * width))  # MLP activations of a block: 4 MiB
        self._pool: SlotPool | None = None
        self._attn: str | None = None  # the model's attention implementation while the context is open
        self._swapped: list[tuple[nn.Module, str, nn.Module]] = []  # GELU modules replaced while it is open

    @classmethod
    def create(cls, generator: TransformerGenerator, temperature: float) -> SlotTransformerDecoder | None:
        """The fast decoder for ``generator``, or None when it does not apply (see the module docstring and
        :meth:`try_create`, which also says why).

        Args:
            generator: a transformer generator.
            temperature: softmax temperature of the draws.
        """
        return cls.try_create(generator, temperature)[0]

    @classmethod
    def try_create(
        cls, generator: TransformerGenerator, temperature: float
    ) -> tuple[SlotTransformerDecoder | None, str | None]:
        """``(decoder, None)``, or ``(None, reason)`` when the fast path does not apply to ``generator``'s model.

        The checks read the model's structure, never its class name: a separate base model and a linear LM
        head, an integer layer count, plain ``DynamicLayer`` cache layers, attention dispatched through HF's
        ``AttentionInterface``, and a numerical self-check against ``generator.step``.
        """
        model = generator.model
        base = getattr(model, "base_model", None)
        head = model.get_output_embeddings()
        if base is None or base is model:
            return None, "no separate base model"
        if not isinstance(head, nn.Linear):
            return None, f"its LM head is a {type(head).__name__}, not one linear map"
        config = model.config.get_text_config(decoder=True)
        if not isinstance(getattr(config, "num_hidden_layers", None), int):
            return None, "its config has no integer num_hidden_layers"
        layers = {type(layer) for layer in DynamicCache(config=model.config).layers}
        if layers != {DynamicLayer}:
            names = ", ".join(sorted(kind.__name__ for kind in layers))
            return None, f"its cache has {names} layers (sliding-window or other kinds)"
        decoder = cls(generator, base, head, temperature)
        with decoder:
            if attn_implementation(model) != _SLOT_ATTENTION:
                return None, "it does not dispatch its attention through AttentionInterface"
            try:
                agrees = decoder._agrees_with_step(head)
            except NotImplementedError:
                # :func:`_slot_attention` refuses calls it cannot serve exactly (several queries, an extra mask,
                # softcapping, position bias, a sliding window): such a model decodes through ``step``. Only the
                # adapter's own refusal is caught; any other error is a real one and propagates.
                return (
                    None,
                    "its attention needs a mask, bias or softcap that the slot attention does not serve",
                )
        if not agrees:
            return None, "the slot decoder's logits differ from step()'s on the self-check"
        return decoder, None

    def row_bytes(self, seq_len: int) -> int:
        """Bytes of key / value slots per decoding row (float32)."""
        config = self.g.model.config.get_text_config(decoder=True)
        width = int(getattr(config, "hidden_size", 0) or getattr(config, "n_embd", 0))
        heads = int(getattr(config, "num_attention_heads", 1) or 1)
        kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
        head_dim = int(getattr(config, "head_dim", None) or width // heads)
        return 2 * self.num_layers * seq_len * head_dim * kv_heads * 4

    def init(self, n: int, capacity: int | None = None, seq_len: int | None = None) -> SlotState:
        """``n`` empty rows, room for ``capacity``; the previous pool's buffers are reused when they are large
        enough (chunks of one rollout), which spares the memory's first-touch cost."""
        capacity, seq_len = max(n, capacity or n), seq_len or self.max_len
        pool = self._pool
        if pool is None or pool.capacity < capacity or pool.max_len != seq_len:
            pool = self._pool = SlotPool(self.num_layers, capacity, seq_len)
        pool.reset(n)
        return SlotState(pool, Cache(layers=[_SlotLayer(pool, i) for i in range(self.num_layers)]))

    def step(self, tokens: torch.Tensor, state: SlotState) -> tuple[torch.Tensor, SlotState]:
        """Reads ``(n,)`` tokens; returns ``(n, D)`` final hidden states and the state (updated in place)."""
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
                    **cache_kwargs(state.cache),
                ).last_hidden_state[:, -1]  # (rows, D)
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

    def fork(self) -> SlotTransformerDecoder:
        twin = super().fork()
        twin._pool = None  # own key / value slots
        return twin

    def __enter__(self) -> SlotTransformerDecoder:
        """While decoding: the model's attention is :func:`_slot_attention`, and GPT-2's ``gelu_new`` (eight
        elementwise kernels) is ``F.gelu(approximate="tanh")`` (one fused kernel, the same tanh approximation);
        both are restored on exit."""
        self._swapped = []
        model = self.g.model
        self._attn = attn_implementation(model)
        _register_slot_attention()
        model.set_attn_implementation(_SLOT_ATTENTION)
        for module in model.modules():
            for name, child in module.named_children():
                if type(child) is NewGELUActivation:
                    self._swapped.append((module, name, child))
                    setattr(module, name, _GELUTanh())
        return self

    def __exit__(self, *exc: object) -> None:
        for module, name, child in self._swapped:
            setattr(module, name, child)
        self._swapped = []
        if self._attn is not None:
            self.g.model.set_attn_implementation(self._attn)
            self._attn = None
        self._pool = None  # the slots are freed with the decoder's last use

    def rearrange(self, state: SlotState, n: int, keep: torch.Tensor | None, src: torch.Tensor) -> SlotState:
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
