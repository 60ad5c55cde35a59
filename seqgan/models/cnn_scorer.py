"""Exact, faster scores of a :class:`~seqgan.models.discriminator.CNNDiscriminator` on Monte-Carlo completions.

SeqGAN's rollout (Yu et al. 2017, arXiv 1609.05473, eq. 4) scores ``R`` completions of every prefix
``y_1 .. y_t`` of a sample. The discriminator max-pools, per width ``k``, the windows that *start* on one of the
sequence's ``L`` real (non-padding) tokens, reading zeros past the end. Completion ``(b, t)`` equals
``tokens[b, :t]`` on its first ``t`` positions, so every window that ends before ``t`` has the value it has on
the sample: their max is a running max over the sample's own windows (``prefix_max``), computed once. The
remaining windows are sums of per-token, per-tap responses ``W_k[:, :, j] @ emb[v]`` looked up in a
``(k * (V + 1), n_k)`` table (row ``V``: the zero past the end) with one ``F.embedding_bag`` per width, built
once per rollout. Only this pooling differs from the module: the pooled maxima go through the discriminator's
own :meth:`~seqgan.models.discriminator.CNNDiscriminator.head` (ReLU, highway, output layer; eval mode, so no
dropout). The first batch is checked against the module itself, which scores every batch if they disagree.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from seqgan.models.discriminator import CNNDiscriminator

__all__ = ["CNNScorer"]

# A subclass that overrides one of these may pool differently: it is scored by calling the module.
_POOLING_METHODS = ("forward", "pool", "features", "embed", "lengths")


class CNNScorer:
    """Scores completions of prefixes of ``tokens`` like ``discriminator`` (in eval mode) does.

    Build it with :meth:`create`, which checks that it applies.

    Args:
        d: the discriminator (put in eval mode by the caller).
        tokens: ``(B, T)`` samples whose prefixes are completed (the first ``L_b - 1`` tokens of row ``b`` hold
            no padding id).
    """

    def __init__(self, d: CNNDiscriminator, tokens: torch.Tensor) -> None:
        self.d = d
        self.dtype = d.embedding.weight.dtype  # of the pooled maxima handed to ``d.head``
        emb = d.embedding.weight.detach().float()  # (V, E)
        vocab = emb.shape[0]
        self.rows = vocab + 1  # table rows per tap; id ``vocab`` reads the zeros past the end of a sequence
        self.pad_id = d.pad_index  # the embedding's padding row (``vocab_size`` when padding is EOS)
        self.widths = [conv.kernel_size[0] for conv in d.convs]
        self.kmax = max(self.widths)
        self.tables = []  # per width: (k * (V + 1), n_k); row j * (V + 1) + v is W_k[:, :, j] @ emb[v]
        self.biases = []
        for conv in d.convs:
            w = conv.weight.detach().float()  # (n, E, k)
            k = w.shape[2]
            table = torch.zeros(k, self.rows, w.shape[0], device=emb.device)
            table[:, :vocab] = torch.einsum("ve,nej->jvn", emb, w)
            self.tables.append(table.view(k * self.rows, w.shape[0]))
            self.biases.append(conv.bias.detach().float() if conv.bias is not None else None)
        # running max over the sample's own windows: prefix_max[k][b, t] = max over windows ending before t
        x = d.embedding(d.visible(tokens)).float().transpose(1, 2)  # (B, E, T)
        seq_len = tokens.shape[1]
        self.prefix_max = []
        for conv, k in zip(d.convs, self.widths, strict=True):
            run = conv(x).cummax(dim=2).values.transpose(1, 2)  # (B, T - k + 1, n)
            pm = torch.full((tokens.shape[0], seq_len, run.shape[2]), float("-inf"), device=tokens.device)
            pm[:, k:] = run[:, : seq_len - k]  # prefix t covers windows 0 .. t - k
            self.prefix_max.append(pm)
        self.verified = False
        self.fallback = False  # score with the module (the first batch disagreed)

    @classmethod
    def create(cls, d: torch.nn.Module, tokens: torch.Tensor, lengths: torch.Tensor) -> CNNScorer | None:
        """The scorer for completions of ``tokens``' prefixes, or None when it does not apply: ``d`` is not a
        :class:`CNNDiscriminator` whose pooling methods are its own, its convolutions are strided, padded or
        dilated, the sequences are shorter than its widest filter, or a prefix holds the padding id.

        Args:
            d: the discriminator.
            tokens: ``(B, T)`` samples.
            lengths: ``(B,)`` real tokens per sample (EOS included).
        """
        if not (
            isinstance(d, CNNDiscriminator)
            and all(getattr(type(d), m) is getattr(CNNDiscriminator, m) for m in _POOLING_METHODS)
            and all(c.stride == (1,) and c.padding == (0,) and c.dilation == (1,) for c in d.convs)
            and tokens.shape[1] >= d.min_len
        ):
            return None
        if d.pad_id is not None:  # the prefixes must be real tokens for the discriminator too
            inside = torch.arange(tokens.shape[1], device=tokens.device) < lengths[:, None] - 1  # (B, T)
            if bool(((d.visible(tokens) == d.pad_index) & inside).any()):
                return None
        return cls(d, tokens)

    def __call__(self, seqs: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Logits of completions.

        Args:
            seqs: ``(N, T)`` completions; row ``i`` completes prefix ``t[i]`` of sample ``b[i]``.
            b: ``(N,)`` sample indices (rows of the ``tokens`` the scorer was built for).
            t: ``(N,)`` prefix lengths, ``1 <= t < T``.
        Returns:
            ``(N,)`` float logits (``(N, K)`` for a discriminator with ``num_outputs = K > 1``).
        """
        if self.fallback:
            return self.d(seqs).float()
        logits = self.d.head(self._pool(seqs, b, t).to(self.dtype)).float()
        if not self.verified:  # guard against a discriminator whose computation differs from the module's
            self.verified = True
            ref = self.d(seqs[:8]).float()
            if not torch.allclose(logits[:8], ref, rtol=1e-4, atol=1e-4):
                warnings.warn(
                    "MonteCarloRollout: the fast CNN-discriminator scorer disagrees with the module "
                    f"(max diff {float((logits[:8] - ref).abs().max()):.3g}); scoring with the module instead",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self.fallback = True
                return self.d(seqs).float()
        return logits

    def _pool(self, seqs: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``(N, F)`` max-pooled convolution outputs of the completions (``CNNDiscriminator.pool``)."""
        seqs = self.d.visible(seqs)  # padding that is EOS: read as the discriminator reads it
        n, seq_len = seqs.shape
        device = seqs.device
        t_min = int(t.min())
        flat_bt = b * seq_len + t
        # windows start on the first L real tokens (at least one), as CNNDiscriminator.pool
        if self.pad_id is None:
            lengths = torch.full((n,), seq_len, device=device)
        else:
            lengths = (seqs != self.pad_id).sum(dim=1).clamp(min=1)
        stop = int(lengths.max())  # no window starts after the longest completion's last real token
        short = (lengths < stop).nonzero().squeeze(1)  # rows with fewer windows than the longest
        ext = torch.cat([seqs, seqs.new_full((n, self.kmax - 1), self.rows - 1)], dim=1)  # zeros past the end
        pooled = []
        for k, table, bias, pm in zip(self.widths, self.tables, self.biases, self.prefix_max, strict=True):
            first = min(max(0, t_min - k + 1), stop - 1)  # first window start that can read a sampled token
            windows = stop - first  # starts first .. stop - 1
            ids = ext[:, first : stop + k - 1].unfold(1, k, 1)  # (N, windows, k)
            ids = ids + torch.arange(k, device=device) * self.rows
            vals = F.embedding_bag(ids.reshape(-1, k), table, mode="sum")
            vals = vals.view(n, windows, -1)  # (N, windows, n_k)
            new = vals.amax(1)  # (N, n_k)
            if short.numel():  # windows starting past a row's last real token do not count
                starts = torch.arange(first, stop, device=device)
                sub = vals[short].masked_fill_(
                    (starts[None, :] >= lengths[short, None])[:, :, None], float("-inf")
                )
                new[short] = sub.amax(1)
            if bias is not None:
                new = new + bias
            prefix = pm.view(-1, pm.shape[2]).index_select(0, flat_bt)  # (N, n_k)
            pooled.append(torch.maximum(new, prefix))
        return torch.cat(pooled, dim=1)  # (N, F)
