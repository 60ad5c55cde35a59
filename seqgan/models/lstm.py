"""LSTM generator (SeqGAN, Yu et al. 2017, arXiv 1609.05473): embedding, LSTM, linear projection."""

from __future__ import annotations

import torch
from torch import nn

from seqgan.decoding.decoders import LSTMDecoder
from seqgan.models.base import Generator


class LSTMGenerator(Generator):
    """Embedding -> (stacked) LSTM -> dropout -> linear over the vocabulary.

    The incremental state is the LSTM's ``(h, c)``, each ``(num_layers, B, hidden_dim)``.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 32,
        hidden_dim: int = 32,
        num_layers: int = 1,
        dropout: float = 0.0,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int | None = 2,
    ):
        super().__init__()
        self.vocab_size, self.embed_dim, self.hidden_dim = vocab_size, embed_dim, hidden_dim
        self.num_layers, self.dropout_p = num_layers, dropout
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(
            embed_dim, hidden_dim, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0
        )
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(hidden_dim, vocab_size)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embedding(inputs))  # (B, T, H)
        return self.proj(self.dropout(out))  # (B, T, V)

    def masked_logits(self, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embedding(inputs))  # (B, T, H)
        return self.proj(self.dropout(out[mask]))  # (N, V)

    def forward_embeddings(self, embeds: torch.Tensor, state=None) -> tuple[torch.Tensor, tuple]:
        """Runs the LSTM over ``(B, T, E)`` input embeddings (soft inputs); returns logits and final state."""
        out, state = self.lstm(embeds, state)
        return self.proj(self.dropout(out)), state

    def init_state(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.zeros(self.num_layers, batch_size, self.hidden_dim, device=self.device)
        return z, z.clone()

    def step(self, tokens: torch.Tensor, state) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        out, state = self.lstm(self.embedding(tokens)[:, None, :], state)  # (B, 1, H)
        return self.proj(self.dropout(out[:, 0])), state  # (B, V)

    @staticmethod
    def select_state(state, index: torch.Tensor):
        """Rows ``index`` of a state (repeat rows with ``repeat_interleave`` indices)."""
        h, c = state
        return h[:, index], c[:, index]

    def fast_decoder(self, temperature: float) -> LSTMDecoder:
        """The fused decoder: ``step`` returns the LSTM output, the projection is fused with the draw."""
        return LSTMDecoder(self, temperature)

    def spec(self) -> dict:
        return {
            "kind": "lstm",
            "vocab_size": self.vocab_size,
            "embed_dim": self.embed_dim,
            "hidden_dim": self.hidden_dim,
            "num_layers": self.num_layers,
            "dropout": self.dropout_p,
            "pad_id": self.pad_id,
            "bos_id": self.bos_id,
            "eos_id": self.eos_id,
        }

    @classmethod
    def from_spec(cls, spec: dict) -> LSTMGenerator:
        return cls(**{k: v for k, v in spec.items() if k != "kind"})
