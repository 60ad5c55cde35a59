"""DGSAN: discrete generative self-adversarial network (Montahaei, Alihosseini and Soleymani Baghshah 2019,
"DGSAN: Discrete Generative Self-Adversarial Network", arXiv 1908.09127).

There is no discriminator network. The discriminator is written with the generator's own probabilities: with
``p_old`` a frozen copy of an earlier generator,

    D_theta(x) = p_theta(x) / (p_theta(x) + p_old(x)) = sigmoid(log p_theta(x) - log p_old(x)),

and the generator is trained as that discriminator, by binary cross-entropy, real sentences against samples of
``p_old``:

    L(theta) = -E_{x ~ data}[log D_theta(x)] - E_{y ~ p_old}[log(1 - D_theta(y))]
             = E_data[softplus(log p_old(x) - log p_theta(x))] + E_{p_old}[softplus(log p_theta(y) - log p_old(y))].

The optimal discriminator against ``p_old`` is ``p_data / (p_data + p_old)``, reached when ``p_theta = p_data``;
starting from ``p_theta = p_old`` (``D = 1/2`` everywhere) the expected gradient is half the maximum-likelihood
gradient, and the fake term keeps the update close to ``p_old`` where the data do not pull. Every so often
``p_old`` is replaced by the current generator (:meth:`DGSANTrainer.refresh`), on the schedule of
``dgsan.refresh_every``, or by default the authors' automatic rule (their released code): after an epoch, when the
epoch losses have settled (the population standard deviation of the last ``refresh_window`` epochs' mean losses
below ``refresh_tol``) and more than ``refresh_min_epochs`` epochs passed since the last refresh, or when
``refresh_max_epochs`` passed.

One update (:meth:`DGSANTrainer.generator_step`): ``batch_size`` real sentences, as many samples of ``p_old`` at
temperature 1; sequence log-probabilities of both under both models, each the exact sum of the per-token
log-probabilities over real tokens (EOS included, padding excluded; the distribution the samples are drawn from:
eval mode, PAD and BOS excluded, :func:`~seqgan.losses.sampled_log_probs`); the loss above (``softplus`` of the
log-ratio, stable at any length); one guarded Adam step. ``p_old`` gets no gradient.

Starting point and the discriminator: ``p_old`` starts as the generator the adversarial stage starts from (the MLE
checkpoint; the authors' code also trains from scratch). The run's discriminator (the pretraining stage trains one,
as for every method) is not used: it is carried through unchanged, so checkpoints keep their usual shape, and
``d_optimizer`` is a placeholder that is never stepped (``d_steps`` stays 0). Not implemented from the authors'
code: its curriculum over the length of the generated continuation (token_size) and its learning-rate decay on a
rising loss. The frozen copy and the schedule's memory are part of the trainer's state, so a resumed run continues
exactly. Settings: :class:`~seqgan.config.DGSANConfig` (the ``dgsan`` section).
"""

from __future__ import annotations

import copy
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from seqgan import distributed
from seqgan.config import DGSANConfig
from seqgan.data.datasets import sequence_mask
from seqgan.distributed import unwrap
from seqgan.losses import sampled_log_probs
from seqgan.models.base import Generator
from seqgan.sampling import sample
from seqgan.trainers.base import AdversarialTrainer, NonFiniteGuard, guarded_update
from seqgan.utils import adam

__all__ = ["DGSANTrainer", "dgsan_loss", "sequence_log_probs"]


