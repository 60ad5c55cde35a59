"""CatGAN (Liu, Wang & Liang, "CatGAN: Category-aware Generative Adversarial Networks with Hierarchical
Evolutionary Learning for Category Text Generation", AAAI 2020, arXiv 1911.06641).

One class-conditional generator (:class:`~seqgan.models.class_conditional.ClassLSTM`; CatGAN feeds the category
vector at every step: ``generator.class_every_step``) is trained by backpropagation through Gumbel-softmax
relaxed samples (:func:`~seqgan.trainers.gumbel.relaxed_sample`, the inverse temperature annealed as in RelGAN)
against a multi-class discriminator: the category task's ``(k + 1)``-output CNN, read per class as the score
``s_c(x) = z_c(x) - z_fake(x)`` (:func:`~seqgan.losses.class_scores`). The *category-wise* loss compares class-c
real sentences with class-c generated ones only: ``L = mean_c loss(s_c(real_c), s_c(fake_c))`` with a loss of
the GAN family (:func:`~seqgan.losses.gan_d_loss` / :func:`~seqgan.losses.gan_g_loss`; CatGAN's is the
relativistic standard one, ``rsgan``), so the gap between real and generated text is measured inside each
category.

The evolutionary update (``catgan.evolution``): a population of parents; every iteration each parent is copied
once per loss of ``catgan.mutations`` (its variation), each copy takes ``g_steps`` updates with its own loss, and
the ``population`` fittest copies are the next parents (:func:`evolve`). Fitness is quality plus
``lambda_diversity`` times diversity on ``fitness_samples`` fresh sentences per class (:func:`fitness`):
quality is the discriminator's relativistic-average probability that a generated class-c sentence beats the
mean real class-c sentence (``sigmoid(s_c(fake) - mean s_c(real))``, one shared real batch for every child);
diversity is the child's mean per-token negative log-likelihood of its own samples (an entropy estimate: a
collapsed generator scores low). The trainer's ``generator`` is always the fittest parent. The paper's second
level of the hierarchy (evolving the temperature as well) is not implemented; the temperature follows the
annealing schedule.

Settings: :class:`~seqgan.config.CatGANConfig` (the ``catgan`` section).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from seqgan.config import CatGANConfig, Config
from seqgan.distributed import unwrap
from seqgan.losses import class_scores, gan_d_loss, gan_g_loss, sequence_nll
from seqgan.models.seq2seq import BoundGenerator
from seqgan.trainers.base import AdversarialTrainer, NonFiniteGuard, guarded_update
from seqgan.trainers.category import check_multiclass, class_draw, class_members, sample_class
from seqgan.trainers.gumbel import inverse_temperature, relaxed_sample
from seqgan.utils import adam

__all__ = ["CatGANTrainer", "category_loss", "evolve", "fitness"]


def category_loss(
    kind: str, loss_of, real: torch.Tensor | None, fake: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """The category-wise loss: ``mean_c loss_of(kind, real_c, fake_c)`` over the ``num_classes`` equal blocks of
    ``(k * B,)`` class scores (``real`` may be None for losses that do not read it)."""
    fakes = fake.view(num_classes, -1)
    reals = [None] * num_classes if real is None else real.view(num_classes, -1)
    return torch.stack([loss_of(kind, r, f) for r, f in zip(reals, fakes, strict=True)]).mean()


def fitness(
    real_scores: torch.Tensor,
    fake_scores: torch.Tensor,
    self_nll: float,
    lambda_diversity: float,
    num_classes: int,
) -> tuple[float, float, float]:
    """``(fitness, quality, diversity)`` of one child.

    Args:
        real_scores: ``(k * R,)`` class scores ``s_c`` of real sentences, class blocks in order.
        fake_scores: ``(k * F,)`` class scores of the child's samples, class blocks in order.
        self_nll: the child's mean per-token NLL of its own samples (the diversity term).
        lambda_diversity: weight of the diversity term.
        num_classes: ``k``.
    Returns:
        quality ``= mean_c mean_i sigmoid(s_c(fake_i) - mean_j s_c(real_j))``, diversity ``= self_nll`` and
        ``quality + lambda_diversity * diversity``.
    """
    real_mean = real_scores.view(num_classes, -1).mean(dim=1, keepdim=True)  # (k, 1)
    quality = float(torch.sigmoid(fake_scores.view(num_classes, -1) - real_mean).mean())
    return quality + lambda_diversity * self_nll, quality, float(self_nll)


def evolve(
    parents: Sequence[Any],
    mutations: Sequence[Any],
    vary: Callable[[Any, Any], Any],
    judge: Callable[[Any], float],
    population: int,
) -> tuple[list[Any], list[float], list[tuple[int, int]]]:
    """One generation: every (parent, mutation) child ``vary(parent, mutation)``, judged right after it is made
    (``judge(child)``, higher is fitter); the ``population`` fittest survive.

    Returns:
        ``(survivors, their fitness, their (parent index, mutation index))``, fittest first; among equal fitness
        the child made first wins.
    """
    children, scores, origin = [], [], []
    for i, parent in enumerate(parents):
        for j, mutation in enumerate(mutations):
            child = vary(parent, mutation)
            children.append(child)
            scores.append(float(judge(child)))
            origin.append((i, j))
    order = sorted(range(len(children)), key=lambda n: -scores[n])[:population]  # stable: ties keep order
    return [children[n] for n in order], [scores[n] for n in order], [origin[n] for n in order]


class CatGANTrainer(AdversarialTrainer):
    """CatGAN's adversarial training (see the module docstring).

    Args:
        generator: a class-conditional generator (trained in place).
        discriminator: a :class:`~seqgan.models.discriminator.CNNDiscriminator` with ``num_outputs = k + 1``.
        config: :class:`~seqgan.config.CatGANConfig` (defaults when None).
        max_len: length of the generated sentences.
        rng: ``torch.Generator`` for the Gumbel noise and the fitness samples.
        nan_guard: what a NaN/inf loss or gradient does (default: stop).
        total_steps: the run's generator steps, which ``anneal_steps = 0`` anneals over.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        config: CatGANConfig | None = None,
        *,
        max_len: int,
        rng: torch.Generator | None = None,
        nan_guard: NonFiniteGuard | None = None,
        total_steps: int | None = None,
    ) -> None:
        self.config = config = config or CatGANConfig()
        self.generator, self.discriminator = generator, discriminator
        self.num_classes = check_multiclass("CatGAN", generator, discriminator)
        self.anneal_steps = config.anneal_steps or (total_steps or 0)
        if self.anneal_steps <= 0 and config.temperature_schedule != "constant":
            raise ValueError(
                "catgan.anneal_steps=0 anneals over the whole run: give total_steps or anneal_steps"
            )
        self.max_len = max_len
        self.rng = rng
        self.nan_guard = nan_guard or NonFiniteGuard("stop")
        self.g_optimizer = adam(generator.parameters(), lr=config.g_lr)
        self.d_optimizer = adam(discriminator.parameters(), lr=config.d_lr)
        self.bound = BoundGenerator(generator, self.batch_labels(config.batch_size)[:, None])
        self.population: list[dict] = []
        """The evolution's parents (``generator`` and ``optimizer`` states), fittest first (empty until the
        first evolution step; the fittest is also loaded in ``generator``)."""
        self.g_steps = 0
        self.d_steps = 0

    @classmethod
    def from_config(
        cls,
        cfg: Config,
        generator: nn.Module,
        discriminator: nn.Module,
        rng: torch.Generator | None = None,
        **_,
    ) -> CatGANTrainer:
        """The trainer an experiment config describes (``adversarial.method: catgan``, ``catgan`` section)."""
        c = cfg.catgan
        return cls(
            generator,
            discriminator,
            c,
            max_len=cfg.data.max_len,
            rng=rng,
            nan_guard=NonFiniteGuard(cfg.nan_policy, cfg.nan_max_consecutive),
            total_steps=max(1, cfg.adversarial.epochs * c.steps_per_epoch * c.g_steps),
        )

    def batch_labels(self, per_class: int) -> torch.Tensor:
        """``(k * per_class,)`` classes: ``per_class`` rows of class 0, then class 1, ..."""
        device = unwrap(self.generator).device
        return torch.arange(self.num_classes, device=device).repeat_interleave(per_class)

    @property
    def beta(self) -> float:
        """The current inverse temperature of the relaxation (a function of the generator steps taken)."""
        c = self.config
        return inverse_temperature(
            c.temperature_schedule, self.g_steps, self.anneal_steps, c.max_inverse_temperature
        )

    def _scores(
        self, x: torch.Tensor, labels: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Class scores ``s_c`` ``(N,)`` of ids ``(N, T)`` or relaxed vectors ``(N, T, V)`` of classes ``labels``."""
        return class_scores(self.discriminator(x, lengths).float(), labels)

    def _relaxed(self, per_class: int):
        labels = self.batch_labels(per_class)
        self.bound.rebind(labels[:, None])
        return relaxed_sample(self.bound, labels.numel(), self.max_len, self.beta, rng=self.rng), labels

    # ------------------------------------------------------------------ generator
    def generator_step(self, real, real_labels: torch.Tensor | None = None, loss: str | None = None) -> dict:
        """One generator update with the category-wise loss ``loss`` (default ``catgan.loss``).

        Args:
            real: ``(k * B, T)`` real ids, ``B`` of each class in class order (as :meth:`real_batch` draws them;
                read by ``rsgan``), or an object with ``tokens`` and ``labels``.
            real_labels: their classes.
            loss: the generator loss (a mutation of the evolution).
        Returns:
            ``generator/loss``, ``generator/grad_norm``, ``generator/inverse_temperature``,
            ``generator/sample_len``.
        """
        if real_labels is None:
            real, real_labels = real.tokens, real.labels
        c, gen, disc = self.config, self.generator, self.discriminator
        kind = loss or c.loss
        beta = self.beta
        gen.train()
        disc.train()
        fake, labels = self._relaxed(c.batch_size)
        s_fake = self._scores(fake.vectors, labels, fake.lengths)
        s_real = (
            self._scores(real.to(fake.tokens.device), real_labels.to(labels.device))
            if kind == "rsgan"
            else None
        )
        value = category_loss(kind, gan_g_loss, s_real, s_fake, self.num_classes)
        stepped, grad_norm = guarded_update(
            value, self.g_optimizer, gen.parameters(), self.nan_guard, "generator", c.grad_clip,
            what=lambda: f"generator loss {value.item()}; the step was skipped: lower catgan.g_lr",
            clear=[disc],  # the generator loss never trains the discriminator
        )  # fmt: skip
        if stepped:
            self.g_steps += 1
        lengths = fake.lengths.float() if fake.lengths is not None else torch.full((1,), float(self.max_len))
        return {
            "generator/loss": value.item(),
            "generator/grad_norm": float(grad_norm),
            "generator/inverse_temperature": beta,
            "generator/sample_len": float(lengths.mean()),
        }

    def evolution_step(self, draw: Callable[[], tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
        """One generation of the evolution (see the module docstring); ``draw()`` gives a real batch
        ``(tokens, labels)`` of ``batch_size`` sentences per class. The fittest child is loaded into the
        generator and its optimizer; the survivors become :attr:`population`.

        Returns:
            ``evolution/fitness``, ``evolution/quality``, ``evolution/diversity`` (of the fittest),
            ``evolution/mutation`` (the index of its loss in ``catgan.mutations``) and the generator metrics of
            its last update.
        """
        c = self.config
        if not self.population:
            self.population = [self._snapshot()]
        steps = self.g_steps
        fit_real, fit_labels = draw()  # one shared real batch judges every child
        with torch.no_grad():
            self.discriminator.eval()
            real_scores = self._scores(fit_real.to(unwrap(self.generator).device), fit_labels)
            self.discriminator.train()
        last: dict[str, dict] = {}
        detail: dict[int, tuple[float, float]] = {}

        def vary(parent: dict, mutation: str) -> dict:
            self._restore(parent)
            self.g_steps = steps  # every child anneals from the same position
            metrics = {}
            for _ in range(c.g_steps):
                tokens, labels = draw()
                metrics = self.generator_step(tokens, labels, loss=mutation)
            child = self._snapshot()
            last[id(child)] = metrics
            return child

        def judge(child: dict) -> float:  # the child is the generator's current state
            score, quality, diversity = self._fitness(real_scores)
            detail[id(child)] = (quality, diversity)
            return score

        survivors, scores, origin = evolve(self.population, c.mutations, vary, judge, c.population)
        self.population = survivors
        self._restore(survivors[0])
        self.g_steps = steps + c.g_steps
        quality, diversity = detail[id(survivors[0])]
        return {
            **last[id(survivors[0])],
            "evolution/fitness": scores[0],
            "evolution/quality": quality,
            "evolution/diversity": diversity,
            "evolution/mutation": float(origin[0][1]),
        }

    @torch.no_grad()
    def _fitness(self, real_scores: torch.Tensor) -> tuple[float, float, float]:
        c, gen = self.config, unwrap(self.generator)
        was = gen.training
        gen.eval()
        self.discriminator.eval()
        try:
            tokens = torch.cat(
                [
                    sample_class(gen, i, c.fitness_samples, self.max_len, rng=self.rng).tokens
                    for i in range(self.num_classes)
                ]
            )
            labels = self.batch_labels(c.fitness_samples)
            fake_scores = self._scores(tokens, labels)
            nll, count = sequence_nll(BoundGenerator(gen, labels[:, None]), tokens)
        finally:
            gen.train(was)
            self.discriminator.train()
        return fitness(
            real_scores, fake_scores, float(nll) / max(count, 1), c.lambda_diversity, self.num_classes
        )

    def _snapshot(self) -> dict:
        return {
            "generator": {k: v.detach().clone() for k, v in unwrap(self.generator).state_dict().items()},
            "optimizer": copy.deepcopy(self.g_optimizer.state_dict()),
        }

    def _restore(self, member: dict) -> None:
        unwrap(self.generator).load_state_dict(member["generator"])
        self.g_optimizer.load_state_dict(copy.deepcopy(member["optimizer"]))

    # ------------------------------------------------------------------ discriminator
    def discriminator_step(self, real, real_labels: torch.Tensor | None = None) -> dict[str, float]:
        """One update of the category-wise discriminator loss on real ids (``(k * B, T)`` in class blocks, or an
        object with ``tokens`` and ``labels``) against ``B`` relaxed samples per class (drawn without gradient).

        Returns:
            ``discriminator/loss``, ``acc_pair`` (share of class-c pairs with ``s_c(real) > s_c(fake)``),
            ``acc_real`` / ``acc_fake`` (real rows put in their class / generated rows put in the fake class by
            the argmax of the k + 1 outputs).
        """
        if real_labels is None:
            real, real_labels = real.tokens, real.labels
        c, gen, disc = self.config, self.generator, self.discriminator
        per_class = real.shape[0] // self.num_classes
        with torch.no_grad():
            was = gen.training
            gen.eval()
            try:
                fake, labels = self._relaxed(per_class)
            finally:
                gen.train(was)
        disc.train()
        real = real.to(fake.tokens.device)
        logits_real = disc(real).float()
        logits_fake = disc(fake.vectors, fake.lengths).float()
        s_real = class_scores(logits_real, real_labels.to(labels.device))
        s_fake = class_scores(logits_fake, labels)
        loss = category_loss(c.loss, gan_d_loss, s_real, s_fake, self.num_classes)
        stepped, _ = guarded_update(
            loss, self.d_optimizer, disc.parameters(), self.nan_guard, "discriminator",
            what=lambda: f"discriminator loss {loss.item()}; lower catgan.d_lr",
        )  # fmt: skip
        if stepped:
            self.d_steps += 1
        k = self.num_classes
        with torch.no_grad():
            return {
                "discriminator/loss": loss.item(),
                "discriminator/acc_pair": float((s_real > s_fake).float().mean()),
                "discriminator/acc_real": float(
                    (logits_real.argmax(1) == real_labels.to(labels.device)).float().mean()
                ),
                "discriminator/acc_fake": float((logits_fake.argmax(1) == k).float().mean()),
            }

    # ------------------------------------------------------------------ epoch
    def train_epoch(self, real, data_rng: torch.Generator) -> dict[str, float]:
        """``steps_per_epoch`` iterations of ``g_steps`` generator updates (or one evolution step) then
        ``d_steps`` discriminator updates, each on ``batch_size`` real sentences per class drawn with
        ``data_rng`` from ``real`` (an object with ``tokens`` ``(N, T)`` and ``labels`` ``(N,)``).

        Returns:
            The epoch's mean metrics, ``time/generator_s``, ``time/discriminator_s``, ``nan/skipped_steps``.
        """
        c = self.config
        members = class_members(real.labels, self.num_classes)

        def draw() -> tuple[torch.Tensor, torch.Tensor]:
            idx = class_draw(members, c.batch_size, data_rng).to(real.tokens.device)
            return real.tokens[idx], real.labels[idx]

        sums: dict[str, float] = {}
        counts: dict[str, int] = {}

        def add(metrics: dict[str, float]) -> None:
            for key, v in metrics.items():
                sums[key] = sums.get(key, 0.0) + v
                counts[key] = counts.get(key, 0) + 1

        t_gen = t_dis = 0.0
        for _ in range(c.steps_per_epoch):
            t0 = time.perf_counter()
            if c.evolution:
                add(self.evolution_step(draw))
            else:
                for _ in range(c.g_steps):
                    add(self.generator_step(*draw()))
            t1 = time.perf_counter()
            for _ in range(c.d_steps):
                add(self.discriminator_step(*draw()))
            t_gen, t_dis = t_gen + t1 - t0, t_dis + time.perf_counter() - t1
        out = {key: v / counts[key] for key, v in sums.items()}
        out["time/generator_s"], out["time/discriminator_s"] = t_gen, t_dis
        out["nan/skipped_steps"] = float(self.nan_guard.skipped)
        return out

    # ------------------------------------------------------------------ state
    def _extra_state(self) -> dict:
        return {"anneal_steps": self.anneal_steps, "population": self.population}

    def _load_extra_state(self, state: dict) -> None:
        self.anneal_steps = int(state.get("anneal_steps", self.anneal_steps))
        self.population = list(state.get("population", []))
