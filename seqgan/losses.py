"""Training objectives as plain functions with documented shapes.

The masked maximum-likelihood loss of MLE pretraining (also NLL_test); the log-probabilities of sampled tokens
under the distribution they were drawn from (:func:`sampled_log_probs`, the one gather every policy-gradient
method uses); the discriminator's binary cross-entropy; the REINFORCE loss of SeqGAN's adversarial generator updates (Yu et al. 2017, arXiv 1609.05473, eq. 6) with an
optional baseline and entropy bonus; ScratchGAN's dense per-step rewards (de Masson d'Autume et al. 2019, arXiv
1905.09922): rewards from a per-prefix discriminator, discounted returns, the per-step EMA baseline and the masked
per-prefix discriminator loss (the REINFORCE step itself is :func:`policy_gradient_loss` on the returns); the GAN
loss family of RelGAN (Nie et al. 2019): standard, relativistic (RSGAN), least squares, hinge, Wasserstein with
weight clipping, and the WGAN-GP gradient penalty (:func:`gan_d_loss`, :func:`gan_g_loss`); the category task's
multi-class pieces: the (k+1)-class discriminator targets and cross-entropy of SentiGAN (Wang & Wan 2018), its
penalty-based generator loss, the one-vs-rest logit whose sigmoid is a class probability, and CatGAN's class
scores (Liu et al. 2020, arXiv 1911.06641); the language-model discriminator's objectives: CoT's KL over the
vocabulary and its mediator's loss on the balanced mixture (Lu et al. 2019, arXiv 1804.03782), DPGAN's novelty
rewards and its discriminator's loss (Xu et al. 2018, arXiv 1802.01345); RankGAN's rank scores (cosine
relevance to a reference set, a softmax with inverse temperature gamma over a comparison set) and its ranker's
loss (Lin et al. 2017, arXiv 1705.11001); LeakGAN's hierarchical pieces (Guo et al. 2018, arXiv 1709.08624): the
feature-space directions of the goals, the Manager's cosine objective, the Worker's intrinsic reward and the
bootstrapped rescaled activation of rewards.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from seqgan.data.datasets import sequence_mask


def sequence_nll(generator, tokens: torch.Tensor, temperature: float = 1.0) -> tuple[torch.Tensor, int]:
    """Summed negative log-likelihood of ``tokens`` under ``generator`` (teacher forcing); padding never counts.

    Real tokens are those up to and including the first EOS (:func:`~seqgan.data.datasets.sequence_mask`).
    Trailing all-padding columns are dropped first (they change nothing in a causal model) and the vocabulary
    projection runs only at real tokens (``Generator.masked_logits``).

    Args:
        generator: any :class:`~seqgan.models.base.Generator`.
        tokens: ``(B, T)`` target sequences ``y_1 .. y_n EOS PAD ..``.
        temperature: score under ``softmax(logits / temperature)``.
    Returns:
        ``(sum of -log p(y_t) over real tokens, number of real tokens)``; the mean NLL is their ratio.
    """
    mask = sequence_mask(tokens, generator.eos_id)  # (B, T)
    width = int(mask.sum(dim=1).max())
    tokens, mask = tokens[:, :width], mask[:, :width]
    logits = generator.masked_logits(generator.teacher_inputs(tokens), mask).float()  # (N, V)
    if temperature != 1.0:
        logits = logits / temperature
    return F.cross_entropy(logits, tokens[mask], reduction="sum"), int(mask.sum())


def token_log_probs(
    logits: torch.Tensor, temperature: float = 1.0, banned: torch.Tensor | None = None
) -> torch.Tensor:
    """Log-probabilities of the sampling distribution: ``log_softmax(logits / temperature)`` with the ``banned``
    ids (PAD, BOS: ``Generator.never_sample``) at probability 0.

    Args:
        logits: ``(..., V)`` logits.
        temperature: the sampling temperature.
        banned: ``(K,)`` long ids excluded from sampling (None or empty: none).
    Returns:
        ``(..., V)`` float32 log-probabilities (``-inf`` at banned ids).
    """
    logits = logits.float()
    if banned is not None and len(banned):
        logits = logits.index_fill(-1, banned, float("-inf"))
    if temperature != 1.0:
        logits = logits / temperature
    return F.log_softmax(logits, dim=-1)


def sampled_log_probs(
    generator, tokens: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of sampled ``tokens`` under the distribution they were drawn from, with gradient.

    That distribution is the generator in eval mode (sampling and rollouts run without dropout, so the
    policy-gradient log-probabilities must too: with dropout on they would belong to another policy), at
    ``temperature``, with ``generator.never_sample`` excluded. The vocabulary projection runs at the real tokens
    only (``Generator.masked_logits``). The generator's train/eval mode is restored afterwards.

    Args:
        generator: any :class:`~seqgan.models.base.Generator` (or a DDP wrapper of one).
        tokens: ``(B, T)`` sampled ids.
        mask: ``(B, T)`` bool, True for real tokens (up to and including the first EOS).
        temperature: the sampling temperature.
    Returns:
        ``(B, T)`` log-probabilities of the chosen tokens (0 where ``mask`` is False) and the ``(N, V)``
        log-distributions at the ``N`` real tokens (for the entropy).
    """
    was_training = generator.training
    generator.eval()
    try:
        logits = generator.masked_logits(generator.teacher_inputs(tokens), mask)  # (N, V)
    finally:
        generator.train(was_training)
    banned = torch.tensor(generator.never_sample, dtype=torch.long, device=tokens.device)
    log_dist = token_log_probs(logits, temperature, banned)  # (N, V)
    chosen = log_dist.gather(1, tokens[mask][:, None]).squeeze(1)  # (N,)
    log_probs = torch.zeros(tokens.shape, dtype=chosen.dtype, device=tokens.device)
    return log_probs.masked_scatter(mask, chosen), log_dist


