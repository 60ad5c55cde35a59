"""RankGAN's ranker (Lin et al. 2017, "Adversarial Ranking for Language Generation", NIPS, arXiv 1705.11001).

:class:`Ranker` (``discriminator.kind: ranker``) embeds sentences: SeqGAN's CNN without its output layer
(:class:`~seqgan.models.pair_discriminator.CNNEncoder`: token embeddings, convolutions of several widths,
max-over-time pooling, highway), then dropout in training updates; ``(N, T)`` ids -> ``(N, F)`` features. It has
no score of its own: a sentence is scored only relative to other sentences, by the cosine similarity of its
features to those of a real reference sentence, ranked by a softmax over a comparison set
(:func:`~seqgan.losses.log_rank_scores`).

:class:`BoundRanker` makes that explicit for the rollouts, which call a discriminator as ``(N, T) -> (N,)``:
:meth:`Ranker.bind` fixes a reference set ``U`` and a comparison set ``C`` (their features are taken once, in
eval mode, without gradient), and the bound ranker returns each row's expected log rank score
``log R(s | U, C) = mean_u log P(s | u, C + {s})``. A trainer binds fresh sets for each generator step.
"""

from __future__ import annotations

import torch
from torch import nn

from seqgan.losses import log_rank_scores
from seqgan.models.pair_discriminator import CNNEncoder

__all__ = ["BoundRanker", "Ranker"]


class Ranker(nn.Module):
    """A CNN sentence encoder whose features rank sentences by cosine similarity (``discriminator.kind: ranker``).

    Args:
        vocab_size: V.
        embed_dim, filter_sizes, num_filters, highway: the CNN's sizes (see
            :class:`~seqgan.models.discriminator.CNNDiscriminator`).
        dropout: dropout on the features in training mode (the ranker's updates); binding and rewards use eval
            mode.
        pad_id: padding id (None when every id is a real token: the synthetic oracle).
        eos_id: end-of-sequence id; when it is also the padding id, the first EOS of a row stays visible.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 64,
        filter_sizes: list[int] | tuple[int, ...] = (2, 3, 4, 5),
        num_filters: list[int] | tuple[int, ...] = (300, 300, 300, 300),
        dropout: float = 0.25,
        highway: bool = True,
        pad_id: int | None = 0,
        eos_id: int | None = None,
    ) -> None:
        super().__init__()
        self.vocab_size, self.embed_dim = vocab_size, embed_dim
        self.filter_sizes, self.num_filters = list(filter_sizes), list(num_filters)
        self.dropout_p, self.use_highway, self.pad_id, self.eos_id = dropout, highway, pad_id, eos_id
        self.encoder = CNNEncoder(
            vocab_size, embed_dim, filter_sizes, num_filters, 0.0, highway, pad_id, eos_id=eos_id
        )
        self.dropout = nn.Dropout(dropout)

    @property
    def feature_dim(self) -> int:
        return sum(self.num_filters)

    def lengths(self, tokens: torch.Tensor) -> torch.Tensor | None:
        """``(B,)`` non-padding tokens of ``(B, T)`` ids (None without a padding id): length-bucketed batches."""
        return self.encoder.lengths(tokens)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(N, T)`` ids -> ``(N, F)`` sentence features (dropout applied in training mode)."""
        return self.dropout(self.encoder(tokens))

    def bind(self, references: torch.Tensor, comparison: torch.Tensor, gamma: float) -> BoundRanker:
        """This ranker with reference set ``references`` ``(U, T)`` and comparison set ``comparison`` ``(M, T)``
        fixed (see :class:`BoundRanker`)."""
        return BoundRanker(self, references, comparison, gamma)

    def spec(self) -> dict:
        return {
            "kind": "ranker",
            "vocab_size": self.vocab_size,
            "embed_dim": self.embed_dim,
            "filter_sizes": self.filter_sizes,
            "num_filters": self.num_filters,
            "dropout": self.dropout_p,
            "highway": self.use_highway,
            "pad_id": self.pad_id,
            "eos_id": self.eos_id,
        }

    @classmethod
    def from_spec(cls, spec: dict) -> Ranker:
        return cls(**{k: v for k, v in spec.items() if k != "kind"})


class BoundRanker(nn.Module):
    """A :class:`Ranker` bound to a reference set and a comparison set: ``(N, T)`` ids -> ``(N,)`` expected log
    rank scores ``log R(s | U, C)`` (:func:`~seqgan.losses.log_rank_scores`), each row ranked among ``C`` with
    itself added.

    The sets' features are computed here, once, in eval mode without gradient; the ranked rows' features are
    computed by ``ranker`` in whatever mode it is in when called (the rollouts put it in eval mode).

    Args:
        ranker: the ranker (not a DDP wrapper).
        references: ``(U, T)`` real reference sentences.
        comparison: ``(M, T)`` comparison sentences (real ones for the generator's rewards, ``C+``).
        gamma: inverse temperature of the rank softmax.
    """

    def __init__(self, ranker: Ranker, references: torch.Tensor, comparison: torch.Tensor, gamma: float):
        super().__init__()
        if references.shape[0] < 1 or comparison.shape[0] < 1:
            raise ValueError(
                f"a ranker needs at least one reference and one comparison sentence, got {references.shape[0]} "
                f"and {comparison.shape[0]}"
            )
        self.ranker, self.gamma = ranker, float(gamma)
        was_training = ranker.training
        ranker.eval()
        try:
            with torch.no_grad():
                self.reference_features = ranker(references).float()  # (U, F), plain attributes
                self.comparison_features = ranker(comparison).float()  # (M, F)
        finally:
            ranker.train(was_training)
        self.train(was_training)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return log_rank_scores(
            self.ranker(tokens), self.reference_features, self.comparison_features, self.gamma
        )
