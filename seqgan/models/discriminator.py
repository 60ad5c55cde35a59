"""CNN discriminator of SeqGAN (Yu et al. 2017, arXiv 1609.05473; after Kim 2014 and Zhang & LeCun 2015).

Token embeddings -> parallel 1-D convolutions of several widths (each with its own filter count) -> ReLU ->
max-over-time pooling -> concatenation -> highway layer -> dropout -> one logit per sequence. Inputs can be token
ids ``(B, T)`` or probability vectors over the vocabulary ``(B, T, V)`` (soft inputs for relaxed training), read
through the same embedding matrix.

Options for relaxed (Gumbel-softmax) training: spectral normalization of the convolutions and linear layers
(Miyato et al. 2018, ``spectral_norm=True`` or :meth:`CNNDiscriminator.enable_spectral_norm`) and instance noise
(``noise_std`` in :meth:`CNNDiscriminator.forward`). Both are off by default and then change nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def embed_inputs(embedding: nn.Embedding, inputs: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` token ids or ``(B, T, V)`` probability vectors -> ``(B, T, E)`` through ``embedding``'s matrix
    (a probability vector reads the expected embedding, so relaxed samples and ids share one code path)."""
    if inputs.dim() == 2:
        return embedding(inputs)
    vocab = embedding.num_embeddings
    if inputs.dim() == 3 and inputs.shape[-1] == vocab:
        return inputs @ embedding.weight  # (B, T, V) @ (V, E)
    raise ValueError(f"expected (B, T) token ids or (B, T, {vocab}) vectors, got {tuple(inputs.shape)}")


class Highway(nn.Module):
    """y = g * relu(W x) + (1 - g) * x with g = sigmoid(W_g x) (Srivastava et al. 2015)."""

    def __init__(self, dim: int):
        super().__init__()
        self.transform = nn.Linear(dim, dim)
        self.gate = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.gate(x))
        return g * F.relu(self.transform(x)) + (1.0 - g) * x


