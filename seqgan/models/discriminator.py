"""CNN discriminator of SeqGAN (Yu et al. 2017, arXiv 1609.05473; after Kim 2014 and Zhang & LeCun 2015).

Token embeddings -> parallel 1-D convolutions of several widths (each with its own filter count) -> ReLU ->
max-over-time pooling -> concatenation -> highway layer -> dropout -> one logit per sequence. Inputs can be token
ids ``(B, T)`` or probability vectors over the vocabulary ``(B, T, V)`` (soft inputs for relaxed training), read
through the same embedding matrix.

Options for relaxed (Gumbel-softmax) training: spectral normalization of the convolutions and linear layers
(Miyato et al. 2018, ``spectral_norm=True`` or :meth:`CNNDiscriminator.enable_spectral_norm`) and instance noise
(``noise_std`` in :meth:`CNNDiscriminator.forward`). Both are off by default and then change nothing.

The convolutions and the max-over-time pooling are one operation, :func:`conv_max_pool`, whose backward uses what
max pooling implies: each pooled feature ``(b, f)`` comes from one window, so the filter gradient is a weighted
sum of ``B`` gathered windows per filter tap (one ``embedding_bag`` per width, independent of the sequence length)
instead of a dense correlation over every window, and the input gradient is one transposed convolution of the
scattered pooled gradients. Under bf16 autocast the convolutions and the input gradient run in bfloat16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqgan.data.datasets import sequence_mask


def embed_inputs(embedding: nn.Embedding, inputs: torch.Tensor, vocab: int | None = None) -> torch.Tensor:
    """``(B, T)`` token ids or ``(B, T, V)`` probability vectors -> ``(B, T, E)`` through ``embedding``'s matrix
    (a probability vector reads the expected embedding, so relaxed samples and ids share one code path).
    ``vocab``: the vocabulary's size, when the embedding has extra rows after it (default: all its rows)."""
    if inputs.dim() == 2:
        return embedding(inputs)
    vocab = embedding.num_embeddings if vocab is None else vocab
    if inputs.dim() == 3 and inputs.shape[-1] == vocab:
        return inputs @ embedding.weight[:vocab]  # (B, T, V) @ (V, E)
    raise ValueError(f"expected (B, T) token ids or (B, T, {vocab}) vectors, got {tuple(inputs.shape)}")


def conv_max_pool(
    x: torch.Tensor,
    lengths: torch.Tensor,
    weights: list[torch.Tensor],
    biases: list[torch.Tensor | None],
) -> torch.Tensor:
    """Max-over-time pooled 1-D convolutions of several widths, over the windows that start on a real token.

    Equal to ``cat_k(max over s < lengths[b] of conv1d(x, W_k, b_k)[b, :, s])`` (the windows read ``x``, which is
    zero past each row's end), forward and backward (a feature's gradient goes to the window that attains its
    maximum; equal windows are equal inputs, so the embedding gradients agree with any split among them).

    Args:
        x: ``(B, L + kmax - 1, E)`` inputs (embeddings) of rows of at most ``L`` real positions (what windows read
            past a row's end is what ``x`` holds there: zeros, the padding embedding, for padded ids).
        lengths: ``(B,)`` real positions per row, ``1 <= lengths <= L``.
        weights: per width ``k``, an ``(n_k, E, k)`` convolution weight (``kmax`` is the widest).
        biases: per width, ``(n_k,)`` or None.
    Returns:
        ``(B, sum n_k)`` pooled maxima, before any activation (in the autocast dtype under autocast).
    """
    return _ConvMaxPool.apply(x, lengths, len(weights), *weights, *biases)


