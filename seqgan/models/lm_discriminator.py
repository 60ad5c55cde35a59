"""A language model in the discriminator's slot: DPGAN's discriminator (Xu et al. 2018, arXiv 1802.01345) and
CoT's mediator (Lu et al. 2019, arXiv 1804.03782).

Token embeddings -> LSTM -> dropout -> linear over the vocabulary, reading the generator's own ids: the model
gives ``D(y_t | y_<t)`` at every position of a sequence, teacher-forced from ``[BOS, y_1 .. y_{T-1}]`` exactly as a
generator is (:mod:`seqgan.models.base`). Its distributions exclude the ids no sentence contains (PAD and BOS,
as :attr:`~seqgan.models.base.Generator.never_sample` does), so they have the support of the generator's
sampling distribution and a KL between the two is finite.

What the trainers read: :meth:`LMDiscriminator.masked_log_probs` (the ``(N, V)`` log-distributions at the real
positions: CoT's KL over the vocabulary), :meth:`LMDiscriminator.token_log_probs` (``(B, T)`` log-probabilities
of the tokens: DPGAN's rewards, the maximum-likelihood losses). ``forward`` returns each sequence's mean
log-probability per real token, a score that is higher for the sentences the model expects.
"""

from __future__ import annotations

import torch
from torch import nn

from seqgan.data.datasets import sequence_mask

__all__ = ["LMDiscriminator"]


class LMDiscriminator(nn.Module):
    """An LSTM language model over the generator's vocabulary (``discriminator.kind: lm``).

    Args:
        vocab_size: V.
        embed_dim: token embedding size.
        hidden_dim: LSTM hidden size.
        num_layers: stacked LSTM layers.
        dropout: dropout on the LSTM outputs (and between layers) in training updates; rewards and the KL are
            taken in eval mode.
        pad_id, bos_id: padding and start ids (never scored: probability 0 unless one is also EOS).
        eos_id: end-of-sequence id, which ends the real part of a row; None for fixed-length data (every id is
            then a real token and none is excluded).
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 64,
        hidden_dim: int = 128,
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
        self.out = nn.Linear(hidden_dim, vocab_size)

    @property
    def never_scored(self) -> list[int]:
        """Ids at probability 0 (PAD, BOS; none for fixed-length data), as the generator never samples them."""
        if self.eos_id is None:
            return []
        return sorted({self.pad_id, self.bos_id} - {self.eos_id})

    def mask(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` ids -> ``(B, T)`` bool, True for real tokens (up to and including the first EOS)."""
        return sequence_mask(tokens, self.eos_id)

    def masked_log_probs(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Teacher-forced log-distributions ``log D(. | y_<t)`` at the real positions.

        Args:
            tokens: ``(B, T)`` target ids (no BOS).
            mask: ``(B, T)`` bool, True at the positions to score (a prefix of each row).
        Returns:
            ``(N, V)`` float32 log-probabilities for the ``N`` True entries of ``mask`` (row order), ``-inf`` at
            :attr:`never_scored` ids.
        """
        bos = torch.full_like(tokens[:, :1], self.bos_id)
        inputs = torch.cat([bos, tokens[:, :-1]], dim=1)  # (B, T): [BOS, y_1 .. y_{T-1}]
        hidden, _ = self.lstm(self.embedding(inputs))  # (B, T, H)
        logits = self.out(self.dropout(hidden[mask])).float()  # (N, V)
        if self.never_scored:
            banned = torch.tensor(self.never_scored, device=logits.device)
            logits = logits.index_fill(-1, banned, float("-inf"))
        return logits.log_softmax(dim=-1)

    def token_log_probs(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T)`` log-probabilities ``log D(y_t | y_<t)`` of the tokens (0 where ``mask`` is False).

        Args:
            tokens: ``(B, T)`` ids.
            mask: ``(B, T)`` bool real positions (default: :meth:`mask`).
        """
        mask = self.mask(tokens) if mask is None else mask
        width = max(int(mask.sum(dim=1).max()), 1) if mask.numel() else 1  # all-padding columns: no work
        log_dist = self.masked_log_probs(tokens[:, :width], mask[:, :width])  # (N, V)
        chosen = log_dist.gather(1, tokens[:, :width][mask[:, :width]][:, None]).squeeze(1)  # (N,)
        out = torch.zeros(tokens.shape, dtype=chosen.dtype, device=tokens.device)
        return out.masked_scatter(mask, chosen)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B,)`` mean log-probability per real token of each ``(B, T)`` sequence (higher: more expected)."""
        mask = self.mask(tokens)
        return self.token_log_probs(tokens, mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)

    def spec(self) -> dict:
        return {
            "kind": "lm",
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
    def from_spec(cls, spec: dict) -> LMDiscriminator:
        return cls(**{k: v for k, v in spec.items() if k != "kind"})
