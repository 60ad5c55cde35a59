"""The GAN loss family of ``seqgan.losses`` against hand-computed values, the gradient penalty against its
definition, and the discriminator's spectral-norm and instance-noise options."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from seqgan.losses import (
    GAN_LOSSES,
    clip_weights_,
    discriminator_bce,
    gan_d_loss,
    gan_g_loss,
    gradient_penalty,
    hinge_d_loss,
    lsgan_d_loss,
    lsgan_g_loss,
    rsgan_d_loss,
    rsgan_g_loss,
    standard_d_loss,
    standard_g_loss,
    wasserstein_d_loss,
    wasserstein_g_loss,
)
from seqgan.models.discriminator import CNNDiscriminator
from seqgan.models.lstm import LSTMGenerator
from seqgan.rollout import MonteCarloRollout

REAL = torch.tensor([1.0, -0.5])
FAKE = torch.tensor([0.2, -1.0])


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def close(a: torch.Tensor, b: float) -> bool:
    return abs(float(a) - b) < 1e-6


# ---------------------------------------------------------------------------------------------- hand-computed
def test_standard_losses_hand_computed():
    d = (-math.log(sig(1.0)) - math.log(sig(-0.5))) / 2 + (
        -math.log(1 - sig(0.2)) - math.log(1 - sig(-1.0))
    ) / 2
    assert close(standard_d_loss(REAL, FAKE), d)
    assert close(discriminator_bce(REAL, FAKE), d)  # the existing BCE is the s = 0 case
    s = 0.1  # one-sided label smoothing: real target 0.9, fake target stays 0
    real_term = sum(-(1 - s) * math.log(sig(r)) - s * math.log(1 - sig(r)) for r in (1.0, -0.5)) / 2
    fake_term = (-math.log(1 - sig(0.2)) - math.log(1 - sig(-1.0))) / 2
    assert close(standard_d_loss(REAL, FAKE, smoothing=s), real_term + fake_term)
    assert close(standard_g_loss(FAKE), (-math.log(sig(0.2)) - math.log(sig(-1.0))) / 2)  # non-saturating


def test_rsgan_losses_hand_computed():
    # pairs: (1.0, 0.2) and (-0.5, -1.0): differences 0.8 and 0.5
    assert close(rsgan_d_loss(REAL, FAKE), (-math.log(sig(0.8)) - math.log(sig(0.5))) / 2)
    assert close(rsgan_g_loss(REAL, FAKE), (-math.log(sig(-0.8)) - math.log(sig(-0.5))) / 2)
    s = 0.2
    want = sum(-(1 - s) * math.log(sig(x)) - s * math.log(1 - sig(x)) for x in (0.8, 0.5)) / 2
    assert close(rsgan_d_loss(REAL, FAKE, smoothing=s), want)


def test_lsgan_hinge_wasserstein_hand_computed():
    assert close(lsgan_d_loss(REAL, FAKE), 0.5 * (0.0**2 + 1.5**2) / 2 + 0.5 * (0.2**2 + 1.0**2) / 2)
    assert close(
        lsgan_d_loss(REAL, FAKE, smoothing=0.1), 0.5 * (0.1**2 + 1.4**2) / 2 + 0.5 * (0.04 + 1.0) / 2
    )
    assert close(lsgan_g_loss(FAKE), 0.5 * (0.8**2 + 2.0**2) / 2)
    # relu(1 - r): 0, 1.5 -> 0.75; relu(1 + f): 1.2, 0 -> 0.6
    assert close(hinge_d_loss(REAL, FAKE), 1.35)
    assert close(wasserstein_d_loss(REAL, FAKE), -0.4 - 0.25)
    assert close(wasserstein_g_loss(FAKE), 0.4)


def test_dispatch_matches_the_functions():
    assert close(gan_d_loss("rsgan", REAL, FAKE, 0.2), float(rsgan_d_loss(REAL, FAKE, 0.2)))
    assert close(gan_d_loss("wgan-gp", REAL, FAKE), -0.65)
    assert close(gan_g_loss("hinge", None, FAKE), 0.4)
    assert close(gan_g_loss("standard", None, FAKE), float(standard_g_loss(FAKE)))
    for kind in GAN_LOSSES:
        assert torch.isfinite(gan_d_loss(kind, REAL, FAKE)) and torch.isfinite(gan_g_loss(kind, REAL, FAKE))
    with pytest.raises(ValueError, match="real batch"):
        gan_g_loss("rsgan", None, FAKE)
    with pytest.raises(ValueError, match="label smoothing"):
        gan_d_loss("hinge", REAL, FAKE, 0.1)
    with pytest.raises(ValueError, match="unknown GAN loss"):
        gan_d_loss("nope", REAL, FAKE)


def test_clip_weights():
    lin = torch.nn.Linear(3, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.5, -0.005, 0.0], [-2.0, 0.01, 0.02]]))
    clip_weights_(lin, 0.01)
    assert torch.equal(lin.weight, torch.tensor([[0.01, -0.005, 0.0], [-0.01, 0.01, 0.01]]))
    assert float(lin.bias.detach().abs().max()) <= 0.01


# ---------------------------------------------------------------------------------------------- gradient penalty
def test_gradient_penalty_of_a_linear_critic_is_closed_form():
    """C(x) = <W, x>: the gradient is W everywhere, so the penalty is (||W|| - 1)^2 for any interpolation."""
    w = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    real, fake = torch.rand(3, 4, 5), torch.rand(3, 4, 5)
    gp = gradient_penalty(lambda x: (x * w).sum(dim=(1, 2)), real, fake, rng=torch.Generator().manual_seed(1))
    assert abs(float(gp) - (float(w.norm()) - 1.0) ** 2) < 1e-4


def test_gradient_penalty_matches_its_definition_on_the_cnn():
    """One-hot real, soft fake; the penalty equals a per-row autograd computation and trains the critic."""
    torch.manual_seed(0)
    vocab, t = 9, 6
    d = CNNDiscriminator(vocab, embed_dim=4, filter_sizes=(2, 3), num_filters=(5, 5), dropout=0.0, pad_id=0)
    real = F.one_hot(torch.randint(3, vocab, (3, t)), vocab).float()
    fake = torch.softmax(torch.randn(3, t, vocab), dim=-1)
    lengths = torch.tensor([6, 4, 5])
    eps = torch.tensor([0.2, 0.7, 0.5])
    gp = gradient_penalty(lambda x: d(x, lengths), real, fake, eps=eps)
    want = 0.0
    for i in range(3):
        x = (eps[i] * real[i] + (1 - eps[i]) * fake[i]).unsqueeze(0).requires_grad_(True)
        (g,) = torch.autograd.grad(d(x, lengths[i : i + 1]).sum(), x)
        want += (float(g.norm()) - 1.0) ** 2 / 3
    assert abs(float(gp.detach()) - want) < 1e-5
    gp.backward()  # create_graph: the penalty has a gradient with respect to the critic's weights
    assert d.convs[0].weight.grad is not None and float(d.convs[0].weight.grad.abs().sum()) > 0


# ---------------------------------------------------------------------------------------------- discriminator options
def make_disc(**kw) -> CNNDiscriminator:
    torch.manual_seed(0)
    return CNNDiscriminator(
        12, embed_dim=6, filter_sizes=(2, 3), num_filters=(7, 7), dropout=0.0, pad_id=0, **kw
    )


def test_options_off_change_nothing():
    d = make_disc()
    assert "spectral_norm" not in d.spec() and not d.spectral_norm
    x = torch.tensor([[4, 5, 6, 2, 0, 0], [7, 8, 2, 0, 0, 0]])
    want = d.out(d.dropout(d.features(d.embed(x), d.lengths(x)))).squeeze(-1)
    assert torch.equal(d(x), want)
    assert torch.equal(d(x, noise_std=0.0), want)


def test_instance_noise_only_on_real_positions():
    d = make_disc()
    x = torch.tensor([[4, 5, 6, 2, 0, 0]])
    a = d(x, noise_std=0.5, rng=torch.Generator().manual_seed(3))
    b = d(x, noise_std=0.5, rng=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, d(x))  # seeded, and it does perturb
    # padding stays padding: appending more PAD columns does not change the noisy output for the same draws
    longer = torch.cat([x, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    emb = d.embed(x)
    noise = torch.randn(emb.shape, generator=torch.Generator().manual_seed(3))
    noise[:, 4:] = 0  # what forward keeps: the first 4 positions
    manual = d.out(d.features(emb + 0.5 * noise, torch.tensor([4]))).squeeze(-1)
    assert torch.allclose(a, manual)
    assert torch.isfinite(d(longer, noise_std=0.5))


def test_spectral_norm_round_trip_and_unit_norm():
    d = make_disc(spectral_norm=True)
    assert d.spec()["spectral_norm"] is True
    x = torch.randint(3, 12, (4, 8))
    d.train()
    for _ in range(30):  # power iterations run in training-mode forwards
        d(x)
    d.eval()
    for layer in (d.out, d.convs[0], d.highway.gate):
        w = layer.weight.detach().reshape(layer.weight.shape[0], -1)
        assert abs(float(torch.linalg.matrix_norm(w, 2)) - 1.0) < 1e-3
    e = CNNDiscriminator.from_spec(d.spec())
    e.load_state_dict(d.state_dict())
    e.eval()
    assert torch.equal(d(x), e(x))
    # enabling it later (on a pretrained discriminator) keeps the weights as the unnormalized originals
    f = make_disc()
    before = f.out.weight.detach().clone()
    f.enable_spectral_norm()
    assert torch.equal(f.out.parametrizations.weight.original, before)


def test_rollout_rewards_with_spectral_norm_match_the_module():
    """The fast rollout scorer must agree with calling the spectral-normalized discriminator."""

    class StepLSTM(LSTMGenerator):  # same decoding path for fast and plain rollouts: only the scorer differs
        def step(self, tokens, state):
            return super().step(tokens, state)

    torch.manual_seed(0)
    gen = StepLSTM(12, embed_dim=6, hidden_dim=8)
    d = make_disc(spectral_norm=True)
    d.train()
    d(torch.randint(3, 12, (4, 8)))
    tokens = torch.randint(3, 12, (3, 7))
    tokens[0, 4], tokens[0, 5:] = 2, 0
    rewards = []
    for fast in (True, False):
        rollout = MonteCarloRollout(gen, update_rate=0.0, fast=fast)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a disagreement of the fast scorer would warn
            rewards.append(rollout(tokens, d, 3, rng=torch.Generator().manual_seed(5)))
    assert torch.allclose(rewards[0], rewards[1], atol=1e-5)
