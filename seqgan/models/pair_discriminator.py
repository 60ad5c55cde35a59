"""The conditional discriminator D(c, x) of adversarial dialogue generation (Li et al. 2017, arXiv 1701.06547).

D must learn both "is x a human sentence" and "does x answer c": it is trained on real pairs against
(c, generated x) and (c, a human response of another context) (see :mod:`seqgan.data.pairs`).

:class:`PairDiscriminator`: SeqGAN's CNN encoder (embedding, convolutions of several widths, max-over-time
pooling, highway; :class:`~seqgan.models.discriminator.CNNDiscriminator` without its output layer) encodes the
context into ``h_c`` and the response into ``h_x`` (one shared encoder or two), then an MLP over
``[h_c, h_x, h_c * h_x]`` gives one logit (real = positive). The product term lets a small MLP score how well
the two match.

:class:`BoundDiscriminator` binds it to a batch of contexts for :class:`~seqgan.rollout.MonteCarloRollout`:
called on completion rows together with ``sample_index`` (the sample each row completes) it scores each row
against that sample's context.
"""

from __future__ import annotations

import torch
from torch import nn

from seqgan.models.discriminator import CNNDiscriminator

__all__ = ["CNNEncoder", "PairDiscriminator", "BoundDiscriminator"]


class CNNEncoder(CNNDiscriminator):
    """:class:`CNNDiscriminator` without its output layer: ``(B, T)`` ids -> ``(B, F)`` pooled features."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        del self.out

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if lengths is None and inputs.dim() == 2:
            lengths = self.lengths(inputs)
        return self.features(self.embed(inputs), lengths)


class PairDiscriminator(nn.Module):
    """D(c, x): ``(B, Tc)`` contexts and ``(B, T)`` responses -> ``(B,)`` logits.

    Args:
        vocab_size: V (contexts and responses share the vocabulary).
        embed_dim, filter_sizes, num_filters, highway: the CNN encoders' sizes (see CNNDiscriminator).
        dropout: dropout on the combined features.
        hidden: hidden units of the MLP.
        shared_encoder: one encoder for context and response (else two with the same sizes).
        pad_id: padding id.
        eos_id: end-of-sequence id; when it is also the padding id, the encoders keep the first EOS of a row
            visible (see :meth:`~seqgan.models.discriminator.CNNDiscriminator.visible`).
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 64,
        filter_sizes: list[int] | tuple[int, ...] = (2, 3, 4, 5),
        num_filters: list[int] | tuple[int, ...] = (100, 100, 100, 100),
        dropout: float = 0.25,
        highway: bool = True,
        hidden: int = 64,
        shared_encoder: bool = False,
        pad_id: int = 0,
        eos_id: int | None = None,
    ) -> None:
        super().__init__()
        self.vocab_size, self.embed_dim = vocab_size, embed_dim
        self.filter_sizes, self.num_filters = list(filter_sizes), list(num_filters)
        self.dropout_p, self.use_highway, self.hidden = dropout, highway, hidden
        self.shared_encoder, self.pad_id, self.eos_id = shared_encoder, pad_id, eos_id

        def encoder() -> CNNEncoder:
            return CNNEncoder(
                vocab_size, embed_dim, filter_sizes, num_filters, 0.0, highway, pad_id, eos_id=eos_id
            )

        self.response_encoder = encoder()
        self.context_encoder = self.response_encoder if shared_encoder else encoder()
        feat = sum(num_filters)
        self.head = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(3 * feat, hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )

    def forward(self, contexts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        if contexts.shape[0] != responses.shape[0]:
            raise ValueError(f"{contexts.shape[0]} contexts for {responses.shape[0]} responses")
        h_c = self.context_encoder(contexts)  # (B, F)
        h_x = self.response_encoder(responses)  # (B, F)
        return self.head(torch.cat([h_c, h_x, h_c * h_x], dim=1)).squeeze(-1)

    def spec(self) -> dict:
        return {
            "kind": "pair_cnn",
            "vocab_size": self.vocab_size,
            "embed_dim": self.embed_dim,
            "filter_sizes": self.filter_sizes,
            "num_filters": self.num_filters,
            "dropout": self.dropout_p,
            "highway": self.use_highway,
            "hidden": self.hidden,
            "shared_encoder": self.shared_encoder,
            "pad_id": self.pad_id,
            **({"eos_id": self.eos_id} if self.eos_id is not None and self.eos_id == self.pad_id else {}),
        }

    @classmethod
    def from_spec(cls, spec: dict) -> PairDiscriminator:
        return cls(**{k: v for k, v in spec.items() if k != "kind"})


class BoundDiscriminator(nn.Module):
    """A pair discriminator bound to ``(B, Tc)`` contexts: ``(N, T)`` responses -> ``(N,)`` logits.

    ``forward(responses, sample_index)`` scores row ``k`` against ``contexts[sample_index[k]]``; without
    ``sample_index`` row ``k`` is scored against context ``k`` (so ``N`` must be ``B``). ``scores_by_sample``
    tells :class:`~seqgan.rollout.MonteCarloRollout` to pass the sample index of every completion row.
    """

    scores_by_sample = True

    def __init__(self, discriminator: nn.Module, contexts: torch.Tensor) -> None:
        super().__init__()
        self.discriminator = discriminator
        self.contexts = contexts  # plain attribute, not a buffer

    def rebind(self, contexts: torch.Tensor) -> BoundDiscriminator:
        self.contexts = contexts
        return self

    def forward(self, responses: torch.Tensor, sample_index: torch.Tensor | None = None) -> torch.Tensor:
        if sample_index is None:
            if responses.shape[0] != self.contexts.shape[0]:
                raise ValueError(
                    f"{responses.shape[0]} responses for {self.contexts.shape[0]} bound contexts and no sample_index"
                )
            contexts = self.contexts
        else:
            contexts = self.contexts[sample_index.to(self.contexts.device)]
        return self.discriminator(contexts, responses)
