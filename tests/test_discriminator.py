"""The CNN discriminator's fused convolution + max-over-time pooling (``conv_max_pool``) against the plain
autograd computation: forward and every gradient, padded ids, soft vectors, spectral normalization, repeated
windows, bf16 autocast and a gradient penalty's double backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seqgan.losses import gradient_penalty
from seqgan.models.discriminator import CNNDiscriminator, conv_max_pool

V = 40


def plain_pool(d: CNNDiscriminator, embeds: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The same maths with autograd's own operations: conv1d per width, masked amax."""
    lengths = lengths.clamp(min=1)
    width = int(lengths.max()) + d.min_len - 1
    embeds = embeds[:, :width]
    if embeds.shape[1] < width:
        embeds = F.pad(embeds, (0, 0, 0, width - embeds.shape[1]))
    x = embeds.transpose(1, 2)
    pooled = []
    for conv in d.convs:
        h = conv(x)[:, :, : int(lengths.max())]
        starts = torch.arange(h.shape[2])
        pooled.append(h.masked_fill((starts[None, :] >= lengths[:, None])[:, None, :], float("-inf")).amax(2))
    return torch.cat(pooled, dim=1)


def plain_forward(
    d: CNNDiscriminator, inputs: torch.Tensor, lengths: torch.Tensor | None = None
) -> torch.Tensor:
    if lengths is None:
        lengths = d.lengths(inputs) if inputs.dim() == 2 else torch.full((inputs.shape[0],), inputs.shape[1])
    return d.head(plain_pool(d, d.embed(inputs), lengths))


def grads_of(d: CNNDiscriminator, fn, weights: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    d.zero_grad(set_to_none=True)
    out = fn()
    (out.float() * weights).sum().backward()
    return out.detach(), {k: p.grad.clone() for k, p in d.named_parameters() if p.grad is not None}


def padded_ids(batch: int = 12, length: int = 11, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(3, V, (batch, length), generator=g)
    cut = torch.randint(1, length + 1, (batch,), generator=g)
    tokens[torch.arange(length)[None, :] >= cut[:, None]] = 0
    tokens[0] = torch.randint(3, V, (length,), generator=g)  # one full row
    return tokens


def discriminator(spectral_norm: bool = False) -> CNNDiscriminator:
    torch.manual_seed(1)
    return CNNDiscriminator(
        V, 16, (2, 3, 4, 5), (7, 8, 9, 10), dropout=0.0, pad_id=0, spectral_norm=spectral_norm
    )


def assert_same(a, b, atol=1e-5):
    (out_a, grads_a), (out_b, grads_b) = a, b
    torch.testing.assert_close(out_a, out_b, atol=atol, rtol=1e-4)
    assert grads_a.keys() == grads_b.keys()
    for k in grads_a:
        torch.testing.assert_close(grads_a[k], grads_b[k], atol=atol, rtol=1e-4, msg=k)


@pytest.mark.parametrize("spectral_norm", [False, True])
def test_padded_ids_forward_and_gradients_match_autograd(spectral_norm):
    d = discriminator(
        spectral_norm
    ).eval()  # eval: one spectral-norm power iteration is not rerun between calls
    tokens = padded_ids()
    weights = torch.randn(tokens.shape[0])
    assert_same(
        grads_of(d, lambda: d(tokens), weights), grads_of(d, lambda: plain_forward(d, tokens), weights)
    )


def test_soft_vectors_forward_and_gradients_match_autograd():
    d = discriminator()
    g = torch.Generator().manual_seed(2)
    vectors = torch.softmax(torch.randn(6, 9, V, generator=g) * 3, dim=-1).requires_grad_(True)
    lengths = torch.tensor([9, 3, 5, 9, 1, 7])
    weights = torch.randn(6)
    a = grads_of(d, lambda: d(vectors, lengths), weights)
    ga = vectors.grad.clone()
    vectors.grad = None
    b = grads_of(d, lambda: plain_forward(d, vectors, lengths), weights)
    assert_same(a, b)
    torch.testing.assert_close(ga, vectors.grad, atol=1e-6, rtol=1e-4)


def test_repeated_windows_give_the_same_embedding_gradients():
    """Equal windows tie for the maximum; the gradient may go to either, and the embeddings' gradients agree."""
    d = discriminator()
    tokens = torch.tensor([[5, 6, 7, 8, 9, 5, 6, 7, 8, 9, 5, 6], [4, 4, 4, 4, 4, 4, 2, 0, 0, 0, 0, 0]])
    weights = torch.tensor([1.0, -0.5])
    assert_same(
        grads_of(d, lambda: d(tokens), weights), grads_of(d, lambda: plain_forward(d, tokens), weights)
    )


def test_the_pooled_maximum_is_over_the_windows_that_start_on_a_real_token():
    """Hand-built: one width-2 filter summing its two inputs (1-dim embeddings), so a window's value is the sum
    of two consecutive inputs, zero past the end."""
    x = torch.tensor([[[1.0], [5.0], [2.0], [0.0]], [[3.0], [-1.0], [0.0], [0.0]]])  # (2, L + 1, 1), L = 3
    w, b = torch.ones(1, 1, 2, requires_grad=True), torch.zeros(1, requires_grad=True)
    pooled = conv_max_pool(x, torch.tensor([3, 1]), [w], [b])
    # row 0: windows 1+5, 5+2, 2+0 -> 7; row 1: only the window at 0 counts: 3 + (-1) = 2 (not -1 + 0)
    assert pooled.flatten().tolist() == [7.0, 2.0]
    pooled.sum().backward()
    assert w.grad.flatten().tolist() == [5.0 + 3.0, 2.0 - 1.0] and b.grad.tolist() == [2.0]


def test_bf16_autocast_stays_close_to_fp32():
    d = discriminator()
    tokens = padded_ids(32, 15, seed=3)
    weights = torch.randn(32)
    ref = grads_of(d, lambda: plain_forward(d, tokens), weights)

    def bf16():
        with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
            return d(tokens)

    out, grads = grads_of(d, bf16, weights)
    torch.testing.assert_close(out.float(), ref[0], atol=3e-2, rtol=3e-2)
    for k, g in grads.items():
        scale = ref[1][k].abs().max().clamp(min=1e-3)
        assert (g.float() - ref[1][k]).abs().max() <= 0.05 * scale, k


def test_gradient_penalty_double_backward_matches_autograd():
    """WGAN-GP differentiates the critic's input gradient: the fused backward switches to a differentiable one."""
    d = discriminator()
    g = torch.Generator().manual_seed(4)
    real = F.one_hot(torch.randint(3, V, (5, 8), generator=g), V).float()
    fake = torch.softmax(torch.randn(5, 8, V, generator=g), dim=-1)
    eps = torch.rand(5, generator=g)
    lengths = torch.tensor([8, 6, 8, 2, 5])
    results = []
    for critic in (lambda x: d(x, lengths), lambda x: plain_forward(d, x, lengths)):
        d.zero_grad(set_to_none=True)
        gradient_penalty(critic, real, fake, eps=eps).backward()
        results.append({k: p.grad.clone() for k, p in d.named_parameters() if p.grad is not None})
    assert results[0].keys() == results[1].keys() and "convs.0.weight" in results[0]
    for k in results[0]:
        torch.testing.assert_close(results[0][k], results[1][k], atol=1e-5, rtol=1e-4, msg=k)