def discriminator_bce(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Standard GAN discriminator loss: -log D(real) - log(1 - D(fake)), each averaged over its batch.

    Args:
        logits_real: ``(B_r,)`` logits on real sequences.
        logits_fake: ``(B_f,)`` logits on generated sequences.
    """
    real = F.binary_cross_entropy_with_logits(logits_real, torch.ones_like(logits_real))  # -log(sigmoid(l))
    fake = F.binary_cross_entropy_with_logits(
        logits_fake, torch.zeros_like(logits_fake)
    )  # -log(1-sigmoid(l))
    return real + fake


def policy_gradient_loss(
    log_probs: torch.Tensor,
    rewards: torch.Tensor,
    mask: torch.Tensor,
    baseline: torch.Tensor | None = None,
) -> torch.Tensor:
    """REINFORCE loss of SeqGAN: ``-sum(log p(y_t) * (Q_t - b_t) * mask) / sum(mask)``.

    Its gradient is the policy gradient of eq. 6 of Yu et al. (2017), averaged over real tokens. Rewards and
    baseline are constants (detached); padding after EOS gets no gradient and never contributes, even where its
    log-probability is ``-inf`` (e.g. PAD excluded from the sampling distribution).

    Args:
        log_probs: ``(B, T)`` log-probability of each sampled token under the generator (with gradient).
        rewards: ``(B, T)`` action values ``Q_t`` (e.g. Monte-Carlo rollout rewards, or the discounted returns
            ``R_t`` of :func:`discounted_returns`).
        mask: ``(B, T)`` bool, True for real tokens (up to and including the first EOS).
        baseline: ``(B, T)`` (or broadcastable, e.g. ``(T,)``) baseline ``b_t``, or None for no baseline.
    Returns:
        Scalar loss (0 when the mask is empty).
    """
    advantage = rewards.detach().to(log_probs.dtype)
    if baseline is not None:
        advantage = advantage - baseline.detach().to(log_probs.dtype)
    mask = mask.bool()
    terms = (log_probs.masked_fill(~mask, 0.0) * advantage).masked_fill(~mask, 0.0)
    return -terms.sum() / mask.sum().clamp(min=1).to(log_probs.dtype)


def group_advantages(
    rewards: torch.Tensor, mask: torch.Tensor, group_size: int, eps: float = 1e-4
) -> torch.Tensor:
    """Group-normalised advantages, as GRPO (Shao et al. 2024, arXiv 2402.03300) computes them, per step.

    Rows come in consecutive groups of ``group_size`` that share their start (the same context, or the empty
    start of unconditional generation). At each step t, a row's advantage is its reward minus the mean over the
    group's rows that are real at t, divided by their standard deviation (unbiased, as ``torch.std``) plus
    ``eps``; a row alone in its group at t (the others ended) gets 0.

    Args:
        rewards: ``(B, T)`` action values ``Q_t``; ``B`` a multiple of ``group_size``.
        mask: ``(B, T)`` bool, True for real tokens.
        group_size: rows per group (at least 2).
        eps: added to the standard deviation (groups whose rewards are all equal get 0).
    Returns:
        ``(B, T)`` advantages, 0 where ``mask`` is False.
    """
    b, t = rewards.shape
    if group_size < 2 or b % group_size:
        raise ValueError(f"{b} rows do not split into groups of {group_size} (at least 2)")
    r = rewards.detach().float().view(b // group_size, group_size, t)
    m = mask.view(b // group_size, group_size, t).float()
    n = m.sum(dim=1, keepdim=True)  # (B / G, 1, T) real rows per group and step
    mean = (r * m).sum(dim=1, keepdim=True) / n.clamp(min=1.0)
    var = ((r - mean) ** 2 * m).sum(dim=1, keepdim=True) / (n - 1.0).clamp(min=1.0)
    adv = (r - mean) / (var.sqrt() + eps) * m * (n > 1)
    return adv.view(b, t)


def kl_to_reference(
    log_dist: torch.Tensor, ref_log_dist: torch.Tensor, chosen: torch.Tensor, estimator: str = "full"
) -> torch.Tensor:
    """Per-token estimate of ``KL(pi || pi_ref)`` at the sampled tokens' positions.

    Args:
        log_dist: ``(N, V)`` the policy's log-distributions at the ``N`` real tokens (with gradient).
        ref_log_dist: ``(N, V)`` the frozen reference's (no gradient).
        chosen: ``(N,)`` the sampled token ids.
        estimator: ``full``: the exact KL over the vocabulary, ``sum_v pi(v) (log pi(v) - log pi_ref(v))``
            (ids excluded from both count 0); ``k3``: Schulman's estimator on the sampled token,
            ``exp(d) - d - 1`` with ``d = log pi_ref(y) - log pi(y)`` (non-negative, unbiased; GRPO's).
    Returns:
        ``(N,)`` non-negative per-token values.
    """
    ref_log_dist = ref_log_dist.detach()
    if estimator == "full":
        diff = (log_dist - ref_log_dist).masked_fill(torch.isneginf(log_dist), 0.0)
        return (log_dist.exp() * diff).sum(dim=-1)
    if estimator == "k3":
        d = ref_log_dist.gather(1, chosen[:, None]).squeeze(1) - log_dist.gather(1, chosen[:, None]).squeeze(
            1
        )
        return torch.exp(d) - d - 1.0
    raise ValueError(f"unknown KL estimator {estimator!r}; choose full or k3")


def entropy_bonus(log_probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean entropy of the next-token distributions over real tokens (subtract ``coef *`` it from a loss).

    Args:
        log_probs: ``(B, T, V)`` log-probabilities (``-inf`` allowed for excluded ids; they contribute 0).
        mask: ``(B, T)`` bool, True for real tokens.
    Returns:
        Scalar: ``sum_t mask_t * H(p_t) / sum_t mask_t`` with ``H(p) = -sum_v p_v log p_v``.
    """
    # 0 * log 0 := 0, with a finite gradient
    finite_log = log_probs.masked_fill(torch.isneginf(log_probs), 0.0)
    entropy = -(log_probs.exp() * finite_log).sum(dim=-1)  # (B, T)
    m = mask.to(entropy.dtype)
    return (entropy * m).sum() / m.sum().clamp(min=1.0)


# ---------------------------------------------------------------------------------------------------------
# Dense per-step rewards (ScratchGAN, de Masson d'Autume et al. 2019, arXiv 1905.09922, Sec. 3)


def prefix_rewards(logits: torch.Tensor, kind: str = "sigmoid") -> torch.Tensor:
    """Per-step rewards ``r_t`` from a per-prefix discriminator's logits ``D(y_1..t)``.

    Args:
        logits: ``(B, T)`` one logit per prefix (real = positive).
        kind: ``sigmoid``: ``2 * sigmoid(logit) - 1`` in ``(-1, 1)`` (ScratchGAN's released code: bounded, so
            one confident discriminator output cannot dominate a batch); ``logit``: the raw logit
            ``log D - log(1 - D)``; ``log_sigmoid``: ``log D`` (MaskGAN's reward, unbounded below).
    Returns:
        ``(B, T)`` rewards (no gradient flows back into the discriminator).
    """
    logits = logits.detach().float()
    if kind == "sigmoid":
        return 2.0 * torch.sigmoid(logits) - 1.0
    if kind == "logit":
        return logits
    if kind == "log_sigmoid":
        return F.logsigmoid(logits)
    raise ValueError(f"unknown reward kind {kind!r}; choose sigmoid, logit or log_sigmoid")


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """Discounted returns within each sequence: ``R_t = sum_{s >= t, s real} gamma^(s - t) r_s``.

    Rewards at masked positions (after EOS) never count, and their returns are 0. ``gamma = 0`` gives
    ``R_t = r_t`` (greedy per-step rewards); ``gamma = 1`` sums all later rewards. Computed as one product with
    the ``(T, T)`` upper-triangular matrix of ``gamma^(s - t)``.

    Args:
        rewards: ``(B, T)`` per-step rewards ``r_t``.
        mask: ``(B, T)`` bool, True for real tokens (a prefix of each row).
        gamma: discount in ``[0, 1]``.
    Returns:
        ``(B, T)`` returns ``R_t`` (0 where ``mask`` is False).
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    t = rewards.shape[1]
    steps = torch.arange(t, device=rewards.device)
    lag = (steps[None, :] - steps[:, None]).to(rewards.dtype)  # (T, T): s - t
    weights = torch.where(lag >= 0, torch.full_like(lag, gamma) ** lag.clamp(min=0), torch.zeros_like(lag))
    r = rewards.masked_fill(~mask.bool(), 0.0)
    return (r @ weights.T).masked_fill(~mask.bool(), 0.0)  # R[b, t] = sum_s r[b, s] * gamma^(s - t)


def step_means(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` values -> ``(T,)`` mean over the real tokens at each step (0 at steps with none)."""
    m = mask.to(values.dtype)
    return (values * m).sum(dim=0) / m.sum(dim=0).clamp(min=1.0)


def ema_baseline_update(
    ema: torch.Tensor, seen: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, decay: float
) -> None:
    """In place: the per-step exponential-moving-average baseline after one batch.

    ``b_t <- decay * b_t + (1 - decay) * mean_t`` where ``mean_t`` is the mean of ``values`` over the batch's
    real tokens at step t; a step seen for the first time starts at ``mean_t``; steps without real tokens keep
    their value.

    Args:
        ema: ``(T,)`` float baseline, updated in place.
        seen: ``(T,)`` bool, which steps have a value, updated in place.
        values: ``(B, T)`` the batch's returns (or rewards).
        mask: ``(B, T)`` bool, True for real tokens.
        decay: in ``[0, 1)``.
    """
    present = mask.any(dim=0)  # (T,)
    mean = step_means(values, mask).to(ema.dtype)
    updated = torch.where(seen, decay * ema + (1.0 - decay) * mean, mean)
    ema.copy_(torch.where(present, updated, ema))
    seen |= present


def step_baseline(
    kind: str, values: torch.Tensor, mask: torch.Tensor, ema: torch.Tensor, seen: torch.Tensor
) -> torch.Tensor | None:
    """The per-step baseline ``b_t`` for ``values`` ``(B, T)`` (rewards or returns); no state change.

    ``kind``: ``"none"`` -> None; ``"mean"`` -> :func:`step_means` of the batch; ``"ema"`` -> the moving average
    ``ema`` ``(>= T,)`` where ``seen``, else the batch mean (a step's first batch is its own baseline).
    """
    if kind == "none":
        return None
    mean = step_means(values, mask)  # (T,)
    if kind == "mean":
        return mean
    t = values.shape[1]
    return torch.where(seen[:t], ema[:t], mean)


def masked_bce(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy averaged over the real positions of per-prefix logits.

    Args:
        logits: ``(B, T)`` per-prefix logits.
        labels: ``(B, T)`` (or broadcastable) targets in ``{0, 1}`` (1 = real prefix).
        mask: ``(B, T)`` bool, True where the prefix counts (up to and including EOS).
    Returns:
        Scalar ``sum(mask * bce) / sum(mask)`` (0 for an empty mask).
    """
    labels = torch.as_tensor(labels, dtype=logits.dtype, device=logits.device).expand_as(logits)
    bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")  # (B, T)
    m = mask.to(bce.dtype)
    return (bce * m).sum() / m.sum().clamp(min=1.0)


# ---------------------------------------------------------------------------------------------------------
# The GAN loss family (RelGAN, Nie et al. 2019, and the losses it compares). Every function takes the
# discriminator's raw outputs (logits / critic values), ``(B,)`` on real and ``(B,)`` on generated sequences,
# and returns a scalar averaged over the batch. Relativistic losses pair real row i with fake row i.

GAN_LOSSES = ("standard", "rsgan", "lsgan", "hinge", "wasserstein", "wgan-gp")
"""Names accepted by :func:`gan_d_loss` / :func:`gan_g_loss` (``wgan-gp`` = Wasserstein + gradient penalty)."""


def standard_d_loss(
    logits_real: torch.Tensor, logits_fake: torch.Tensor, smoothing: float = 0.0
) -> torch.Tensor:
    """Standard GAN: ``-[(1-s) log D(real) + s log(1 - D(real))] - log(1 - D(fake))``, D = sigmoid(logit).

    ``smoothing`` s is one-sided label smoothing (Salimans et al. 2016): the real target is ``1 - s``, the fake
    target stays 0. With s = 0 this equals :func:`discriminator_bce`.
    """
    real = F.binary_cross_entropy_with_logits(logits_real, torch.full_like(logits_real, 1.0 - smoothing))
    # -log(1-sigmoid(l))
    fake = F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake))
    return real + fake


def standard_g_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: ``-log D(fake)`` = ``softplus(-logit)``, averaged."""
    return F.softplus(-logits_fake).mean()


def rsgan_d_loss(
    logits_real: torch.Tensor, logits_fake: torch.Tensor, smoothing: float = 0.0
) -> torch.Tensor:
    """Relativistic standard GAN (Jolicoeur-Martineau 2018; RelGAN's best): ``-log sigmoid(C(x_r) - C(x_f))``.

    Pairs row i of the real batch with row i of the fake batch (equal batch sizes). ``smoothing`` s sets the
    target of the real-minus-fake difference to ``1 - s``.
    """
    diff = logits_real - logits_fake  # (B,)
    return F.binary_cross_entropy_with_logits(diff, torch.full_like(diff, 1.0 - smoothing))


def rsgan_g_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Relativistic standard GAN, generator side: ``-log sigmoid(C(x_f) - C(x_r))``, averaged."""
    return F.softplus(-(logits_fake - logits_real)).mean()


def lsgan_d_loss(
    logits_real: torch.Tensor, logits_fake: torch.Tensor, smoothing: float = 0.0
) -> torch.Tensor:
    """Least squares GAN (Mao et al. 2017, a-b-c = 0-1-1): ``0.5 (D(real) - (1-s))^2 + 0.5 D(fake)^2``."""
    return 0.5 * (logits_real - (1.0 - smoothing)).pow(2).mean() + 0.5 * logits_fake.pow(2).mean()


def lsgan_g_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """Least squares GAN, generator side: ``0.5 (D(fake) - 1)^2``, averaged."""
    return 0.5 * (logits_fake - 1.0).pow(2).mean()


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018): ``relu(1 - D(real)) + relu(1 + D(fake))``, averaged."""
    return F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean()


def wasserstein_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Wasserstein critic loss (Arjovsky et al. 2017): ``mean C(fake) - mean C(real)``.

    The critic must be kept (roughly) 1-Lipschitz: :func:`clip_weights_` after each step (WGAN), or
    :func:`gradient_penalty` added to this loss (WGAN-GP).
    """
    return logits_fake.mean() - logits_real.mean()


def wasserstein_g_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """Generator loss of the Wasserstein GAN, shared by hinge: ``-mean C(fake)``."""
    return -logits_fake.mean()


@torch.no_grad()
def clip_weights_(module: torch.nn.Module, clip_value: float) -> None:
    """WGAN weight clipping: clamps every parameter of ``module`` to ``[-clip_value, clip_value]`` in place.

    Raises:
        ValueError: ``module`` has parametrised weights (e.g. spectral normalization): clipping would act on the
            unnormalized originals, not on the weights the module computes with.
    """
    from torch.nn.utils import parametrize

    if any(parametrize.is_parametrized(m) for m in module.modules()):
        raise ValueError(
            "weight clipping on a module with parametrised weights (spectral normalization?) would clip the "
            "unnormalized originals; use the wgan-gp loss or drop the parametrisation"
        )
    for p in module.parameters():
        p.clamp_(-clip_value, clip_value)


def gradient_penalty(
    critic,
    real: torch.Tensor,
    fake: torch.Tensor,
    eps: torch.Tensor | None = None,
    rng: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP penalty (Gulrajani et al. 2017): ``mean_i (||grad_x C(x_i)||_2 - 1)^2`` at interpolations.

    ``x_i = eps_i * real_i + (1 - eps_i) * fake_i`` with ``eps_i ~ U(0, 1)`` per sequence. For text, ``real``
    are one-hot vectors and ``fake`` relaxed (soft) samples, both ``(B, T, V)``; the gradient norm is over all
    of ``T x V``. The penalty is differentiable with respect to the critic's parameters (``create_graph``);
    ``fake`` is detached (the penalty trains the critic only).

    Args:
        critic: callable ``(B, T, V) -> (B,)``, e.g. ``lambda x: discriminator(x, lengths)``.
        real: ``(B, T, V)`` one-hot real sequences.
        fake: ``(B, T, V)`` soft generated sequences.
        eps: ``(B,)`` interpolation weights (drawn from ``rng`` when None).
        rng: ``torch.Generator`` for ``eps``.
    Returns:
        Scalar penalty (multiply by the weight, 10 in the paper, and add to the critic loss).
    """
    if eps is None:
        eps = torch.rand(real.shape[0], device=real.device, generator=rng)
    e = eps.to(real.dtype).view(-1, *([1] * (real.dim() - 1)))
    mixed = (e * real.detach() + (1.0 - e) * fake.detach()).requires_grad_(True)
    scores = critic(mixed)  # (B,)
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    norms = grad.flatten(1).norm(dim=1)  # (B,)
    return (norms - 1.0).pow(2).mean()


def gan_d_loss(
    kind: str, logits_real: torch.Tensor, logits_fake: torch.Tensor, smoothing: float = 0.0
) -> torch.Tensor:
    """The discriminator loss named ``kind`` (one of :data:`GAN_LOSSES`; ``wgan-gp`` gives the Wasserstein part,
    add :func:`gradient_penalty` yourself). ``smoothing``: one-sided label smoothing (standard, rsgan, lsgan)."""
    if smoothing and kind not in ("standard", "rsgan", "lsgan"):
        raise ValueError(f"label smoothing applies to the standard, rsgan and lsgan losses, not {kind!r}")
    if kind == "standard":
        return standard_d_loss(logits_real, logits_fake, smoothing)
    if kind == "rsgan":
        return rsgan_d_loss(logits_real, logits_fake, smoothing)
    if kind == "lsgan":
        return lsgan_d_loss(logits_real, logits_fake, smoothing)
    if kind == "hinge":
        return hinge_d_loss(logits_real, logits_fake)
    if kind in ("wasserstein", "wgan-gp"):
        return wasserstein_d_loss(logits_real, logits_fake)
    raise ValueError(f"unknown GAN loss {kind!r}; choose from {list(GAN_LOSSES)}")


def gan_g_loss(kind: str, logits_real: torch.Tensor | None, logits_fake: torch.Tensor) -> torch.Tensor:
    """The generator loss named ``kind`` (``logits_real`` is needed by ``rsgan`` only; treat it as a constant or
    not, as the method prescribes: RelGAN backpropagates through it)."""
    if kind == "standard":
        return standard_g_loss(logits_fake)
    if kind == "rsgan":
        if logits_real is None:
            raise ValueError("the rsgan generator loss needs the discriminator's logits on a real batch")
        return rsgan_g_loss(logits_real, logits_fake)
    if kind == "lsgan":
        return lsgan_g_loss(logits_fake)
    if kind in ("hinge", "wasserstein", "wgan-gp"):
        return wasserstein_g_loss(logits_fake)
    raise ValueError(f"unknown GAN loss {kind!r}; choose from {list(GAN_LOSSES)}")


# ---------------------------------------------------------------------------------------------------------
# The category task: a (k + 1)-class discriminator (classes 0 .. k-1 real, class k fake)


def one_vs_rest_logit(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(N, K)`` logits, ``(N,)`` class ids -> ``(N,)`` ``z_c - logsumexp_{j != c} z_j``.

    Its sigmoid is ``softmax(z)_c`` exactly, so a multi-class probability can stand where a binary
    discriminator's logit is expected (the rollout averages ``sigmoid`` of what it is given).
    """
    target = target.reshape(-1, 1)
    own = logits.gather(1, target).squeeze(1)
    rest = logits.scatter(1, target, float("-inf"))
    return own - torch.logsumexp(rest, dim=1)


def class_scores(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CatGAN's per-class critic on a (k+1)-class discriminator: ``(N, k + 1)`` logits and ``(N,)`` classes ->
    ``(N,)`` ``s_c = z_c - z_fake``, the log-odds of "a real sentence of class c" against "generated" (the last
    output)."""
    return logits.gather(1, target.reshape(-1, 1)).squeeze(1) - logits[:, -1]


def multiclass_targets(real_labels: torch.Tensor, num_fake: int, num_classes: int) -> torch.Tensor:
    """SentiGAN's discriminator targets: the real rows' classes ``0 .. k-1`` followed by ``num_fake`` rows of
    the fake class ``k`` (``(N_real + num_fake,)``)."""
    fake = torch.full((num_fake,), num_classes, dtype=torch.long, device=real_labels.device)
    return torch.cat([real_labels.reshape(-1).long(), fake])


def multiclass_d_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``(N, k + 1)`` discriminator logits against :func:`multiclass_targets`."""
    return F.cross_entropy(logits.float(), targets)


def sentigan_penalty_loss(
    log_probs: torch.Tensor, penalties: torch.Tensor, mask: torch.Tensor, form: str = "probability"
) -> torch.Tensor:
    """SentiGAN's penalty-based generator loss (Wang & Wan 2018), to be minimised.

    ``sum_t mask_t * w_t * V_t / sum_t mask_t`` with the penalty ``V_t = 1 - D_i(Y_1..t)`` (the rollout mean of
    the discriminator's probability that completions of the prefix are real sentences of the generator's class
    i) and ``w_t = G_i(y_t | y_<t)`` (``form="probability"``, SentiGAN's objective: the gradient is
    ``G_i(y_t) * grad log G_i(y_t) * V_t``, so a token the generator already finds unlikely is penalised less,
    which the paper credits for the diversity) or ``w_t = log G_i(y_t | y_<t)`` (``"log_probability"``: REINFORCE
    on the penalty). The penalties are constants (detached).

    Args:
        log_probs: ``(B, T)`` log-probabilities of the sampled tokens, with gradient.
        penalties: ``(B, T)`` penalties ``V_t`` in ``[0, 1]``.
        mask: ``(B, T)`` True for real tokens (through the first EOS).
        form: ``"probability"`` or ``"log_probability"``.
    Returns:
        Scalar loss (0 for an empty mask).
    """
    if form not in ("probability", "log_probability"):
        raise ValueError(f"form must be 'probability' or 'log_probability', got {form!r}")
    mask = mask.bool()
    lp = log_probs.masked_fill(~mask, 0.0)
    weight = lp.exp() if form == "probability" else lp
    terms = (weight * penalties.detach().to(lp.dtype)).masked_fill(~mask, 0.0)
    return terms.sum() / mask.sum().clamp(min=1).to(lp.dtype)


# ---------------------------------------------------------------------------------------------------------
# Language-model discriminators: CoT (Lu et al. 2019) and DPGAN (Xu et al. 2018)


def vocabulary_kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """``KL(p || q) = sum_v p(v) (log p(v) - log q(v))`` over the whole vocabulary at each position.

    Ids outside ``p``'s support (``log p = -inf``, e.g. PAD and BOS) add nothing, whatever ``q`` gives them.
    Exact, with gradient to both arguments (CoT differentiates it through ``p``, the generator).

    Args:
        log_p: ``(N, V)`` log-distributions.
        log_q: ``(N, V)`` log-distributions (finite wherever ``p > 0``).
    Returns:
        ``(N,)`` KL divergences in nats.
    """
    support = torch.isfinite(log_p)
    p = log_p.exp()  # 0 outside the support
    diff = log_p.masked_fill(~support, 0.0) - log_q.masked_fill(~support, 0.0)
    return (p * diff).sum(dim=-1)


def sentence_nll(token_log_probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B,)`` negative log-likelihood of each sequence, ``-sum_t log M(y_t | y_<t)`` over its real tokens."""
    return -token_log_probs.masked_fill(~mask.bool(), 0.0).sum(dim=1)


def mediator_loss(
    real_log_probs: torch.Tensor,
    real_mask: torch.Tensor,
    fake_log_probs: torch.Tensor,
    fake_mask: torch.Tensor,
) -> torch.Tensor:
    """CoT's mediator objective (Lu et al. 2019), to be minimised: maximum likelihood on the balanced
    mixture ``(P + G) / 2`` of real and generated sentences,
    ``J_m = -1/2 E_{s~P}[log M(s)] - 1/2 E_{s~G}[log M(s)]``, each expectation the mean over its sentences of
    their summed token log-likelihoods (so each source weighs one half, whatever the batch sizes).

    Args:
        real_log_probs, fake_log_probs: ``(B, T)`` / ``(B', T')`` mediator log-probabilities of the tokens.
        real_mask, fake_mask: their real tokens.
    Returns:
        Scalar loss in nats per sentence.
    """
    return (
        0.5 * sentence_nll(real_log_probs, real_mask).mean()
        + 0.5 * sentence_nll(fake_log_probs, fake_mask).mean()
    )


def sentence_cross_entropy(token_log_probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B,)`` mean cross-entropy per real token of each sequence, ``-1/|y| sum_t log D(y_t | y_<t)``."""
    mask = mask.bool()
    return sentence_nll(token_log_probs, mask) / mask.sum(dim=1).clamp(min=1).to(token_log_probs.dtype)


def novelty_rewards(
    token_log_probs: torch.Tensor, mask: torch.Tensor, discount: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DPGAN's rewards (Xu et al. 2018) from a language-model discriminator's log-probabilities.

    The word-level reward is the token's cross-entropy under the discriminator, ``r_t = -log D(y_t | y_<t)``
    (novel to it: high); the sentence-level reward is their mean ``R(y) = 1/|y| sum_t r_t``; the reward a token is
    trained on is the sentence's reward times the discounted word-level rewards from it on,
    ``Q_t = R(y) * sum_{s >= t} discount^(s - t) r_s``.

    Args:
        token_log_probs: ``(B, T)`` discriminator log-probabilities of the sampled tokens (detached here).
        mask: ``(B, T)`` True for real tokens.
        discount: gamma in ``[0, 1]``.
    Returns:
        ``(B, T)`` word-level rewards (0 at padding), ``(B,)`` sentence-level rewards, ``(B, T)`` ``Q_t``.
    """
    mask = mask.bool()
    word = (-token_log_probs.detach()).masked_fill(~mask, 0.0)
    sentence = sentence_cross_entropy(token_log_probs.detach(), mask)
    return word, sentence, discounted_returns(word, mask, discount) * sentence[:, None]


def dpgan_discriminator_loss(
    real_log_probs: torch.Tensor,
    real_mask: torch.Tensor,
    fake_log_probs: torch.Tensor,
    fake_mask: torch.Tensor,
    real_weight: float = 1.0,
) -> torch.Tensor:
    """DPGAN's discriminator objective (Xu et al. 2018), to be minimised:
    ``E_{y~G}[R(y)] - real_weight * E_{y~data}[R(y)]`` with ``R`` the sentence-level reward
    (:func:`sentence_cross_entropy`): the language model learns the generated sentences (their reward falls:
    what the generator repeats stops being novel) and unlearns the real ones (their reward rises).
    ``real_weight = 1`` is the paper's objective.

    Args:
        real_log_probs, fake_log_probs: ``(B, T)`` / ``(B', T')`` discriminator log-probabilities, with gradient.
        real_mask, fake_mask: their real tokens.
        real_weight: the weight of the real sentences' term.
    Returns:
        Scalar loss.
    """
    fake = sentence_cross_entropy(fake_log_probs, fake_mask).mean()
    real = sentence_cross_entropy(real_log_probs, real_mask).mean()
    return fake - real_weight * real


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(x))`` for ``x < 0``, stable at both ends (``log(-expm1(x))`` near 0, ``log1p(-exp(x))``
    far below it; Maechler 2012). ``x`` is clamped just below 0, so ``x = 0`` gives a large finite negative."""
    x = x.clamp(max=-1e-12)
    return torch.where(x > -0.6931471805599453, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def log_rank_scores(
    features: torch.Tensor, references: torch.Tensor, comparison: torch.Tensor, gamma: float
) -> torch.Tensor:
    """RankGAN's expected log rank score ``log R(s | U, C) = mean_{u in U} log P(s | u, C)`` of each sentence.

    ``P(s | u, C) = exp(gamma cos(y_s, y_u)) / sum_{s' in C + {s}} exp(gamma cos(y_s', y_u))``: the softmax of the
    cosine relevances to the reference ``u`` over the comparison set with ``s`` added (Lin et al. 2017, eqs. 2-4).
    Every row is ranked against the same comparison set (in its own copy of it with itself added).

    Args:
        features: ``(N, F)`` sentence features ``y_s`` of the ranked sentences.
        references: ``(U, F)`` features of the reference set.
        comparison: ``(M, F)`` features of the comparison set (``M >= 1``; the ranked sentence is added to it).
        gamma: inverse temperature of the softmax.
    Returns:
        ``(N,)`` float32 log rank scores (each ``< 0``; ``-log(M + 1)`` when every relevance is equal).
    """
    refs = F.normalize(references.float(), dim=-1)  # (U, F)
    own = gamma * F.normalize(features.float(), dim=-1) @ refs.t()  # (N, U): gamma cos(s, u)
    others = gamma * F.normalize(comparison.float(), dim=-1) @ refs.t()  # (M, U)
    rest = torch.logsumexp(others, dim=0)  # (U,): log sum_{c in C} exp(gamma cos(c, u))
    log_p = own - torch.logaddexp(own, rest[None, :])  # (N, U): log P(s | u, C + {s})
    return log_p.mean(dim=1)


def ranker_loss(
    real: torch.Tensor, fake: torch.Tensor, references: torch.Tensor, gamma: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RankGAN's ranker loss (Lin et al. 2017, eq. 1, negated): rank each real sentence high among the generated
    ones and each generated sentence low among the real ones, against one reference set.

    ``-( mean_{s real} log R(s | U, C-) + mean_{s generated} log(1 - R(s | U, C+)) )`` with ``C-`` the generated
    rows of the batch and ``C+`` the real rows (:func:`log_rank_scores`).

    Args:
        real: ``(B, F)`` features of real sentences.
        fake: ``(B', F)`` features of generated sentences.
        references: ``(U, F)`` features of real reference sentences (not among ``real``).
        gamma: inverse temperature of the rank softmax.
    Returns:
        The scalar loss and the ``(B,)`` and ``(B',)`` log rank scores of the real and generated rows.
    """
    log_r_real = log_rank_scores(real, references, fake, gamma)  # (B,)
    log_r_fake = log_rank_scores(fake, references, real, gamma)  # (B',)
    loss = -(log_r_real.mean() + log1mexp(log_r_fake).mean())
    return loss, log_r_real, log_r_fake


# ---------------------------------------------------------------------------------------------------------
# LeakGAN (Guo et al. 2018, arXiv 1709.08624)


def goal_directions(features: torch.Tensor, lengths: torch.Tensor, horizon: int) -> torch.Tensor:
    """Where each prefix moves in feature space over the next ``horizon`` tokens: ``f_{min(t+c, L)} - f_t``.

    Args:
        features: ``(B, T + 1, F)`` features ``f_0 .. f_T`` of the prefixes of ``T`` tokens.
        lengths: ``(B,)`` real tokens per row (``L``; the direction stops at the sequence's end).
        horizon: ``c``.
    Returns:
        ``(B, T, F)``: row t is the direction of the goal emitted at prefix ``t`` (meaningful for ``t < L``).
    """
    t = features.shape[1] - 1
    steps = torch.arange(t, device=features.device)[None, :]  # (1, T)
    target = torch.minimum(steps + horizon, lengths[:, None].clamp(min=0))  # (B, T)
    target = torch.maximum(target, steps)  # t >= L: no move (masked out by the callers)
    ahead = features.gather(1, target[..., None].expand(-1, -1, features.shape[2]))
    return ahead - features[:, :-1]


def leakgan_manager_loss(
    goals: torch.Tensor, directions: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """The Manager's objective: ``-sum_t Q_t * cos(f_{t+c} - f_t, g_t) / sum(mask)`` over goals at real prefixes.

    The gradient is the paper's ``-Q_F(s_t, g_t) grad d_cos(f_{t+c} - f_t, g_t(theta_m))``; with ``weights`` all 1
    it is the Manager's pretraining objective on real sentences.

    Args:
        goals: ``(B, T, F)`` goals ``g_t`` (with gradient).
        directions: ``(B, T, F)`` feature changes :func:`goal_directions` (constants).
        weights: ``(B, T)`` ``Q_t`` of each goal (constants).
        mask: ``(B, T)`` True where the prefix ``t`` is followed by a real token.
    Returns:
        Scalar loss (0 when the mask is empty).
    """
    cos = F.cosine_similarity(directions.detach(), goals, dim=-1, eps=1e-8)  # (B, T)
    terms = (cos * weights.detach().to(cos.dtype)).masked_fill(~mask, 0.0)
    return -terms.sum() / mask.sum().clamp(min=1).to(cos.dtype)


def intrinsic_rewards(
    features: torch.Tensor, goals: torch.Tensor, horizon: int, mask: torch.Tensor
) -> torch.Tensor:
    """The Worker's intrinsic reward of each token: ``r^I_t = mean_{i=1..c} cos(f_t - f_{t-i}, g_{t-i})``.

    Token ``y_t`` (column ``t - 1``) moved the prefix from ``s_{t-1}`` to ``s_t``; it is rewarded for how well the
    features followed the goals of the last ``c`` steps. The mean runs over the ``min(c, t)`` goals that exist.

    Args:
        features: ``(B, T + 1, F)`` features ``f_0 .. f_T``.
        goals: ``(B, T, F)`` goals ``g_0 .. g_{T-1}`` (used as constants).
        horizon: ``c``.
        mask: ``(B, T)`` True for real tokens.
    Returns:
        ``(B, T)`` rewards (0 at padding), without gradient.
    """
    t = goals.shape[1]
    goals = goals.detach()
    total = torch.zeros(goals.shape[:2], device=goals.device, dtype=features.dtype)
    count = torch.zeros(t, device=goals.device, dtype=features.dtype)
    for i in range(1, min(horizon, t) + 1):
        # tokens t = i .. T (columns i-1 .. T-1): cos(f_t - f_{t-i}, g_{t-i})
        moved = features[:, i:] - features[:, : t + 1 - i]  # (B, T + 1 - i, F): f_t - f_{t-i}, t = i .. T
        total[:, i - 1 :] += F.cosine_similarity(moved, goals[:, : t + 1 - i], dim=-1, eps=1e-8)
        count[i - 1 :] += 1
    return (total / count).masked_fill(~mask, 0.0)


def rescaled_activation(rewards: torch.Tensor, mask: torch.Tensor, delta: float) -> torch.Tensor:
    """LeakGAN's bootstrapped rescaled activation: at every step, the rewards of the batch's real rows are
    replaced by ``sigmoid(delta * (0.5 - rank / B_t))``, ``rank`` 1 for the highest reward of the step and
    ``B_t`` the number of real rows at that step. The result depends only on the order of the rewards, so its
    scale is the same at every step and in every batch (Guo et al. 2018, "Bootstrapped Rescaled Activation").

    Args:
        rewards: ``(B, T)``.
        mask: ``(B, T)`` True for real tokens.
        delta: the smoothness of the rescaling (larger: closer to a step between the two halves of the batch).
    Returns:
        ``(B, T)`` rescaled rewards in ``(0, 1)``, 0 at padding; ties are ranked in row order.
    """
    keyed = rewards.float().masked_fill(~mask, float("-inf"))
    order = torch.argsort(keyed, dim=0, descending=True, stable=True)  # (B, T) rows from highest to lowest
    rank = torch.empty_like(order)
    rank.scatter_(
        0, order, torch.arange(1, rewards.shape[0] + 1, device=rewards.device)[:, None].expand_as(order)
    )
    count = mask.sum(dim=0, keepdim=True).clamp(min=1)  # (1, T) B_t
    out = torch.sigmoid(delta * (0.5 - rank.float() / count))
    return out.masked_fill(~mask, 0.0)


def goal_rewards(rewards: torch.Tensor, lengths: torch.Tensor, horizon: int) -> torch.Tensor:
    """``Q_F(s_t, g_t)``, the value of the goal emitted at prefix ``t``: the reward of the prefix the goal leads
    to, ``s_{min(t+c, L)}`` (column ``min(t+c, L) - 1`` of per-token rewards, whose column ``t - 1`` is the value of
    ``s_t``).

    Args:
        rewards: ``(B, T)`` per-token rewards (e.g. rescaled rollout values).
        lengths: ``(B,)`` real tokens per row.
        horizon: ``c``.
    Returns:
        ``(B, T)`` values of the goals at prefixes ``0 .. T-1`` (meaningful where ``t < L``).
    """
    t = rewards.shape[1]
    steps = torch.arange(t, device=rewards.device)[None, :]
    target = torch.minimum(steps + horizon, lengths[:, None]).clamp(min=1) - 1  # (B, T)
    return rewards.gather(1, target)