def sequence_log_probs(generator: nn.Module, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B,)`` log-probability of each sequence: the sum of ``log p(y_t | y_<t)`` over its real tokens (``mask``),
    under the distribution samples are drawn from (eval mode, temperature 1, PAD and BOS excluded); with gradient
    unless called under ``torch.no_grad``.

    Args:
        generator: any :class:`~seqgan.models.base.Generator` (or a DDP wrapper of one).
        tokens: ``(B, T)`` ids; mask: ``(B, T)`` bool, True for real tokens.
    """
    log_probs, _ = sampled_log_probs(generator, tokens, mask, 1.0)  # (B, T), 0 at padding
    return log_probs.sum(dim=1)


def dgsan_loss(
    new_real: torch.Tensor, old_real: torch.Tensor, new_fake: torch.Tensor, old_fake: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """DGSAN's generator loss, the cross-entropy of ``D = sigmoid(log p_new - log p_old)``.

    Args:
        new_real, old_real: ``(B,)`` sequence log-probabilities of real sentences under the generator (with
            gradient) and under ``p_old``.
        new_fake, old_fake: ``(B',)`` the same for samples of ``p_old``.
    Returns:
        The scalar loss ``mean softplus(old_real - new_real) + mean softplus(new_fake - old_fake)`` (that is
        ``-mean log D(real) - mean log(1 - D(fake))``; the ``old`` terms are detached) and its detached parts:
        ``loss_real``, ``loss_fake``, ``d_real`` and ``d_fake`` (mean ``D``).
    """
    real_ratio = new_real - old_real.detach()  # log p_new / p_old on real sentences
    fake_ratio = new_fake - old_fake.detach()
    loss_real = F.softplus(-real_ratio).mean()  # -log sigmoid(ratio)
    loss_fake = F.softplus(fake_ratio).mean()  # -log(1 - sigmoid(ratio))
    parts = {
        "loss_real": loss_real.detach(),
        "loss_fake": loss_fake.detach(),
        "d_real": torch.sigmoid(real_ratio.detach()).mean(),
        "d_fake": torch.sigmoid(fake_ratio.detach()).mean(),
    }
    return loss_real + loss_fake, parts


class DGSANTrainer(AdversarialTrainer):
    """DGSAN's updates for any :class:`~seqgan.models.base.Generator` (see the module docstring).

    Args:
        generator: the generator (trained in place); ``p_old`` starts as a frozen copy of it.
        discriminator: the run's discriminator, not used (kept so the checkpoint has its usual entries).
        config: :class:`~seqgan.config.DGSANConfig` (defaults when None).
        max_len: length of the sampled sequences.
        rng: ``torch.Generator`` for the samples of ``p_old`` (the global RNG when None).
        nan_guard: what a NaN/inf loss or gradient does (default: stop with :class:`NonFiniteLossError`).
    """

    section = "dgsan"

    def __init__(
        self,
        generator: Generator,
        discriminator: nn.Module,
        config: DGSANConfig | None = None,
        *,
        max_len: int,
        rng: torch.Generator | None = None,
        nan_guard: NonFiniteGuard | None = None,
    ) -> None:
        if max_len < 1:
            raise ValueError(f"max_len must be positive, got {max_len}")
        self.generator, self.discriminator = generator, discriminator
        self.config = cfg = config or DGSANConfig()
        self.max_len, self.rng = max_len, rng
        self.nan_guard = nan_guard or NonFiniteGuard("stop")
        self.g_optimizer = adam([p for p in generator.parameters() if p.requires_grad], lr=cfg.g_lr)
        # the contract's discriminator optimizer: a placeholder, never stepped
        self.d_optimizer = torch.optim.SGD(discriminator.parameters(), lr=0.0)
        self.old = copy.deepcopy(unwrap(generator)).eval().requires_grad_(False)
        """``p_old``: the frozen earlier generator."""
        self.epoch_losses: list[float] = []
        """The last ``refresh_window`` epochs' mean losses (the automatic rule's memory)."""
        self.since_refresh = 0
        """Epochs trained since ``p_old`` was last replaced (or since the start)."""
        self.refreshes = 0
        self.g_steps = 0
        self.d_steps = 0

    def train_epoch(self, real: torch.Tensor, data_rng: torch.Generator) -> dict[str, float]:
        """One epoch: ``steps_per_epoch`` updates (0: one pass over ``real`` ``(N, T)``), real batches in
        ``data_rng``'s order (each pass a fresh permutation); then ``p_old`` is refreshed if the schedule says so.

        Returns:
            The mean of every update's metrics, ``dgsan/epoch_loss``, ``dgsan/refreshes`` (so far),
            ``dgsan/refreshed`` (1 when this epoch ended with a refresh), ``nan/skipped_steps``,
            ``time/generator_s``.
        """
        cfg = self.config
        n = len(real)
        if cfg.steps_per_epoch:
            passes = math.ceil(cfg.steps_per_epoch * cfg.batch_size / n)
            order = torch.cat([torch.randperm(n, generator=data_rng) for _ in range(passes)])
            batches = order[: cfg.steps_per_epoch * cfg.batch_size].split(cfg.batch_size)
        else:
            batches = torch.randperm(n, generator=data_rng).split(cfg.batch_size)
        sums: dict[str, float] = {}
        losses = []
        t0 = time.perf_counter()
        for idx in batches:
            metrics = self.generator_step(real[idx.to(real.device)])
            if math.isfinite(metrics["dgsan/loss"]):
                losses.append(metrics["dgsan/loss"])
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v
        out = {k: v / len(batches) for k, v in sums.items()}
        out["time/generator_s"] = time.perf_counter() - t0
        epoch_loss = sum(losses) / len(losses) if losses else float("nan")
        epoch_loss = distributed.mean_metrics({"loss": epoch_loss})["loss"]  # every rank decides alike
        out["dgsan/epoch_loss"] = epoch_loss
        self.epoch_losses = [*self.epoch_losses, epoch_loss][-cfg.refresh_window :]
        self.since_refresh += 1
        refresh = self.refresh_due()
        if refresh:
            self.refresh()
        out["dgsan/refreshed"] = float(refresh)
        out["dgsan/refreshes"] = float(self.refreshes)
        out["nan/skipped_steps"] = float(self.nan_guard.skipped)
        return out

    def refresh_due(self) -> bool:
        """Whether ``p_old`` is replaced now, after an epoch (the schedule in the module docstring)."""
        cfg = self.config
        if cfg.refresh_every:
            return self.since_refresh >= cfg.refresh_every
        if len(self.epoch_losses) < cfg.refresh_window or self.since_refresh <= cfg.refresh_min_epochs:
            return False
        if self.since_refresh >= cfg.refresh_max_epochs:
            return True
        losses = self.epoch_losses
        mean = sum(losses) / len(losses)
        std = math.sqrt(sum((v - mean) ** 2 for v in losses) / len(losses))  # population std, as numpy's
        return std < cfg.refresh_tol  # False when a loss is NaN

    @torch.no_grad()
    def refresh(self) -> None:
        """``p_old <- p_theta``: the frozen copy takes the generator's current weights."""
        self.old.load_state_dict(unwrap(self.generator).state_dict())
        self.since_refresh = 0
        self.refreshes += 1

    def generator_step(self, real_batch: torch.Tensor) -> dict[str, float]:
        """One update on ``real_batch`` ``(B, T)`` against ``B`` fresh samples of ``p_old`` (:func:`dgsan_loss`).

        Returns:
            ``dgsan/loss``, ``dgsan/loss_real``, ``dgsan/loss_fake``, ``dgsan/d_real``, ``dgsan/d_fake`` (mean
            ``D`` of real sentences and of ``p_old``'s samples), ``generator/grad_norm``, ``generator/sample_len``
            (of ``p_old``'s samples).
        Raises:
            NonFiniteLossError: a NaN/inf loss or gradient and ``nan_policy=stop`` (no parameter is changed).
        """
        gen, old = self.generator, self.old
        real = real_batch.to(old.device)
        real_mask = sequence_mask(real, old.eos_id)
        fake = sample(old, real.shape[0], self.max_len, temperature=1.0, rng=self.rng)
        # real and fake rows in one batch: one forward of each model (under DDP, one forward per backward)
        width = max(real.shape[1], fake.tokens.shape[1])
        tokens = torch.cat([F.pad(x, (0, width - x.shape[1]), value=old.pad_id) for x in (real, fake.tokens)])
        mask = torch.cat([F.pad(m, (0, width - m.shape[1]), value=False) for m in (real_mask, fake.mask)])
        num_real = real.shape[0]
        with torch.autocast(real.device.type, enabled=False):  # sequence sums of ~T terms: fp32
            with torch.no_grad():
                old_real, old_fake = sequence_log_probs(old, tokens, mask).split([num_real, len(fake.tokens)])
            new_real, new_fake = sequence_log_probs(gen, tokens, mask).split([num_real, len(fake.tokens)])
        loss, parts = dgsan_loss(new_real, old_real, new_fake, old_fake)
        stepped, grad_norm = guarded_update(
            loss,
            self.g_optimizer,
            gen.parameters(),
            self.nan_guard,
            "generator",
            self.config.grad_clip,
            what=lambda: (
                f"DGSAN loss {loss.item()} (real {parts['loss_real'].item()}, fake {parts['loss_fake'].item()}); "
                "the step was skipped: lower dgsan.g_lr"
            ),
        )
        self.g_steps += int(stepped)
        return {
            "dgsan/loss": float(loss.detach()),
            **{f"dgsan/{k}": float(v) for k, v in parts.items()},
            "generator/grad_norm": float(grad_norm),
            "generator/sample_len": float(fake.mask.sum(dim=1).float().mean()),
        }

    # ------------------------------------------------------------------ state
    def _extra_state(self) -> dict:
        return {
            "old_generator": self.old.state_dict(),
            "refresh": {
                "epoch_losses": list(self.epoch_losses),
                "since": self.since_refresh,
                "count": self.refreshes,
            },
        }

    def _load_extra_state(self, state: dict) -> None:
        self.old.load_state_dict(state["old_generator"])
        self.epoch_losses = [float(v) for v in state["refresh"]["epoch_losses"]]
        self.since_refresh = int(state["refresh"]["since"])
        self.refreshes = int(state["refresh"]["count"])