class _ConvMaxPool(torch.autograd.Function):
    """:func:`conv_max_pool`: convolutions with a fused masked max, and a backward that uses the argmax."""

    @staticmethod
    def forward(ctx, x, lengths, n, *params):
        weights, biases = params[:n], params[n:]
        device = x.device.type
        cdt = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        kmax = max(w.shape[2] for w in weights)
        windows = x.shape[1] - kmax + 1  # L: window starts that can hold a real token
        with torch.autocast(device, enabled=False):
            xt = x.to(cdt).transpose(1, 2)  # (B, E, L + kmax - 1)
            invalid = None  # windows starting past a row's end; none when every row is full (no masking pass)
            if int(lengths.min()) < windows:
                invalid = (torch.arange(windows, device=x.device)[None, :] >= lengths[:, None])[
                    :, None, :
                ]  # (B, 1, L)
            values, indices = [], []
            for w, b in zip(weights, biases, strict=True):
                k = w.shape[2]
                y = F.conv1d(
                    xt[:, :, : windows + k - 1], w.to(cdt), None if b is None else b.to(cdt)
                )  # (B, n, L)
                if invalid is not None:
                    y.masked_fill_(invalid, float("-inf"))
                v, i = y.max(dim=2)  # (B, n) each
                values.append(v)
                indices.append(i)
        ctx.n, ctx.cdt, ctx.windows = n, cdt, windows
        ctx.has_bias = [b is not None for b in biases]
        ctx.biases, ctx.lengths = biases, lengths  # for a differentiable backward (create_graph)
        ctx.save_for_backward(x, *weights, *indices)
        return torch.cat(values, dim=1)

    @staticmethod
    def backward(ctx, grad):
        n, cdt, windows = ctx.n, ctx.cdt, ctx.windows
        x, *rest = ctx.saved_tensors
        weights, indices = rest[:n], rest[n:]
        if torch.is_grad_enabled():  # create_graph (a gradient penalty): differentiate the plain computation
            return _plain_backward(ctx, grad, x, weights, windows)
        batch, width, embed = x.shape
        need_x = ctx.needs_input_grad[0]
        xt = x.to(cdt).transpose(1, 2)  # (B, E, L + kmax - 1)
        table = x.reshape(batch * width, embed)  # every window's rows, for the filter gradients
        row0 = (torch.arange(batch, device=x.device) * width)[None, None, :]  # (1, 1, B)
        gx = torch.zeros(batch, embed, width, dtype=cdt, device=x.device) if need_x else None
        # one zeroed buffer for the scattered pooled gradients of every width (reset after each use)
        dy_buf = (
            torch.zeros(batch, max(w.shape[0] for w in weights), windows, dtype=cdt, device=x.device)
            if need_x
            else None
        )
        grad_w, grad_b, off = [], [], 0
        for i, (w, idx) in enumerate(zip(weights, indices, strict=True)):
            nk, _, k = w.shape
            g = grad[:, off : off + nk]  # (B, n_k)
            off += nk
            if ctx.needs_input_grad[3 + i]:
                # dW[f, :, j] = sum_b g[b, f] x[b, idx[b, f] + j]: one bag of B rows per (filter, tap)
                rows = (
                    idx.t()[:, None, :] + torch.arange(k, device=x.device)[None, :, None] + row0
                )  # (n, k, B)
                weights_bf = g.t()[:, None, :].expand(nk, k, batch).to(table.dtype)
                dw = F.embedding_bag(
                    rows.reshape(nk * k, batch),
                    table,
                    per_sample_weights=weights_bf.reshape(nk * k, batch),
                    mode="sum",
                )  # (n * k, E)
                grad_w.append(dw.view(nk, k, embed).transpose(1, 2).to(w.dtype))
            else:
                grad_w.append(None)
            grad_b.append(g.sum(dim=0) if ctx.has_bias[i] and ctx.needs_input_grad[3 + n + i] else None)
            if need_x:  # dX: the transposed convolution of the pooled gradients scattered to their windows
                dy = dy_buf[:, :nk]
                dy.scatter_(2, idx[:, :, None], g[:, :, None].to(cdt))
                span = windows + k - 1
                gx[:, :, :span] += torch.ops.aten.convolution_backward(
                    dy, xt[:, :, :span], w.to(cdt), None, [1], [0], [1], False, [0], 1, [True, False, False]
                )[0]
                dy.scatter_(2, idx[:, :, None], 0.0)
        gx = gx.transpose(1, 2).to(x.dtype) if need_x else None
        return (gx, None, None, *grad_w, *grad_b)