class CNNDiscriminator(nn.Module):
    """Sequence classifier returning one real/fake logit per sequence.

    Args:
        vocab_size: V.
        embed_dim: token embedding size.
        filter_sizes: convolution widths, e.g. ``[2, 3, 4, 5]``.
        num_filters: filters per width, same length as ``filter_sizes``.
        dropout: dropout before the output layer.
        highway: use the highway layer.
        pad_id: padding id (its embedding is zero and not trained); None when every id is a real token.
        spectral_norm: divide the weight of every convolution and linear layer (highway, output) by its largest
            singular value, estimated by one power iteration per training-mode forward (Miyato et al. 2018);
            the embedding is left as is.
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
        spectral_norm: bool = False,
    ):
        super().__init__()
        if len(filter_sizes) != len(num_filters):
            raise ValueError("filter_sizes and num_filters must have the same length")
        self.vocab_size, self.embed_dim = vocab_size, embed_dim
        self.filter_sizes, self.num_filters = list(filter_sizes), list(num_filters)
        self.dropout_p, self.use_highway, self.pad_id = dropout, highway, pad_id
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.convs = nn.ModuleList(
            nn.Conv1d(embed_dim, n, k) for k, n in zip(filter_sizes, num_filters, strict=False)
        )
        feat = sum(num_filters)
        self.highway = Highway(feat) if highway else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(feat, 1)
        self.spectral_norm = False
        if spectral_norm:
            self.enable_spectral_norm()

    def enable_spectral_norm(self) -> None:
        """Puts spectral normalization on the convolutions, highway and output layers, in place.

        The current weights become the unnormalized originals (so a pretrained discriminator keeps its
        direction but its outputs are rescaled); :meth:`spec` records the option so checkpoints rebuild it.
        """
        if self.spectral_norm:
            return
        layers = [*self.convs, self.out]
        if isinstance(self.highway, Highway):
            layers += [self.highway.transform, self.highway.gate]
        for layer in layers:
            nn.utils.parametrizations.spectral_norm(layer)
        self.spectral_norm = True

    @property
    def min_len(self) -> int:
        return max(self.filter_sizes)

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` ids or ``(B, T, V)`` probability vectors -> ``(B, T, E)`` embeddings."""
        return embed_inputs(self.embedding, inputs)

    def lengths(self, tokens: torch.Tensor) -> torch.Tensor | None:
        """``(B,)`` number of non-padding tokens of ``(B, T)`` ids (padding only follows the sequence);
        None when the discriminator has no padding id."""
        if self.pad_id is None:
            return None
        return (tokens != self.pad_id).sum(dim=1)

    def pool(self, embeds: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T, E)`` -> ``(B, F)`` max-over-time pooled convolution outputs (before the ReLU), the widths
        concatenated.

        Pooling reads exactly the windows that start on one of the first ``lengths`` tokens (every position when
        ``lengths`` is None; at least one window), reading zeros (the padding embedding) past the end. So the
        output does not depend on how much padding follows a sequence, and the trailing all-padding columns of a
        batch are skipped (the speed-up on short sentences padded to ``max_len``).
        """
        if lengths is None:
            lengths = torch.full((embeds.shape[0],), embeds.shape[1], device=embeds.device)
        # every window that starts on a real token, zero (= padding embedding) beyond the end
        width = max(int(lengths.max()), 1) + self.min_len - 1
        embeds = embeds[:, :width]
        if embeds.shape[1] < width:
            embeds = F.pad(embeds, (0, 0, 0, width - embeds.shape[1]))
        x = embeds.transpose(1, 2)  # (B, E, T)
        pooled = []
        for conv in self.convs:
            h = conv(x)  # (B, n_k, T - k + 1)
            # windows that start inside the padding do not count (ReLU and max commute: relu(max) = max(relu))
            starts = torch.arange(h.shape[2], device=h.device)
            h = h.masked_fill((starts[None, :] >= lengths.clamp(min=1)[:, None]).unsqueeze(1), float("-inf"))
            pooled.append(h.amax(dim=2))  # (B, n_k)
        return torch.cat(pooled, dim=1)

    def features(self, embeds: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T, E)`` -> ``(B, F)`` pooled, ReLU- and highway-transformed features (see :meth:`pool`)."""
        return self.highway(F.relu(self.pool(embeds, lengths)))

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        """``(B, F)`` max-pooled convolution outputs (:meth:`pool`) -> ``(B,)`` logits: ReLU, highway, dropout,
        output layer. Shared by :meth:`forward` and the rollout's prefix scorer
        (:class:`~seqgan.models.cnn_scorer.CNNScorer`)."""
        return self.out(self.dropout(self.highway(F.relu(pooled)))).squeeze(-1)

    def forward(
        self,
        inputs: torch.Tensor,
        lengths: torch.Tensor | None = None,
        noise_std: float = 0.0,
        rng: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``(B, T)`` ids or ``(B, T, V)`` probability vectors -> ``(B,)`` logits (real = positive).

        Args:
            inputs: token ids or probability vectors.
            lengths: ``(B,)`` real lengths; computed from the padding id for token ids, None (every position
                counts) for probability vectors unless given.
            noise_std: instance noise (Sonderby et al. 2016): Gaussian noise of this standard deviation added to
                the input embeddings of the real positions (the first ``lengths`` of each row; padding stays
                zero). 0 adds nothing.
            rng: ``torch.Generator`` for the noise (the global RNG when None).
        """
        if lengths is None and inputs.dim() == 2:
            lengths = self.lengths(inputs)
        embeds = self.embed(inputs)  # (B, T, E)
        if noise_std > 0:
            noise = torch.randn(embeds.shape, device=embeds.device, dtype=embeds.dtype, generator=rng)
            if lengths is not None:
                real = torch.arange(embeds.shape[1], device=embeds.device)[None, :] < lengths[:, None]
                noise = noise * real.unsqueeze(2).to(noise.dtype)
            embeds = embeds + noise_std * noise
        return self.head(self.pool(embeds, lengths))

    def spec(self) -> dict:
        return {
            "kind": "cnn",
            "vocab_size": self.vocab_size,
            "embed_dim": self.embed_dim,
            "filter_sizes": self.filter_sizes,
            "num_filters": self.num_filters,
            "dropout": self.dropout_p,
            "highway": self.use_highway,
            "pad_id": self.pad_id,
            **({"spectral_norm": True} if self.spectral_norm else {}),
        }

    @classmethod
    def from_spec(cls, spec: dict) -> CNNDiscriminator:
        return cls(**{k: v for k, v in spec.items() if k != "kind"})
