"""Gumbel-softmax adversarial training (RelGAN, Nie et al. 2019, ICLR; Jang et al. 2017, arXiv 1611.01144).

Sampling a token is not differentiable; a continuous relaxation makes it so. At every step the generator's
logits ``o_t`` are perturbed with Gumbel noise ``g_t``; the sampled token is ``argmax(o_t + g_t)`` (an exact
sample from ``softmax(o_t)``) and is fed back to the generator through its embedding, as in RelGAN. The
discriminator reads the relaxed one-hot vector ``softmax(beta * (o_t + g_t))`` through its embedding matrix, and the
generator is trained by backpropagating the GAN loss through it. The inverse temperature ``beta`` is annealed from
1 to ``max_inverse_temperature`` (:func:`inverse_temperature`): small beta gives smooth vectors and low-variance,
biased gradients; large beta gives nearly one-hot vectors.

Options: straight-through (the discriminator reads the hard one-hot vector, gradients use the relaxed one); the
``softmax`` relaxation (the discriminator reads ``softmax(o_t)`` itself: the known-weak "continuous vector"
variant, which a discriminator tells from one-hot real data by its softness); every loss of the GAN family in
:mod:`seqgan.losses` (RSGAN by default, RelGAN's best); one-sided label smoothing; annealed instance noise;
spectral normalization of the discriminator (:meth:`CNNDiscriminator.enable_spectral_norm`).

RelGAN's own discriminator (``discriminator.kind: relgan``,
:class:`~seqgan.models.relgan_discriminator.RelGANDiscriminator`) gives one logit per embedded representation;
the trainer then scores every representation and the GAN losses average over sequences and representations, as
RelGAN's do (each representation's real logit is paired with the same representation's fake logit in the
relativistic loss).

The temperature schedules are RelGAN's: its ``exp`` adaptation is ``beta_max ** (i / N)`` after ``i`` of ``N``
adversarial steps, exactly :func:`inverse_temperature` ``("exp", i, N, beta_max)`` with ``N`` =
``gumbel.anneal_steps`` (0: the whole run, as RelGAN anneals over its ``nadv_steps``); ``lin`` and ``no`` are
``linear`` and ``constant``; ``sigmoid`` is rescaled here to start at exactly 1 and end at exactly beta_max
(RelGAN's starts 4.5e-5 (beta_max - 1) above 1 and ends as far below beta_max).

After the first EOS every position is a one-hot PAD vector without gradient, and the discriminator is given the
lengths (EOS included), so its padding-invariant pooling treats relaxed fakes like real sequences. The
generator's ``never_sample`` ids (PAD, BOS) get probability 0.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seqgan.config import Config, GumbelConfig
from seqgan.distributed import unwrap
from seqgan.losses import clip_weights_, gan_d_loss, gan_g_loss, gradient_penalty
from seqgan.models.base import Generator
from seqgan.models.relgan_discriminator import RelGANDiscriminator
from seqgan.trainers.base import AdversarialTrainer, NonFiniteGuard, guarded_update
from seqgan.utils import adam

__all__ = [
    "SCHEDULES",
    "GumbelTrainer",
    "RelaxedSamples",
    "inverse_temperature",
    "relaxed_sample",
]

SCHEDULES = ("constant", "linear", "exp", "sigmoid")
"""Annealing schedules of the inverse temperature (RelGAN's ``no``/``lin``/``exp``/``sigmoid`` adaptations)."""


def inverse_temperature(kind: str, step: int, total_steps: int, max_value: float) -> float:
    """The inverse temperature beta after ``step`` of ``total_steps`` generator steps.

    With ``x = min(step / total_steps, 1)`` and ``M = max_value``: constant ``M``; linear ``1 + (M - 1) x``;
    exp ``M ** x``; sigmoid ``1 + (M - 1) s(x)`` where ``s`` is RelGAN's ``1 / (1 + exp(20 (1/2 - x)))``
    rescaled to run exactly from 0 to 1. Every schedule but constant starts at 1, is non-decreasing and reaches
    ``M`` at ``total_steps`` (and stays there).
    """
    if kind not in SCHEDULES:
        raise ValueError(f"unknown temperature schedule {kind!r}; choose from {list(SCHEDULES)}")
    if max_value < 1.0:
        raise ValueError(f"max_value must be >= 1, got {max_value}")
    if kind == "constant":
        return float(max_value)
    x = 1.0 if total_steps <= 0 else min(max(step, 0) / total_steps, 1.0)
    if kind == "linear":
        return 1.0 + (max_value - 1.0) * x
    if kind == "exp":
        return float(max_value**x)

    def s(u: float) -> float:
        return 1.0 / (1.0 + math.exp(20.0 * (0.5 - u)))

    return 1.0 + (max_value - 1.0) * (s(x) - s(0.0)) / (s(1.0) - s(0.0))


@dataclass
class RelaxedSamples:
    """A batch of relaxed samples.

    Attributes:
        vectors: ``(B, T, V)`` what the discriminator reads: relaxed (or straight-through one-hot) vectors up to
            and including EOS, one-hot PAD after it (no gradient there).
        tokens: ``(B, T)`` the hard sampled ids (``argmax`` of the perturbed logits), ``pad_id`` after EOS.
        lengths: ``(B,)`` real tokens per row (EOS included); None for fixed-length data (no EOS).
    """

    vectors: torch.Tensor
    tokens: torch.Tensor
    lengths: torch.Tensor | None


def relaxed_sample(
    generator: Generator,
    num: int,
    max_len: int,
    beta: float,
    relaxation: str = "gumbel",
    straight_through: bool = False,
    rng: torch.Generator | None = None,
) -> RelaxedSamples:
    """Draws ``num`` sequences with their relaxed one-hot vectors, differentiable w.r.t. the generator.

    Each step feeds the previous hard token (BOS first) through ``generator.step``; the hard token is
    ``argmax(logits + Gumbel noise)``, i.e. a sample of ``softmax(logits)`` with ``never_sample`` ids excluded.
    Runs in the generator's current mode (train or eval) and with gradients unless called under ``no_grad``.

    Args:
        generator: any :class:`~seqgan.models.base.Generator` (incremental ``init_state`` / ``step``).
        num: rows ``B``.
        max_len: ``T``.
        beta: inverse temperature of the gumbel relaxation (unused by ``softmax``).
        relaxation: ``gumbel`` or ``softmax`` (the vector is ``softmax(logits)``).
        straight_through: forward the one-hot hard token, backward through the relaxed vector.
        rng: ``torch.Generator`` for the Gumbel noise.
    Returns:
        :class:`RelaxedSamples` with ``(B, T, V)`` vectors.
    """
    device = generator.device
    vocab = generator.vocab_size
    banned = torch.tensor(generator.never_sample, dtype=torch.long, device=device)
    pad_vec = F.one_hot(torch.tensor(generator.pad_id, device=device), vocab).float()  # (V,)
    has_eos = generator.eos_id is not None
    alive = torch.ones(num, dtype=torch.bool, device=device)
    lengths = torch.zeros(num, dtype=torch.long, device=device)
    prev = torch.full((num,), generator.bos_id, dtype=torch.long, device=device)
    state = generator.init_state(num)
    vectors, tokens = [], []
    for _ in range(max_len):
        logits, state = generator.step(prev, state)  # (B, V)
        logits = logits.float()
        if len(banned):
            logits = logits.index_fill(1, banned, float("-inf"))
        u = torch.rand(logits.shape, device=device, generator=rng)
        gumbel = -torch.log(-torch.log(u.clamp(1e-10, 1.0 - 1e-7)))  # (B, V) standard Gumbel noise
        perturbed = logits + gumbel
        tok = perturbed.argmax(dim=1)  # (B,) a sample of softmax(logits)
        if relaxation == "gumbel":
            soft = F.softmax(beta * perturbed, dim=1)
        else:
            soft = F.softmax(logits, dim=1)
        if straight_through:
            soft = F.one_hot(tok, vocab).to(soft.dtype) + soft - soft.detach()
        if has_eos:
            soft = torch.where(alive[:, None], soft, pad_vec)  # one-hot PAD (constant) after EOS
            tok = torch.where(alive, tok, generator.pad_id)
            lengths += alive.long()
        vectors.append(soft)
        tokens.append(tok)
        if has_eos:
            alive = alive & (tok != generator.eos_id)
            if device.type == "cpu" and not bool(alive.any()):
                break
        prev = tok
    done = len(vectors)
    if done < max_len:  # every row ended: the rest is padding
        vectors.extend([pad_vec.expand(num, vocab)] * (max_len - done))
        tokens.extend(
            [torch.full((num,), generator.pad_id, dtype=torch.long, device=device)] * (max_len - done)
        )
    return RelaxedSamples(
        torch.stack(vectors, dim=1), torch.stack(tokens, dim=1), lengths if has_eos else None
    )


class GumbelTrainer(AdversarialTrainer):
    """RelGAN-style adversarial training by backpropagation through relaxed samples.

    Args:
        generator: the generator (trained in place).
        discriminator: a :class:`~seqgan.models.discriminator.CNNDiscriminator` (reads ``(B, T, V)`` vectors and
            ``(B, T)`` ids through the same embedding; ``forward(x, lengths, noise_std, rng)``).
        config: :class:`~seqgan.config.GumbelConfig` (the ``gumbel`` config section; defaults when None).
        max_len: length of the generated sequences.
        rng: ``torch.Generator`` for the Gumbel noise, instance noise and GP interpolation weights (the global
            RNG when None). Dropout uses the global RNG.
        nan_guard: what a NaN/inf loss or gradient does (default: stop with :class:`NonFiniteLossError`).
        total_steps: the run's generator steps, which ``config.anneal_steps = 0`` ("the whole run") anneals over.
    Raises:
        ValueError: ``anneal_steps`` is 0 and no ``total_steps`` is given; or the wasserstein loss (weight
            clipping) with a spectrally normalized discriminator.
    """

    def __init__(
        self,
        generator: Generator,
        discriminator: nn.Module,
        config: GumbelConfig | None = None,
        *,
        max_len: int,
        rng: torch.Generator | None = None,
        nan_guard: NonFiniteGuard | None = None,
        total_steps: int | None = None,
    ) -> None:
        self.config = config = config or GumbelConfig()
        self.anneal_steps = config.anneal_steps or (total_steps or 0)
        if self.anneal_steps <= 0 and config.temperature_schedule != "constant":
            raise ValueError(
                "gumbel.anneal_steps=0 anneals over the whole run: give the run's generator steps as total_steps "
                "(adversarial.epochs x gumbel.steps_per_epoch x gumbel.g_steps), or set anneal_steps"
            )
        if config.loss == "wasserstein" and getattr(discriminator, "spectral_norm", False):
            raise ValueError(
                "the wasserstein loss clips the discriminator's weights, which under spectral normalization are "
                "the unnormalized originals; use gumbel.loss=wgan-gp with a spectrally normalized discriminator"
            )
        self.generator = generator
        self.discriminator = discriminator
        # RelGAN's discriminator: one logit per representation, the losses average over them
        self.score_kwargs = (
            {"per_rep": True} if isinstance(unwrap(discriminator), RelGANDiscriminator) else {}
        )
        self.max_len = max_len
        betas = tuple(config.adam_betas)
        self.g_optimizer = adam(generator.parameters(), lr=config.g_lr, betas=betas)
        self.d_optimizer = adam(discriminator.parameters(), lr=config.d_lr, betas=betas)
        self.rng = rng
        self.nan_guard = nan_guard or NonFiniteGuard("stop")
        self.g_steps = 0
        self.d_steps = 0

    @classmethod
    def from_config(
        cls,
        cfg: Config,
        generator: Generator,
        discriminator: nn.Module,
        rng: torch.Generator | None = None,
        **_: object,
    ) -> GumbelTrainer:
        """The trainer an experiment config describes (``adversarial.method: gumbel``, ``gumbel`` section);
        ``gumbel.spectral_norm`` puts spectral normalization on the discriminator first."""
        g = cfg.gumbel
        if g.spectral_norm:
            discriminator.enable_spectral_norm()
        return cls(
            generator,
            discriminator,
            g,
            max_len=cfg.data.max_len,
            rng=rng,
            nan_guard=NonFiniteGuard(cfg.nan_policy, cfg.nan_max_consecutive),
            total_steps=max(1, cfg.adversarial.epochs * g.steps_per_epoch * g.g_steps),
        )

    # ------------------------------------------------------------------ schedules
    @property
    def beta(self) -> float:
        """The current inverse temperature (a function of the generator steps taken)."""
        c = self.config
        return inverse_temperature(
            c.temperature_schedule, self.g_steps, self.anneal_steps, c.max_inverse_temperature
        )

    @property
    def noise_std(self) -> float:
        """The current instance-noise std: ``instance_noise * (1 - g_steps / anneal_steps)``, at least 0."""
        c = self.config
        if c.instance_noise <= 0:
            return 0.0
        frac = 1.0 if self.anneal_steps <= 0 else min(self.g_steps / self.anneal_steps, 1.0)
        return c.instance_noise * (1.0 - frac)

    def relaxed_samples(self, num: int) -> RelaxedSamples:
        """``num`` relaxed samples at the current inverse temperature (with gradients to the generator)."""
        c = self.config
        return relaxed_sample(
            self.generator, num, self.max_len, self.beta, c.relaxation, c.straight_through, rng=self.rng
        )

    def _score(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Discriminator logits ``(B,)`` of ids ``(B, T)`` or vectors ``(B, T, V)``, with instance noise;
        ``(B, num_rep)`` for RelGAN's discriminator."""
        std = self.noise_std
        if std > 0:
            return self.discriminator(x, lengths, noise_std=std, rng=self.rng, **self.score_kwargs).float()
        return self.discriminator(x, lengths, **self.score_kwargs).float()

    # ------------------------------------------------------------------ epoch
    def train_epoch(self, real: torch.Tensor, data_rng: torch.Generator) -> dict[str, float]:
        """``steps_per_epoch`` iterations of ``g_steps`` generator steps then ``d_steps`` discriminator steps.

        Real batches of ``batch_size`` rows are drawn from ``real`` ``(N, T)`` in ``data_rng``'s order.

        Returns:
            Means over the epoch of the generator and discriminator metrics, plus ``time/generator_s`` and
            ``time/discriminator_s``.
        """
        c = self.config
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        t_gen = t_dis = 0.0

        def add(metrics: dict[str, float]) -> None:
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + 1

        def batch() -> torch.Tensor:
            idx = torch.randint(len(real), (c.batch_size,), generator=data_rng).to(real.device)
            return real[idx]

        for _ in range(c.steps_per_epoch):
            t0 = time.perf_counter()
            for _ in range(c.g_steps):
                add(self.generator_step(batch()))
            t1 = time.perf_counter()
            for _ in range(c.d_steps):
                add(self.discriminator_step(batch()))
            t_gen, t_dis = t_gen + t1 - t0, t_dis + time.perf_counter() - t1
        out = {k: v / counts[k] for k, v in sums.items()}
        out["time/generator_s"], out["time/discriminator_s"] = t_gen, t_dis
        out["nan/skipped_steps"] = float(self.nan_guard.skipped)
        return out

    # ------------------------------------------------------------------ generator
    def generator_step(self, real_batch: torch.Tensor | None = None) -> dict[str, float]:
        """One generator update: relaxed samples -> discriminator -> GAN generator loss -> backprop -> Adam.

        Args:
            real_batch: ``(B, T)`` real ids; needed by the relativistic loss (``rsgan``), unused otherwise.
        Returns:
            ``generator/loss``, ``generator/grad_norm``, ``generator/inverse_temperature``,
            ``generator/sample_len``, ``generator/max_prob`` (mean largest entry of the relaxed vectors over real
            positions: 1 for one-hot vectors).
        Raises:
            NonFiniteLossError: a NaN/inf loss or gradient and ``nan_policy=stop`` (no parameter is changed).
        """
        c, gen, disc = self.config, self.generator, self.discriminator
        beta = self.beta
        gen.train()
        disc.train()
        fake = self.relaxed_samples(c.batch_size)
        logits_fake = self._score(fake.vectors, fake.lengths)
        logits_real = None
        if c.loss == "rsgan":
            if real_batch is None:
                raise ValueError("the rsgan generator step needs a real batch: generator_step(real_batch)")
            logits_real = self._score(real_batch.to(gen.device))
        loss = gan_g_loss(c.loss, logits_real, logits_fake)
        stepped, grad_norm = guarded_update(
            loss,
            self.g_optimizer,
            gen.parameters(),
            self.nan_guard,
            "generator",
            c.grad_clip,
            what=lambda: (
                f"generator loss {loss.item()} / gradient; the step was skipped: lower gumbel.g_lr or "
                "gumbel.max_inverse_temperature"
            ),
            clear=[disc],  # the generator loss never trains the discriminator
        )
        if stepped:
            self.g_steps += 1
        with torch.no_grad():
            mask = _real_positions(fake)
            max_prob = fake.vectors.amax(dim=2)[mask].mean()
        return {
            "generator/loss": loss.item(),
            "generator/grad_norm": float(grad_norm),
            "generator/inverse_temperature": beta,
            "generator/sample_len": float(mask.sum(dim=1).float().mean()),
            "generator/max_prob": float(max_prob),
        }

    # ------------------------------------------------------------------ discriminator
    def discriminator_step(self, real_batch: torch.Tensor) -> dict[str, float]:
        """One discriminator update on ``real_batch`` ``(B, T)`` against ``B`` fresh relaxed samples.

        The samples are drawn without gradient (the step trains the discriminator only). ``wgan-gp`` adds
        ``gp_weight *`` :func:`~seqgan.losses.gradient_penalty` on interpolations of the one-hot real batch
        and the relaxed fakes; ``wasserstein`` clips the weights after the step.

        Returns:
            ``discriminator/loss``, ``discriminator/acc_pair`` (share of pairs with D(real) > D(fake)),
            ``discriminator/acc_real`` and ``discriminator/acc_fake`` (logit above / below the decision threshold:
            0, or 0.5 for lsgan), and ``discriminator/gp`` for wgan-gp.
        Raises:
            NonFiniteLossError: a NaN/inf loss or gradient and ``nan_policy=stop`` (no parameter is changed).
        """
        c, gen, disc = self.config, self.generator, self.discriminator
        real = real_batch.to(gen.device)
        with torch.no_grad():
            was_training = gen.training
            gen.eval()
            try:
                fake = self.relaxed_samples(real.shape[0])
            finally:
                gen.train(was_training)
        disc.train()
        logits_real = self._score(real)
        logits_fake = self._score(fake.vectors, fake.lengths)
        loss = gan_d_loss(c.loss, logits_real, logits_fake, c.label_smoothing)
        metrics: dict[str, float] = {}
        if c.loss == "wgan-gp":
            real_onehot = F.one_hot(real, disc.vocab_size).float()  # (B, T, V)
            lengths = _gp_lengths(disc, real, fake)
            width = max(real_onehot.shape[1], fake.vectors.shape[1])
            gp = gradient_penalty(
                lambda x: disc(x, lengths).float(),
                _pad_to(real_onehot, width, gen.pad_id),
                _pad_to(fake.vectors, width, gen.pad_id),
                rng=self.rng,
            )
            loss = loss + c.gp_weight * gp
            metrics["discriminator/gp"] = gp.item()
        stepped, _ = guarded_update(
            loss,
            self.d_optimizer,
            disc.parameters(),
            self.nan_guard,
            "discriminator",
            what=lambda: f"discriminator loss {loss.item()} / gradient; lower gumbel.d_lr",
        )
        if stepped:
            if c.loss == "wasserstein":
                clip_weights_(disc, c.clip_value)
            self.d_steps += 1
        threshold = 0.5 if c.loss == "lsgan" else 0.0
        with torch.no_grad():
            metrics.update(
                {
                    "discriminator/loss": loss.item(),
                    "discriminator/acc_pair": float((logits_real > logits_fake).float().mean()),
                    "discriminator/acc_real": float((logits_real > threshold).float().mean()),
                    "discriminator/acc_fake": float((logits_fake < threshold).float().mean()),
                }
            )
        return metrics

    # ------------------------------------------------------------------ state
    def _extra_state(self) -> dict:
        return {"anneal_steps": self.anneal_steps}  # the annealing position is ``g_steps``

    def _load_extra_state(self, state: dict) -> None:
        # a resumed run keeps the schedule it started with (also when adversarial.epochs is raised to extend it)
        self.anneal_steps = int(state.get("anneal_steps", self.anneal_steps))


def _real_positions(samples: RelaxedSamples) -> torch.Tensor:
    """``(B, T)`` True at the real positions (up to and including EOS) of relaxed samples."""
    b, t = samples.tokens.shape
    if samples.lengths is None:
        return torch.ones(b, t, dtype=torch.bool, device=samples.tokens.device)
    return torch.arange(t, device=samples.tokens.device)[None, :] < samples.lengths[:, None]


def _gp_lengths(disc: nn.Module, real: torch.Tensor, fake: RelaxedSamples) -> torch.Tensor | None:
    """Lengths of real / fake interpolations: the longer of the two rows (padding is one-hot PAD in both)."""
    if fake.lengths is None or getattr(disc, "pad_id", None) is None:
        return None
    return torch.maximum(disc.lengths(real), fake.lengths)


def _pad_to(x: torch.Tensor, width: int, pad_id: int) -> torch.Tensor:
    """``(B, T, V)`` -> ``(B, width, V)`` with one-hot PAD vectors appended."""
    if x.shape[1] >= width:
        return x
    pad = F.one_hot(torch.full(x.shape[:1] + (width - x.shape[1],), pad_id, device=x.device), x.shape[2])
    return torch.cat([x, pad.to(x.dtype)], dim=1)