def _plain_pool(x, lengths, weights, biases, windows):
    """:func:`conv_max_pool` with autograd's own operations (differentiable twice)."""
    invalid = (torch.arange(windows, device=x.device)[None, :] >= lengths[:, None])[:, None, :]
    xt = x.transpose(1, 2)
    pooled = []
    for w, b in zip(weights, biases, strict=True):
        y = F.conv1d(xt[:, :, : windows + w.shape[2] - 1], w, b)
        pooled.append(y.masked_fill(invalid, float("-inf")).amax(dim=2))
    return torch.cat(pooled, dim=1)


def _plain_backward(ctx, grad, x, weights, windows):
    """The backward of :class:`_ConvMaxPool` when a graph of it is wanted (``create_graph``), in fp32."""
    biases = ctx.biases
    inputs = [x, *weights, *(b for b in biases if b is not None)]
    wanted = [ctx.needs_input_grad[0], *ctx.needs_input_grad[3 : 3 + len(weights)]]
    wanted += [
        need
        for b, need in zip(biases, ctx.needs_input_grad[3 + len(weights) :], strict=True)
        if b is not None
    ]
    with torch.enable_grad():
        out = _plain_pool(x, ctx.lengths, weights, biases, windows)
    chosen = [t for t, need in zip(inputs, wanted, strict=True) if need]
    grads = iter(torch.autograd.grad(out, chosen, grad.to(out.dtype), create_graph=True, allow_unused=True))
    found = [next(grads) if need else None for need in wanted]
    gx, gw = found[0], found[1 : 1 + len(weights)]
    gb_present = iter(found[1 + len(weights) :])
    gb = [next(gb_present) if b is not None else None for b in biases]
    return (gx, None, None, *gw, *gb)


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
    """Sequence classifier returning one real/fake logit per sequence (or ``num_outputs`` class logits).

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
        eos_id: end-of-sequence id. Only used when it equals ``pad_id`` (tokenizers whose padding is their EOS,
            as GPT-2's and SmolLM2's): the first EOS of a row stays a visible, trained token and the positions
            after it are read as the discriminator's own padding row, ``vocab_size`` (see :meth:`visible`).
        num_outputs: 1 (one real/fake logit, ``(B,)``) or the number of classes of a multi-class head (``(B, K)``
            logits: SentiGAN's and CatGAN's (k+1)-class discriminator, the category task's text classifier).
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
        eos_id: int | None = None,
        num_outputs: int = 1,
    ):
        super().__init__()
        if len(filter_sizes) != len(num_filters):
            raise ValueError("filter_sizes and num_filters must have the same length")
        if num_outputs < 1:
            raise ValueError(f"num_outputs must be >= 1, got {num_outputs}")
        self.num_outputs = num_outputs
        self.vocab_size, self.embed_dim = vocab_size, embed_dim
        self.filter_sizes, self.num_filters = list(filter_sizes), list(num_filters)
        self.dropout_p, self.use_highway, self.pad_id = dropout, highway, pad_id
        self.eos_id = eos_id
        # padding that is also EOS: an extra embedding row pads, so that the EOS itself stays visible
        self.own_pad = pad_id is not None and eos_id is not None and pad_id == eos_id
        self.pad_index = vocab_size if self.own_pad else pad_id
        """The id the embedding treats as padding (``pad_id``, or ``vocab_size`` when padding is EOS)."""
        self.embedding = nn.Embedding(vocab_size + self.own_pad, embed_dim, padding_idx=self.pad_index)
        self.convs = nn.ModuleList(
            nn.Conv1d(embed_dim, n, k) for k, n in zip(filter_sizes, num_filters, strict=False)
        )
        feat = sum(num_filters)
        self.highway = Highway(feat) if highway else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(feat, num_outputs)
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

    def visible(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` ids as the discriminator reads them: unchanged, unless padding is EOS (``own_pad``); then
        every position after a row's first EOS becomes :attr:`pad_index`, so ``y_1 .. y_n EOS`` is read with its
        EOS (a sentence that ended) and ``y_1 .. y_T`` without one (a sentence cut at ``max_len``)."""
        if not self.own_pad:
            return tokens
        return tokens.masked_fill(~sequence_mask(tokens, self.eos_id), self.pad_index)

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` ids or ``(B, T, V)`` probability vectors -> ``(B, T, E)`` embeddings."""
        if inputs.dim() == 2:
            return self.embedding(self.visible(inputs))
        return embed_inputs(self.embedding, inputs, self.vocab_size)

    def lengths(self, tokens: torch.Tensor) -> torch.Tensor | None:
        """``(B,)`` number of non-padding tokens of ``(B, T)`` ids (padding only follows the sequence; with
        padding that is EOS, the tokens up to and including the first EOS); None when the discriminator has no
        padding id."""
        if self.pad_id is None:
            return None
        return (self.visible(tokens) != self.pad_index).sum(dim=1)

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
        lengths = lengths.clamp(min=1)
        # every window that starts on a real token, zero (= padding embedding) beyond the end
        longest = int(lengths.max())
        width = longest + self.min_len - 1
        embeds = embeds[:, :width]
        if embeds.shape[1] < width:
            embeds = F.pad(embeds, (0, 0, 0, width - embeds.shape[1]))
        convs = list(self.convs)
        return conv_max_pool(embeds, lengths, [c.weight for c in convs], [c.bias for c in convs])

    def features(self, embeds: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T, E)`` -> ``(B, F)`` pooled, ReLU- and highway-transformed features (see :meth:`pool`)."""
        return self.highway(F.relu(self.pool(embeds, lengths)))

    @property
    def feature_dim(self) -> int:
        """F, the width of :meth:`features` (the filters of every width together)."""
        return sum(self.num_filters)

    def prefix_features(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The feature vector of each row's prefix: what LeakGAN leaks to its generator (Guo et al. 2018).

        Only the first ``lengths[b]`` tokens of row ``b`` are visible: the embeddings after them are zero (what
        padding reads), so the features of a prefix do not depend on what follows it. A prefix of length 0 (no
        token yet) reads one window of zeros.

        Args:
            tokens: ``(B, T)`` ids (anything after each prefix is ignored).
            lengths: ``(B,)`` prefix lengths, ``0 <= lengths <= T``.
        Returns:
            ``(B, F)`` pooled, ReLU- and highway-transformed features (:meth:`features`).
        """
        embeds = self.embed(tokens)  # (B, T, E)
        visible = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < lengths[:, None]
        embeds = embeds * visible[..., None].to(embeds.dtype)
        return self.features(embeds, lengths.clamp(min=1))

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        """``(B, F)`` max-pooled convolution outputs (:meth:`pool`) -> ``(B,)`` logits (``(B, K)`` with
        ``num_outputs = K > 1``): ReLU, highway, dropout, output layer. Shared by :meth:`forward` and the
        rollout's prefix scorer (:class:`~seqgan.models.cnn_scorer.CNNScorer`)."""
        out = self.out(self.dropout(self.highway(F.relu(pooled))))
        return out.squeeze(-1) if self.num_outputs == 1 else out

    def forward(
        self,
        inputs: torch.Tensor,
        lengths: torch.Tensor | None = None,
        noise_std: float = 0.0,
        rng: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``(B, T)`` ids or ``(B, T, V)`` probability vectors -> ``(B,)`` logits (real = positive), or ``(B, K)``
        class logits with ``num_outputs = K > 1``.

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
        if self.own_pad and inputs.dim() == 3 and lengths is not None:  # padding vectors read EOS: zero them
            embeds = (
                embeds * (torch.arange(embeds.shape[1], device=embeds.device) < lengths[:, None])[..., None]
            )
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
            **({"eos_id": self.eos_id} if self.own_pad else {}),
            **({"num_outputs": self.num_outputs} if self.num_outputs != 1 else {}),
        }

    @classmethod
    def from_spec(cls, spec: dict) -> CNNDiscriminator:
        return cls(**{k: v for k, v in spec.items() if k != "kind"})
