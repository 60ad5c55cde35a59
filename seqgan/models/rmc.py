"""Relational-memory generator of RelGAN (Nie et al., "RelGAN: Relational Generative Adversarial Networks for Text
Generation", ICLR 2019), built on the relational memory core (RMC) of Santoro et al. 2018 (arXiv 1806.01822).

The recurrent state is a memory ``M`` of ``mem_slots`` rows, each ``num_heads * head_size`` wide. At step t the
token embedding is projected to a row ``x_t`` of that width, and the memory is updated in three parts:

1. attention: every memory row queries the rows of ``[M; x_t]`` with multi-head dot-product attention
   (``softmax(Q K^T / sqrt(head_size)) V`` per head, the heads concatenated), added to ``M`` and layer-normed;
2. MLP: a two-layer ReLU MLP applied to every row, added back and layer-normed, giving the candidate ``M~``;
3. gates: like an LSTM's, per memory unit, from the input and the old memory:
   ``i = sigmoid(W_i x_t + U_i tanh(M) + b_i)``, ``f = sigmoid(W_f x_t + U_f tanh(M) + b_f + 1)``,
   ``M' = i * tanh(M~) + f * M`` (the ``+ 1`` is the forget bias).

The output of the step is the new memory flattened, ``(B, mem_slots * num_heads * head_size)``, projected to the
vocabulary after dropout. The memory starts as the identity (row s is the unit vector s, zero-padded), as in
Santoro et al.'s reference core. One attention block per step, as RelGAN uses.

RelGAN's generator: 1 memory slot, 2 heads, head size 256 (a 512-wide memory), token embeddings of size 32 on the
synthetic data. The configs of this toolkit use narrower memories that train on a CPU.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from seqgan.decoding.decoders import Decoder
from seqgan.decoding.samplers import FusedSampler
from seqgan.models.base import Generator

__all__ = ["RMCGenerator", "RMCDecoder"]

FORGET_BIAS = 1.0
"""Added to the forget gate's pre-activation (Santoro et al.'s core: the memory is kept by default)."""


class RMCGenerator(Generator):
    """Embedding -> relational memory core -> dropout -> linear over the vocabulary.

    The incremental state is the memory ``(B, mem_slots, num_heads * head_size)``.

    Args:
        vocab_size: V.
        embed_dim: token embedding size (RelGAN: 32 on the synthetic data).
        mem_slots: memory rows (RelGAN: 1).
        num_heads: attention heads (RelGAN: 2).
        head_size: width of one head; the memory is ``num_heads * head_size`` wide (RelGAN: 256).
        dropout: dropout on the memory output before the vocabulary projection (training updates only).
        pad_id, bos_id, eos_id: special ids (``eos_id=None`` for fixed-length data).
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 32,
        mem_slots: int = 1,
        num_heads: int = 2,
        head_size: int = 32,
        dropout: float = 0.0,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int | None = 2,
    ):
        super().__init__()
        if min(vocab_size, embed_dim, mem_slots, num_heads, head_size) < 1:
            raise ValueError("vocab_size, embed_dim, mem_slots, num_heads and head_size must be positive")
        self.vocab_size, self.embed_dim = vocab_size, embed_dim
        self.mem_slots, self.num_heads, self.head_size = mem_slots, num_heads, head_size
        self.mem_size = width = num_heads * head_size
        self.dropout_p = dropout
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.input_proj = nn.Linear(embed_dim, width)  # x_t: the input as one more row of the memory's width
        self.query = nn.Linear(width, width)  # queries: memory rows only
        self.key_value = nn.Linear(width, 2 * width)  # keys and values: memory rows and the input row
        self.norm_attention = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))
        self.norm_mlp = nn.LayerNorm(width)
        self.gate_input = nn.Linear(width, 2 * width)  # W_i, W_f (and the gate biases)
        self.gate_memory = nn.Linear(width, 2 * width, bias=False)  # U_i, U_f
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(mem_slots * width, vocab_size)

    # ------------------------------------------------------------------ the core
    def read_inputs(self, embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the core needs from the inputs, for any number of steps at once.

        Args:
            embeds: ``(..., E)`` token embeddings.
        Returns:
            ``(..., 2 * W)`` keys and values of the input row, ``(..., 2 * W)`` its gate pre-activations.
        """
        x = self.input_proj(embeds)  # (..., W)
        return self.key_value(x), self.gate_input(x)

    def core(self, memory: torch.Tensor, kv_x: torch.Tensor, gates_x: torch.Tensor) -> torch.Tensor:
        """One memory update.

        Args:
            memory: ``(B, S, W)`` the memory before the step.
            kv_x: ``(B, 2 * W)`` keys and values of the input row (:meth:`read_inputs`).
            gates_x: ``(B, 2 * W)`` the input's gate pre-activations (:meth:`read_inputs`).
        Returns:
            ``(B, S, W)`` the memory after the step.
        """
        b, s, w = memory.shape
        h, d = self.num_heads, self.head_size
        q = self.query(memory).view(b, s, h, d).transpose(1, 2)  # (B, H, S, d)
        kv = torch.cat([self.key_value(memory), kv_x[:, None, :]], dim=1)  # (B, S + 1, 2W)
        k, v = kv.view(b, s + 1, 2, h, d).permute(2, 0, 3, 1, 4)  # each (B, H, S + 1, d)
        weights = torch.softmax(q @ k.transpose(2, 3) / math.sqrt(d), dim=-1)  # (B, H, S, S + 1)
        attended = (weights @ v).transpose(1, 2).reshape(b, s, w)  # (B, S, W) heads concatenated
        cand = self.norm_attention(memory + attended)
        cand = self.norm_mlp(cand + self.mlp(cand))  # M~
        gates = self.gate_memory(torch.tanh(memory)) + gates_x[:, None, :]  # (B, S, 2W)
        input_gate, forget_gate = gates.chunk(2, dim=2)
        input_gate = torch.sigmoid(input_gate)
        forget_gate = torch.sigmoid(forget_gate + FORGET_BIAS)
        return input_gate * torch.tanh(cand) + forget_gate * memory

    def run(
        self, inputs: torch.Tensor, memory: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The core over ``(B, T)`` input ids from ``memory`` (the initial memory when None).

        Returns:
            ``(B, T, S * W)`` memory outputs (before dropout and projection) and the final ``(B, S, W)`` memory.
        """
        b, t = inputs.shape
        memory = self.init_state(b) if memory is None else memory
        kv_x, gates_x = self.read_inputs(self.embedding(inputs))  # (B, T, 2W) each, every step at once
        outs = []
        for i in range(t):
            memory = self.core(memory, kv_x[:, i], gates_x[:, i])
            outs.append(memory.reshape(b, -1))
        return torch.stack(outs, dim=1), memory

    # ------------------------------------------------------------------ the Generator contract
    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        out, _ = self.run(inputs)  # (B, T, S * W)
        return self.proj(self.dropout(out))  # (B, T, V)

    def masked_logits(self, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out, _ = self.run(inputs)
        return self.proj(self.dropout(out[mask]))  # (N, V)

    def init_state(self, batch_size: int) -> torch.Tensor:
        """The identity memory: ``(B, S, W)`` with row s the unit vector s (zero-padded to W, cut when S > W)."""
        eye = torch.eye(self.mem_slots, self.mem_size, device=self.device, dtype=self.proj.weight.dtype)
        return eye.expand(batch_size, -1, -1).clone()

    def features(self, tokens: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reads ``(B,)`` tokens: ``(B, S * W)`` output before dropout and projection, and the new memory."""
        kv_x, gates_x = self.read_inputs(self.embedding(tokens))  # (B, 2W) each
        memory = self.core(memory, kv_x, gates_x)
        return memory.reshape(memory.shape[0], -1), memory

    def step(self, tokens: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, state = self.features(tokens, state)
        return self.proj(self.dropout(out)), state  # (B, V)

    @staticmethod
    def select_state(state: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Rows ``index`` of a ``(B, S, W)`` memory (repeated indices copy rows)."""
        return state[index]

    def fast_decoder(self, temperature: float) -> RMCDecoder:
        """The fused decoder: ``step`` returns the memory output, the projection is fused with the draw."""
        return RMCDecoder(self, temperature)

    def spec(self) -> dict:
        return {
            "kind": "rmc",
            "vocab_size": self.vocab_size,
            "embed_dim": self.embed_dim,
            "mem_slots": self.mem_slots,
            "num_heads": self.num_heads,
            "head_size": self.head_size,
            "dropout": self.dropout_p,
            "pad_id": self.pad_id,
            "bos_id": self.bos_id,
            "eos_id": self.eos_id,
        }

    @classmethod
    def from_spec(cls, spec: dict) -> RMCGenerator:
        return cls(**{k: v for k, v in spec.items() if k != "kind"})


class RMCDecoder(Decoder):
    """:class:`RMCGenerator` fast path: ``step`` returns the ``(n, S * W)`` memory output and the vocabulary
    projection is fused with the draw (:class:`~seqgan.decoding.samplers.FusedSampler`). The state is the
    ``(n, S, W)`` memory."""

    fused = True

    def __init__(self, generator: RMCGenerator, temperature: float) -> None:
        self.g = generator
        self.sampler = FusedSampler(
            generator.proj.weight, generator.proj.bias, temperature, generator.never_sample
        )

    def init(self, n: int, capacity: int | None = None, seq_len: int | None = None) -> torch.Tensor:
        return self.g.init_state(n)

    def step(self, tokens: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.g.features(tokens, state)  # dropout is the identity in eval mode

    def rearrange(
        self, state: torch.Tensor, n: int, keep: torch.Tensor | None, src: torch.Tensor
    ) -> torch.Tensor:
        if keep is None:
            return torch.cat([state, state[src]])
        return state[torch.cat([keep, src])]
