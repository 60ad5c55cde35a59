"""RelGAN's discriminator with multiple embedded representations (Nie et al., "RelGAN: Relational Generative
Adversarial Networks for Text Generation", ICLR 2019; the CNN after Kim 2014 and SeqGAN, arXiv 1609.05473).

The input, token ids ``(B, T)`` or (relaxed) one-hot vectors ``(B, T, V)``, is embedded ``num_rep`` times, each
time by its own ``(V, embed_dim / num_rep)`` matrix. Every representation then goes through the same CNN: 1-D
convolutions of several widths over time (the same filters for every representation), ReLU, max-over-time
pooling, a highway layer, dropout, a linear layer to 100 units and a linear layer to one logit. So the
discriminator gives ``num_rep`` logits per sequence, one per representation; RelGAN's GAN losses are averaged over
sequences and representations (``forward(..., per_rep=True)``, what the Gumbel trainer uses). Where one logit per
sequence is needed (SeqGAN-style rewards, the BCE of discriminator pretraining) :meth:`forward` returns their mean.

RelGAN's values: ``embed_dim = 64`` split into ``num_rep = 64`` representations (each one-dimensional), filter
widths 2, 3, 4, 5 with 300 filters each, dropout 0.25 (keep probability 0.75). The paper's motivation: several
small embeddings give the discriminator several views of the input and more informative gradients for the
generator than one large embedding.

Padding never counts: positions after a row's end are zeroed after the embedding (whatever the input holds
there: the padding id, or the one-hot PAD vectors the Gumbel trainer appends after EOS), and pooling reads only the
windows that start on a real token, as :class:`~seqgan.models.discriminator.CNNDiscriminator` does (through the
same :func:`~seqgan.models.discriminator.conv_max_pool`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqgan.data.datasets import sequence_mask
from seqgan.models.discriminator import Highway, conv_max_pool

__all__ = ["RelGANDiscriminator"]


class RelGANDiscriminator(nn.Module):
    """Multi-representation CNN discriminator; one logit per sequence and representation.

    Args:
        vocab_size: V.
        embed_dim: total embedding width, split evenly among the representations (RelGAN: 64).
        num_rep: embedded representations, each with its own ``(V, embed_dim / num_rep)`` matrix (RelGAN: 64).
        filter_sizes: convolution widths (RelGAN: 2, 3, 4, 5).
        num_filters: filters per width (RelGAN: 300 each).
        dropout: dropout after the highway layer (RelGAN: 0.25).
        highway: use the highway layer over the pooled features.
        pad_id: padding id; None when every id is a real token (fixed-length data).
        eos_id: end-of-sequence id; used when it equals ``pad_id`` (the first EOS of a row is then real).
        hidden: units of the linear layer before the logit (RelGAN: 100).
        spectral_norm: spectral normalization of the convolutions and linear layers (Miyato et al. 2018).
    Raises:
        ValueError: ``embed_dim`` is not a multiple of ``num_rep``, or the filter lists differ in length.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 64,
        num_rep: int = 64,
        filter_sizes: list[int] | tuple[int, ...] = (2, 3, 4, 5),
        num_filters: list[int] | tuple[int, ...] = (300, 300, 300, 300),
        dropout: float = 0.25,
        highway: bool = True,
        pad_id: int | None = 0,
        eos_id: int | None = None,
        hidden: int = 100,
        spectral_norm: bool = False,
    ):
        super().__init__()
        if num_rep < 1 or embed_dim % num_rep:
            raise ValueError(f"embed_dim ({embed_dim}) must be a positive multiple of num_rep ({num_rep})")
        if len(filter_sizes) != len(num_filters):
            raise ValueError("filter_sizes and num_filters must have the same length")
        self.vocab_size, self.embed_dim, self.num_rep = vocab_size, embed_dim, num_rep
        self.rep_dim = embed_dim // num_rep
        self.filter_sizes, self.num_filters = list(filter_sizes), list(num_filters)
        self.dropout_p, self.use_highway, self.hidden = dropout, highway, hidden
        self.pad_id, self.eos_id = pad_id, eos_id
        # representation r reads the matrix embeddings[:, r, :]: (V, embed_dim / num_rep)
        self.embeddings = nn.Parameter(torch.randn(vocab_size, num_rep, self.rep_dim))
        self.convs = nn.ModuleList(
            nn.Conv1d(self.rep_dim, n, k) for k, n in zip(filter_sizes, num_filters, strict=True)
        )
        feat = sum(num_filters)
        self.highway = Highway(feat) if highway else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(feat, hidden)
        self.out = nn.Linear(hidden, 1)
        self.spectral_norm = False
        if spectral_norm:
            self.enable_spectral_norm()

    def enable_spectral_norm(self) -> None:
        """Spectral normalization of the convolutions, highway and linear layers, in place (the embeddings are
        left as they are); :meth:`spec` records it."""
        if self.spectral_norm:
            return
        layers = [*self.convs, self.fc, self.out]
        if isinstance(self.highway, Highway):
            layers += [self.highway.transform, self.highway.gate]
        for layer in layers:
            nn.utils.parametrizations.spectral_norm(layer)
        self.spectral_norm = True

    @property
    def min_len(self) -> int:
        return max(self.filter_sizes)

    def lengths(self, tokens: torch.Tensor) -> torch.Tensor | None:
        """``(B,)`` real tokens of ``(B, T)`` ids: the non-padding ids (up to and including the first EOS when
        padding is EOS); None without a padding id."""
        if self.pad_id is None:
            return None
        if self.eos_id is not None and self.eos_id == self.pad_id:
            return sequence_mask(tokens, self.eos_id).sum(dim=1)
        return (tokens != self.pad_id).sum(dim=1)

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` ids or ``(B, T, V)`` vectors -> ``(B, T, R, e)``: every representation of every position
        (a vector reads the expected embedding)."""
        table = self.embeddings.reshape(self.vocab_size, -1)  # (V, R * e)
        if inputs.dim() == 2:
            flat = F.embedding(inputs, table)
        elif inputs.dim() == 3 and inputs.shape[-1] == self.vocab_size:
            flat = inputs.to(table.dtype) @ table  # (B, T, V) @ (V, R * e)
        else:
            raise ValueError(
                f"expected (B, T) token ids or (B, T, {self.vocab_size}) vectors, got {tuple(inputs.shape)}"
            )
        return flat.view(*flat.shape[:2], self.num_rep, self.rep_dim)

    def forward(
        self,
        inputs: torch.Tensor,
        lengths: torch.Tensor | None = None,
        noise_std: float = 0.0,
        rng: torch.Generator | None = None,
        per_rep: bool = False,
    ) -> torch.Tensor:
        """Logits (real = positive).

        Args:
            inputs: ``(B, T)`` ids or ``(B, T, V)`` probability vectors.
            lengths: ``(B,)`` real lengths; from the padding id for ids, every position for vectors unless given.
            noise_std: instance noise: Gaussian noise of this std added to the embeddings of real positions.
            rng: ``torch.Generator`` for the noise.
            per_rep: return every representation's logit.
        Returns:
            ``(B, num_rep)`` logits with ``per_rep``, else ``(B,)``: their mean over the representations.
        """
        if lengths is None and inputs.dim() == 2:
            lengths = self.lengths(inputs)
        embeds = self.embed(inputs)  # (B, T, R, e)
        b, t = embeds.shape[:2]
        if lengths is None:
            lengths = torch.full((b,), t, device=embeds.device)
        real = torch.arange(t, device=embeds.device)[None, :] < lengths[:, None]  # (B, T)
        embeds = embeds * real[:, :, None, None].to(embeds.dtype)  # padding reads zeros
        if noise_std > 0:
            noise = torch.randn(embeds.shape, device=embeds.device, dtype=embeds.dtype, generator=rng)
            embeds = embeds + noise_std * noise * real[:, :, None, None].to(embeds.dtype)
        lengths = lengths.clamp(min=1)
        width = int(lengths.max()) + self.min_len - 1  # every window that starts on a real token
        embeds = embeds[:, :width]
        if embeds.shape[1] < width:
            embeds = F.pad(embeds, (0, 0, 0, 0, 0, width - embeds.shape[1]))
        x = embeds.permute(0, 2, 1, 3).reshape(b * self.num_rep, width, self.rep_dim)  # (B * R, T', e)
        convs = list(self.convs)
        pooled = conv_max_pool(
            x, lengths.repeat_interleave(self.num_rep), [c.weight for c in convs], [c.bias for c in convs]
        )  # (B * R, F)
        feats = self.dropout(self.highway(F.relu(pooled)))
        logits = self.out(self.fc(feats)).view(b, self.num_rep)  # (B, R)
        return logits if per_rep else logits.mean(dim=1)

    def spec(self) -> dict:
        return {
            "kind": "relgan",
            "vocab_size": self.vocab_size,
            "embed_dim": self.embed_dim,
            "num_rep": self.num_rep,
            "filter_sizes": self.filter_sizes,
            "num_filters": self.num_filters,
            "dropout": self.dropout_p,
            "highway": self.use_highway,
            "pad_id": self.pad_id,
            "eos_id": self.eos_id,
            "hidden": self.hidden,
            **({"spectral_norm": True} if self.spectral_norm else {}),
        }

    @classmethod
    def from_spec(cls, spec: dict) -> RelGANDiscriminator:
        return cls(**{k: v for k, v in spec.items() if k != "kind"})
