"""Conditional generators p(x | c): an LSTM encoder-decoder with attention and a transformer encoder-decoder.

Both read a context ``(B, Tc)`` (``ids EOS PAD ..``) and model a response with the unconditional generators'
conventions (:mod:`seqgan.models.base`): responses are stored without BOS, teacher forcing feeds
``[BOS, x_1 .. x_{T-1}]``, and incremental decoding starts from a state and is fed BOS first.

* :class:`Seq2SeqLSTM` (``generator.kind: seq2seq``): a shared token embedding, an LSTM encoder (packed, so
  padding never reaches its final state) whose final state starts an LSTM decoder, and Luong et al. (2015)
  dot-product attention over the encoder states: ``logits = W_o tanh(W_c [h_t; a_t])`` with
  ``a_t = sum_s softmax(h_t . e_s) e_s`` over real context positions. Li et al. 2017 (arXiv 1701.06547) use an
  attention encoder-decoder of this kind as the generator.
* :class:`Seq2SeqTransformer` (``generator.kind: seq2seq_transformer``): an encoder-decoder built from
  ``torch.nn`` transformer layers (pre-norm, learned positions) sized from the config, so nothing is downloaded.
  We chose an encoder-decoder over a decoder-only LM with the context as a prefix so that contexts and responses
  keep separate position ranges and padding (no left padding or prefix masks), and the same pair batches and
  state contract serve both models. Its ``step`` re-reads the decoded prefix (no key/value cache): responses
  are short (20-40 tokens), so the quadratic cost is small beside the vocabulary projection.

:class:`BoundGenerator` binds a conditional model to a batch of contexts and exposes the *unconditional*
:class:`~seqgan.models.base.Generator` contract, so :func:`seqgan.sampling.sample`,
:func:`seqgan.losses.sequence_nll` and :class:`~seqgan.rollout.MonteCarloRollout` work unchanged: its decoding
state carries the encoder memory, so ``select_state`` (which repeats rows for the rollouts) carries each row's
context along.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from seqgan.models.base import Generator

__all__ = [
    "ConditionalGenerator",
    "Seq2SeqLSTM",
    "Seq2SeqTransformer",
    "BoundGenerator",
    "as_conditional",
]


class ConditionalGenerator(nn.Module):
    """Contract of the conditional generators.

    ``forward(contexts, inputs) -> (B, T, V)`` teacher-forced logits; ``init_state(contexts)``;
    ``step(tokens, state) -> ((B, V) logits, state)``; ``select_state(state, index)``; ``spec()`` /
    ``from_spec()``; attributes ``vocab_size``, ``pad_id``, ``bos_id``, ``eos_id``.
    """

    vocab_size: int
    pad_id: int
    bos_id: int
    eos_id: int

    def context_mask(self, contexts: torch.Tensor) -> torch.Tensor:
        """``(B, Tc)`` True for real context tokens (up to and including the first EOS)."""
        is_eos = (contexts == self.eos_id).long()
        return (is_eos.cumsum(dim=1) - is_eos) == 0

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def spec(self) -> dict:
        raise NotImplementedError

    def bind(self, contexts: torch.Tensor) -> BoundGenerator:
        """This model conditioned on ``contexts`` ``(B, Tc)`` as an unconditional generator."""
        return BoundGenerator(self, contexts)


class Seq2SeqLSTM(ConditionalGenerator):
    """LSTM encoder-decoder with Luong dot-product attention (see the module docstring).

    State: ``(h, c, memory, mask)`` with ``h``/``c`` ``(L, B, H)``, ``memory`` ``(B, Tc, H)`` encoder states and
    ``mask`` ``(B, Tc)`` real context positions.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 64,
        hidden_dim: int = 128,
        num_layers: int = 1,
        dropout: float = 0.0,
        attention: bool = True,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
    ):
        super().__init__()
        self.vocab_size, self.embed_dim, self.hidden_dim = vocab_size, embed_dim, hidden_dim
        self.num_layers, self.dropout_p, self.attention = num_layers, dropout, attention
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        drop = dropout if num_layers > 1 else 0.0
        self.encoder = nn.LSTM(embed_dim, hidden_dim, num_layers, batch_first=True, dropout=drop)
        self.decoder = nn.LSTM(embed_dim, hidden_dim, num_layers, batch_first=True, dropout=drop)
        self.combine = nn.Linear(2 * hidden_dim, hidden_dim) if attention else None
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(hidden_dim, vocab_size)

    def encode(self, contexts: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(B, Tc)`` -> ``(h, c, memory, mask)`` (the initial decoding state)."""
        mask = self.context_mask(contexts)  # (B, Tc)
        lengths = mask.sum(dim=1).clamp(min=1)
        packed = pack_padded_sequence(
            self.embedding(contexts), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        out, (h, c) = self.encoder(packed)
        memory, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=contexts.shape[1])
        return h, c, memory, mask

    def _attend(self, dec: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, T, H)`` decoder outputs -> ``(B, T, H)`` attentional states (the decoder outputs without
        attention)."""
        if self.combine is None:
            return dec
        scores = dec @ memory.transpose(1, 2)  # (B, T, Tc)
        scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
        attn = torch.softmax(scores, dim=-1) @ memory  # (B, T, H)
        return torch.tanh(self.combine(torch.cat([dec, attn], dim=-1)))

    def _output(self, dec: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, T, H)`` decoder outputs -> ``(B, T, V)`` logits."""
        return self.proj(self.dropout(self._attend(dec, memory, mask)))

    def _states(self, contexts: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        h, c, memory, mask = self.encode(contexts)
        dec, _ = self.decoder(self.embedding(inputs), (h, c))  # (B, T, H)
        return self._attend(dec, memory, mask)

    def forward(self, contexts: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        return self.proj(self.dropout(self._states(contexts, inputs)))

    def masked_logits(self, contexts: torch.Tensor, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``forward(contexts, inputs)[mask]`` without projecting padded positions onto the vocabulary."""
        return self.proj(self.dropout(self._states(contexts, inputs)[mask]))

    def init_state(self, contexts: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.encode(contexts)

    def step(self, tokens: torch.Tensor, state) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        h, c, memory, mask = state
        dec, (h, c) = self.decoder(self.embedding(tokens)[:, None, :], (h, c))  # (B, 1, H)
        return self._output(dec, memory, mask)[:, 0], (h, c, memory, mask)

    @staticmethod
    def select_state(state, index: torch.Tensor):
        h, c, memory, mask = state
        return h[:, index], c[:, index], memory[index], mask[index]

    def spec(self) -> dict:
        return {
            "kind": "seq2seq",
            "vocab_size": self.vocab_size,
            "embed_dim": self.embed_dim,
            "hidden_dim": self.hidden_dim,
            "num_layers": self.num_layers,
            "dropout": self.dropout_p,
            "attention": self.attention,
            "pad_id": self.pad_id,
            "bos_id": self.bos_id,
            "eos_id": self.eos_id,
        }

    @classmethod
    def from_spec(cls, spec: dict) -> Seq2SeqLSTM:
        return cls(**{k: v for k, v in spec.items() if k != "kind"})


class Seq2SeqTransformer(ConditionalGenerator):
    """Transformer encoder-decoder from ``torch.nn`` layers (pre-norm, learned positions, tied output).

    State: ``(prefix, memory, memory_pad)``: the ``(B, t)`` tokens read so far, the ``(B, Tc, D)`` encoder output
    and its ``(B, Tc)`` padding mask (True = ignore).
    """

    def __init__(
        self,
        vocab_size: int,
        max_positions: int = 64,
        n_layer: int = 2,
        n_head: int = 4,
        n_embd: int = 128,
        dropout: float = 0.0,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
    ):
        super().__init__()
        self.vocab_size, self.max_positions = vocab_size, max_positions
        self.n_layer, self.n_head, self.n_embd, self.dropout_p = n_layer, n_head, n_embd, dropout
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.embedding = nn.Embedding(vocab_size, n_embd)
        self.positions = nn.Embedding(max_positions, n_embd)
        enc = nn.TransformerEncoderLayer(
            n_embd, n_head, 4 * n_embd, dropout, batch_first=True, norm_first=True
        )
        dec = nn.TransformerDecoderLayer(
            n_embd, n_head, 4 * n_embd, dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(
            enc, n_layer, norm=nn.LayerNorm(n_embd), enable_nested_tensor=False
        )
        self.decoder = nn.TransformerDecoder(dec, n_layer, norm=nn.LayerNorm(n_embd))
        self.proj = nn.Linear(n_embd, vocab_size)

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > self.max_positions:
            raise ValueError(f"sequence of {ids.shape[1]} tokens exceeds max_positions={self.max_positions}")
        pos = torch.arange(ids.shape[1], device=ids.device)
        return self.embedding(ids) * self.n_embd**0.5 + self.positions(pos)[None]

    def encode(self, contexts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pad = ~self.context_mask(contexts)  # (B, Tc) True = padding
        return self.encoder(self._embed(contexts), src_key_padding_mask=pad), pad

    def _decode(self, inputs: torch.Tensor, memory: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        t = inputs.shape[1]
        causal = torch.triu(torch.full((t, t), float("-inf"), device=inputs.device), diagonal=1)
        out = self.decoder(self._embed(inputs), memory, tgt_mask=causal, memory_key_padding_mask=pad)
        return self.proj(out)  # (B, T, V)

    def forward(self, contexts: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        memory, pad = self.encode(contexts)
        return self._decode(inputs, memory, pad)

    def init_state(self, contexts: torch.Tensor):
        memory, pad = self.encode(contexts)
        return torch.empty(contexts.shape[0], 0, dtype=torch.long, device=contexts.device), memory, pad

    def step(self, tokens: torch.Tensor, state):
        prefix, memory, pad = state
        prefix = torch.cat([prefix, tokens[:, None]], dim=1)
        return self._decode(prefix, memory, pad)[:, -1], (prefix, memory, pad)

    @staticmethod
    def select_state(state, index: torch.Tensor):
        prefix, memory, pad = state
        return prefix[index], memory[index], pad[index]

    def spec(self) -> dict:
        return {
            "kind": "seq2seq_transformer",
            "vocab_size": self.vocab_size,
            "max_positions": self.max_positions,
            "n_layer": self.n_layer,
            "n_head": self.n_head,
            "n_embd": self.n_embd,
            "dropout": self.dropout_p,
            "pad_id": self.pad_id,
            "bos_id": self.bos_id,
            "eos_id": self.eos_id,
        }

    @classmethod
    def from_spec(cls, spec: dict) -> Seq2SeqTransformer:
        return cls(**{k: v for k, v in spec.items() if k != "kind"})


def as_conditional(model: nn.Module) -> nn.Module:
    """``model`` as a conditional generator: a causal-LM generator
    (:class:`~seqgan.models.transformer.TransformerGenerator`) becomes a
    :class:`~seqgan.models.prompted.PromptedLM` (its contexts are prompts), anything else is returned as is."""
    transformer = sys.modules.get("seqgan.models.transformer")  # loaded whenever such a generator exists
    if transformer is not None and isinstance(model, transformer.TransformerGenerator):
        from seqgan.models.prompted import PromptedLM

        return PromptedLM(model)
    return model


class BoundGenerator(Generator):
    """A conditional generator bound to ``(C, Tc)`` contexts, seen as an unconditional generator.

    A causal-LM generator is bound to prompts instead (:func:`as_conditional`).

    ``init_state(n)`` needs ``n == C`` (row ``i`` answers context ``i``) or ``C == 1`` (every row answers the one
    context). Monte-Carlo rollouts therefore have to decode a batch in one chunk (``MonteCarloRollout(...,
    max_rows=None)``); another ``n`` is refused with a clear error instead of silently pairing rows with the wrong
    contexts. ``rebind`` swaps the contexts without copying the model.
    """

    def __init__(self, model: ConditionalGenerator, contexts: torch.Tensor) -> None:
        super().__init__()
        self.model = as_conditional(model)
        self.vocab_size, self.pad_id = model.vocab_size, model.pad_id
        self.bos_id, self.eos_id = model.bos_id, model.eos_id
        self.contexts = contexts  # plain attribute, not a buffer: never saved, never lagged

    def rebind(self, contexts: torch.Tensor) -> BoundGenerator:
        self.contexts = contexts.to(self.model.device)
        return self

    def _contexts(self, n: int) -> torch.Tensor:
        c = self.contexts
        if c.shape[0] == n:
            return c
        if c.shape[0] == 1:
            return c.expand(n, -1)
        raise ValueError(
            f"generator bound to {c.shape[0]} contexts was asked for {n} rows; a conditional batch must be "
            "decoded in one piece (use MonteCarloRollout(max_rows=None), i.e. seqgan.rollout_chunk_rows=0)"
        )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(self._contexts(inputs.shape[0]), inputs)

    def masked_logits(self, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        contexts = self._contexts(inputs.shape[0])
        if hasattr(self.model, "masked_logits"):
            return self.model.masked_logits(contexts, inputs, mask)
        return self.model(contexts, inputs)[mask]

    def init_state(self, batch_size: int) -> Any:
        return self.model.init_state(self._contexts(batch_size))

    def step(self, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        return self.model.step(tokens, state)

    def select_state(self, state: Any, index: torch.Tensor) -> Any:
        return self.model.select_state(state, index)

    def fast_decoder(self, temperature: float):
        """The bound model's fused decoder (``model.bound_decoder(self, temperature)``, e.g. the class-conditional
        LSTMs'), or None: decode through ``step``."""
        make = getattr(self.model, "bound_decoder", None)
        return None if make is None else make(self, temperature)

    def spec(self) -> dict:
        return self.model.spec()
