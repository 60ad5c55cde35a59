"""Discriminator training loops: length-bucketed batches (``seqgan.trainers.steps.length_batches``)."""

import torch

from seqgan.models.discriminator import CNNDiscriminator
from seqgan.trainers.steps import discriminator_accuracy, discriminator_epochs, length_batches


def _corpus(n: int = 1000, t: int = 30, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, t + 1, (n,), generator=g)
    x = torch.randint(3, 50, (n, t), generator=g)
    x[torch.arange(t)[None, :] >= lengths[:, None]] = 0
    return x


def _lengths(x: torch.Tensor) -> torch.Tensor:
    return (x != 0).sum(1)


def test_length_batches_use_every_row_once_and_group_similar_lengths():
    x = _corpus()
    plain = length_batches(x, 900, 32, torch.Generator().manual_seed(1))
    bucketed = length_batches(x, 900, 32, torch.Generator().manual_seed(1), _lengths, pool_batches=10)
    for batches in (plain, bucketed):
        rows = torch.cat(batches)
        assert rows.numel() == 900 and rows.unique().numel() == 900
        assert max(b.numel() for b in batches) == 32
    # the same rows as the plain order (the first 900 of one random permutation), grouped by length
    assert torch.equal(torch.cat(plain).sort().values, torch.cat(bucketed).sort().values)

    def spread(batches):
        return sum(float(_lengths(x[b]).max() - _lengths(x[b]).min()) for b in batches) / len(batches)

    assert spread(bucketed) < 0.25 * spread(plain)
    # the batch order is shuffled, not sorted: lengths of consecutive batches are not monotone
    firsts = [int(_lengths(x[b]).min()) for b in bucketed]
    assert firsts != sorted(firsts)
    again = length_batches(x, 900, 32, torch.Generator().manual_seed(1), _lengths, pool_batches=10)
    assert all(torch.equal(a, b) for a, b in zip(bucketed, again, strict=True))


def test_length_batches_without_lengths_fall_back_to_plain_batches():
    x = _corpus(100)
    a = length_batches(x, 100, 16, torch.Generator().manual_seed(3), lambda t: None)
    b = length_batches(x, 100, 16, torch.Generator().manual_seed(3))
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


def test_bucketed_epochs_train_the_discriminator_on_every_pair():
    torch.manual_seed(0)
    d = CNNDiscriminator(50, embed_dim=8, filter_sizes=(2, 3), num_filters=(8, 8), dropout=0.0)
    real, fake = _corpus(256, seed=1), _corpus(256, seed=2)
    real[real == 49] = 48
    fake[:, 0] = 49  # an easy tell: a token real rows never contain
    opt = torch.optim.Adam(d.parameters(), lr=1e-2)
    before = [p.detach().clone() for p in d.parameters()]
    m = discriminator_epochs(d, opt, real, fake, 4, 32, torch.Generator().manual_seed(0), by_length=True)
    assert set(m) == {"discriminator/loss", "discriminator/acc_real", "discriminator/acc_fake"}
    assert all(not torch.equal(b, p) for b, p in zip(before, d.parameters(), strict=True) if b.numel() > 1)
    acc = discriminator_accuracy(d, real, fake)
    assert acc["discriminator/eval_acc_real"] > 0.9 and acc["discriminator/eval_acc_fake"] > 0.9


def test_paired_length_batches_pair_similar_lengths():
    real, fake = _corpus(640, seed=4), _corpus(640, seed=5)
    pairs = length_batches((real, fake), 600, 32, torch.Generator().manual_seed(2), _lengths, pool_batches=5)
    assert len(pairs) == 600 // 32 + 1
    for side in (0, 1):
        rows = torch.cat([p[side] for p in pairs])
        assert rows.numel() == 600 and rows.unique().numel() == 600
    widths = [(int(_lengths(real[r]).max()), int(_lengths(fake[f]).max())) for r, f in pairs]
    assert (
        sum(abs(a - b) for a, b in widths) / len(widths) <= 3
    )  # the two halves of a step have similar widths
    plain = length_batches((real, fake), 600, 32, torch.Generator().manual_seed(2))
    r0, f0 = plain[0]
    g = torch.Generator().manual_seed(2)
    assert torch.equal(r0, torch.randperm(640, generator=g)[:32])  # plain: consecutive slices of each order
    assert torch.equal(f0, torch.randperm(640, generator=g)[:32])


def test_discriminator_step_one_call_equals_two_calls():
    from seqgan.trainers.steps import discriminator_step

    torch.manual_seed(0)
    d = CNNDiscriminator(50, embed_dim=8, filter_sizes=(2, 3), num_filters=(8, 8), dropout=0.0)
    twin = CNNDiscriminator(50, embed_dim=8, filter_sizes=(2, 3), num_filters=(8, 8), dropout=0.0)
    twin.load_state_dict(d.state_dict())
    real, fake = _corpus(16, seed=1), _corpus(16, seed=2)
    opt, opt2 = torch.optim.SGD(d.parameters(), lr=0.1), torch.optim.SGD(twin.parameters(), lr=0.1)
    m = discriminator_step(d, opt, real, fake)  # one call on the concatenation
    padded = torch.cat([fake, torch.zeros(16, 5, dtype=fake.dtype)], dim=1)  # same rows, more padding columns
    m2 = discriminator_step(twin, opt2, real, padded)  # other widths: two calls
    assert abs(m["discriminator/loss"] - m2["discriminator/loss"]) < 1e-6
    for a, b in zip(d.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
