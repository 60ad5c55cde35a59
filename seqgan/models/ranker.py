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
``log R(s | U, C) = mean_u log P(s | u, C + {s})``. A trainer binds fresh sets for each generator step. The
rollouts score the completions of a sample's prefixes through :meth:`BoundRanker.rollout_scorer`: the encoder's
max-pooled convolutions computed by :class:`~seqgan.models.cnn_scorer.CNNScorer` (the sample's own windows
pooled once, the new windows looked up in tables), then the ranker's own highway and rank score.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqgan.losses import log_rank_scores
from seqgan.models.cnn_scorer import CNNScorer
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

    def score_features(self, pooled: torch.Tensor) -> torch.Tensor:
        """``(N, F)`` max-pooled convolution outputs of the encoder -> ``(N,)`` log rank scores (eval mode: the
        encoder's ReLU and highway, no dropout)."""
        feats = self.ranker.encoder.highway(F.relu(pooled))
        return log_rank_scores(feats, self.reference_features, self.comparison_features, self.gamma)

    def rollout_scorer(self, tokens: torch.Tensor, lengths: torch.Tensor, fast: bool = True):
        """How :class:`~seqgan.rollout.MonteCarloRollout` scores the completions of ``tokens``' prefixes
        (``(seqs, b, t) -> (N,)``): with ``fast``, through :class:`~seqgan.models.cnn_scorer.CNNScorer`'s pooling
        of the encoder and :meth:`score_features` (checked against this module on the first batch), else by
        calling this module."""
        enc = self.ranker.encoder
        plain = lambda seqs, b, t: self(seqs).float()  # noqa: E731
        if not fast or tokens.shape[1] < enc.min_len:
            return plain
        if enc.pad_id is not None:  # the prefixes must be real tokens for the encoder too
            inside = torch.arange(tokens.shape[1], device=tokens.device) < lengths[:, None] - 1  # (B, T)
            if bool(((enc.visible(tokens) == enc.pad_index) & inside).any()):
                return plain
        return CNNScorer(_PooledRanker(self), tokens)


class _PooledRanker:
    """What :class:`~seqgan.models.cnn_scorer.CNNScorer` reads of a discriminator, for a bound ranker: the
    encoder's embedding, convolutions and padding; ``head`` is the rank score of pooled features, and calling it
    scores ids with the bound ranker itself (the scorer's check)."""

    def __init__(self, bound: BoundRanker) -> None:
        enc = bound.ranker.encoder
        self.embedding, self.convs, self.pad_index, self.visible = (
            enc.embedding,
            enc.convs,
            enc.pad_index,
            enc.visible,
        )
        self.head, self.bound = bound.score_features, bound

    def __call__(self, seqs: torch.Tensor) -> torch.Tensor:
        return self.bound(seqs)
