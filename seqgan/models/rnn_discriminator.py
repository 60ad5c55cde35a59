"""Recurrent per-prefix discriminator of ScratchGAN (de Masson d'Autume et al. 2019, arXiv 1905.09922, Sec. 3).

Token embeddings -> LSTM -> dropout -> one logit per position. The logit at position t reads y_1 .. y_t only (the
LSTM is causal), so it scores the prefix ``D(y_1..t)``: ScratchGAN's dense per-step rewards come from one pass
over a sequence instead of Monte-Carlo rollouts. Positions after the first EOS are not prefixes of the sentence;
their logits exist but every loss and reward masks them out, and since the LSTM is causal, the tokens there
cannot change the logits at real positions.

``forward`` returns the logit of the whole sequence (the prefix ending at its last real token), so the module
also serves wherever a sequence classifier is expected (discriminator pretraining, Monte-Carlo rollouts);
``prefix_logits`` returns all of them.
"""

from __future__ import annotations

import torch
from torch import nn

from seqgan.data.datasets import sequence_mask
from seqgan.models.discriminator import embed_inputs


class RNNDiscriminator(nn.Module):
    """LSTM discriminator scoring every prefix of a sequence.

    Args:
        vocab_size: V.
        embed_dim: token embedding size.
        hidden_dim: LSTM hidden size.
        num_layers: stacked LSTM layers.
        dropout: dropout on the embeddings and on the LSTM outputs (and between layers).
        pad_id: padding id (its embedding is zero and not trained, unless it is also EOS: then the EOS keeps a
            trained embedding; padding after it never reaches a real prefix's logit); None when every id is a
            real token.
        eos_id: end-of-sequence id, which ends the real part of a row; None for fixed-length data.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 64,
        hidden_dim: int = 128,
        num_layers: int = 1,
        dropout: float = 0.1,
        pad_id: int | None = 0,
        eos_id: int | None = 2,
    ):
        super().__init__()
        self.vocab_size, self.embed_dim, self.hidden_dim = vocab_size, embed_dim, hidden_dim
        self.num_layers, self.dropout_p, self.pad_id, self.eos_id = num_layers, dropout, pad_id, eos_id
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=None if pad_id == eos_id else pad_id)
        self.lstm = nn.LSTM(
            embed_dim, hidden_dim, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0
        )
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_dim, 1)

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` ids or ``(B, T, V)`` probability vectors -> ``(B, T, E)`` embeddings."""
        return embed_inputs(self.embedding, inputs)

    def mask(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` ids -> ``(B, T)`` bool, True for the real prefixes (up to and including the first EOS)."""
        return sequence_mask(tokens, self.eos_id)

    def prefix_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` ids or ``(B, T, V)`` vectors -> ``(B, T)`` logits, entry t scoring the prefix y_1..y_t."""
        out, _ = self.lstm(self.dropout(self.embed(inputs)))  # (B, T, H)
        return self.out(self.dropout(out)).squeeze(-1)  # (B, T)

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``(B,)`` logits of whole sequences: the prefix logit at each row's last real token.

        Args:
            inputs: ``(B, T)`` ids or ``(B, T, V)`` probability vectors.
            lengths: ``(B,)`` real lengths; computed from EOS for ids, the full width for vectors unless given.
        """
        logits = self.prefix_logits(inputs)  # (B, T)
        if lengths is None:
            if inputs.dim() == 2:
                lengths = self.mask(inputs).sum(dim=1)
            else:
                lengths = torch.full((inputs.shape[0],), inputs.shape[1], device=inputs.device)
        last = (lengths.clamp(min=1) - 1).to(torch.long)
        return logits.gather(1, last[:, None]).squeeze(1)

    def spec(self) -> dict:
        return {
            "kind": "rnn",
            "vocab_size": self.vocab_size,
            "embed_dim": self.embed_dim,
            "hidden_dim": self.hidden_dim,
            "num_layers": self.num_layers,
            "dropout": self.dropout_p,
            "pad_id": self.pad_id,
            "eos_id": self.eos_id,
        }

    @classmethod
    def from_spec(cls, spec: dict) -> RNNDiscriminator:
        return cls(**{k: v for k, v in spec.items() if k != "kind"})
