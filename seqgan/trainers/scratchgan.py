"""ScratchGAN: a language GAN trained from scratch (de Masson d'Autume et al. 2019, arXiv 1905.09922).

No maximum-likelihood pretraining: the generator starts from random weights and learns only from a recurrent
discriminator (:class:`~seqgan.models.rnn_discriminator.RNNDiscriminator`) that scores every prefix. One iteration
samples a large batch, takes a discriminator step on it against as many real sentences, then a generator step on
the same samples:

- Discriminator: binary cross-entropy over every real prefix of real and generated sequences
  (:func:`~seqgan.losses.masked_bce`; positions after EOS never count), plus ``d_l2 * sum w^2``. Optionally a
  share of the generated rows are spliced (a real sentence's first k tokens, then generated tokens), whose real
  prefixes are labelled real: the discriminator learns where a sequence stops looking real.
- Generator: dense per-step rewards ``r_t`` from the prefix logits ``D(y_1..t)``
  (:func:`~seqgan.losses.prefix_rewards`), discounted returns ``R_t = sum_{s>=t} gamma^(s-t) r_s``
  (:func:`~seqgan.losses.discounted_returns`), a baseline subtracted, and the REINFORCE step
  :func:`~seqgan.losses.policy_gradient_loss`. Log-probabilities are taken under the sampling distribution
  (:func:`~seqgan.losses.sampled_log_probs`: eval mode, temperature applied, PAD/BOS excluded), so the update is
  the policy gradient of the sampling policy.

Differences from the paper (documented in the config): the EMA baseline is kept per step (ScratchGAN keeps one
scalar); rewards default to ScratchGAN's ``2 sigmoid(D) - 1``. The paper's GloVe embeddings are not shipped:
``scratchgan.embedding_init=vectors`` reads any GloVe-format text file (:func:`read_vectors`).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from seqgan.config import Config, ConfigError, ScratchGANConfig
from seqgan.data.tokenizers import Tokenizer
from seqgan.losses import (
    discounted_returns,
    ema_baseline_update,
    entropy_bonus,
    masked_bce,
    policy_gradient_loss,
    prefix_rewards,
    sampled_log_probs,
    step_baseline,
)
from seqgan.models.base import Generator
from seqgan.sampling import Samples, sample
from seqgan.trainers.base import (
    AdversarialTrainer,
    NonFiniteGuard,
    baseline_state,
    guarded_update,
    load_baseline,
    new_baseline,
)
from seqgan.utils import adam

__all__ = ["ScratchGANTrainer", "init_embeddings", "input_embedding", "read_vectors", "vocab_strings"]


class ScratchGANTrainer(AdversarialTrainer):
    """ScratchGAN's adversarial updates for any :class:`~seqgan.models.base.Generator`.

    Args:
        generator: the generator (trained in place), usually freshly initialised.
        discriminator: a per-prefix discriminator with ``prefix_logits((B, T)) -> (B, T)`` and
            ``mask((B, T)) -> (B, T)``, e.g. :class:`~seqgan.models.rnn_discriminator.RNNDiscriminator`.
        config: :class:`~seqgan.config.ScratchGANConfig` (the ``scratchgan`` config section; defaults when None).
        max_len: length of the sampled sequences.
        rng: ``torch.Generator`` on the generator's device for sampling and splicing (the global RNG when None).
            Dropout uses the global RNG.
        nan_guard: what a NaN/inf loss or gradient does (default: stop with :class:`NonFiniteLossError`).
    """

    section = "scratchgan"

    def __init__(
        self,
        generator: Generator,
        discriminator: nn.Module,
        config: ScratchGANConfig | None = None,
        *,
        max_len: int,
        rng: torch.Generator | None = None,
        nan_guard: NonFiniteGuard | None = None,
    ) -> None:
        if not hasattr(discriminator, "prefix_logits"):
            raise TypeError(
                f"ScratchGAN needs a discriminator that scores every prefix (discriminator.kind=rnn), got "
                f"{type(discriminator).__name__}"
            )
        self.generator, self.discriminator = generator, discriminator
        self.config = cfg = config or ScratchGANConfig()
        self.max_len, self.rng = max_len, rng
        self.nan_guard = nan_guard or NonFiniteGuard("stop")
        if cfg.embedding == "frozen":
            input_embedding(generator).weight.requires_grad_(False)
            if cfg.embedding_discriminator:
                discriminator.embedding.weight.requires_grad_(False)
        betas = (cfg.adam_beta1, 0.999)
        self.g_optimizer = adam(_trainable(generator), lr=cfg.g_lr, betas=betas)
        self.d_optimizer = adam(_trainable(discriminator), lr=cfg.d_lr, betas=betas)
        self.baseline_ema, self.baseline_seen = new_baseline(max_len, generator.device)  # (T,) each
        self.g_steps = 0
        self.d_steps = 0

    def _sample(self, num: int) -> Samples:
        return sample(self.generator, num, self.max_len, temperature=self.config.temperature, rng=self.rng)

    def train_epoch(self, real: torch.Tensor, data_rng: torch.Generator) -> dict[str, float]:
        """``steps_per_epoch`` iterations of: sample ``batch_size`` sequences, a discriminator step on them
        against as many real rows of ``real`` ``(N, T)`` (drawn in ``data_rng``'s order), a generator step on
        the same samples.

        Returns:
            The mean of every step metric over the epoch and ``time/{sampling,discriminator,generator}_s``.
        """
        cfg = self.config
        sums: dict[str, float] = {}
        times = {"time/sampling_s": 0.0, "time/discriminator_s": 0.0, "time/generator_s": 0.0}
        for _ in range(cfg.steps_per_epoch):
            t0 = time.perf_counter()
            samples = self._sample(cfg.batch_size)
            t1 = time.perf_counter()
            idx = torch.randint(len(real), (cfg.batch_size,), generator=data_rng).to(real.device)
            metrics = self._discriminator_update(real[idx].to(self.generator.device), samples.tokens)
            t2 = time.perf_counter()
            metrics.update(self._generator_update(samples))
            t3 = time.perf_counter()
            for k, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                times[k] += dt
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v
        out = {**{k: v / cfg.steps_per_epoch for k, v in sums.items()}, **times}
        out["nan/skipped_steps"] = float(self.nan_guard.skipped)
        return out

    # ------------------------------------------------------------------ generator
    @torch.no_grad()
    def rewards(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` per-step rewards ``r_t`` from the discriminator in eval mode (0 after EOS)."""
        disc = self.discriminator
        was_training = disc.training
        disc.eval()
        try:
            logits = disc.prefix_logits(tokens)  # (B, T)
        finally:
            disc.train(was_training)
        return prefix_rewards(logits, self.config.reward).masked_fill(~mask, 0.0)

    def baseline(self, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        """The baseline for ``returns`` ``(B, T)``: None, or ``(T,)`` per-step values (no state change)."""
        return step_baseline(self.config.baseline, returns, mask, self.baseline_ema, self.baseline_seen)

    def generator_step(self) -> dict[str, float]:
        """One generator update on a fresh batch of ``batch_size`` samples (see :meth:`_generator_update`)."""
        return self._generator_update(self._sample(self.config.batch_size))

    def _generator_update(self, samples: Samples) -> dict[str, float]:
        """REINFORCE on discounted per-prefix rewards; then the EMA baseline moves.

        Returns:
            ``generator/pg_loss``, ``generator/entropy`` (mean over a strided subset of at most ~1024 real
            tokens), ``generator/grad_norm``, ``generator/sample_len``,
            ``reward/mean`` (mean r_t over real tokens), ``reward/last`` (mean reward of whole sequences),
            ``reward/return_mean``, ``reward/baseline_mean``.
        Raises:
            NonFiniteLossError: a NaN/inf loss or gradient and ``nan_policy=stop`` (no parameter is changed).
        """
        cfg, gen = self.config, self.generator
        tokens, mask = samples.tokens, samples.mask  # (B, T)
        rewards = self.rewards(tokens, mask)  # (B, T)
        returns = discounted_returns(rewards, mask, cfg.discount)  # (B, T)
        baseline = self.baseline(returns, mask)

        log_probs, log_dist = sampled_log_probs(gen, tokens, mask, cfg.temperature)  # (B, T), (N, V)
        pg_loss = policy_gradient_loss(log_probs, returns, mask, baseline)
        loss = pg_loss + cfg.g_l2 * _l2(gen) if cfg.g_l2 else pg_loss
        stepped, grad_norm = guarded_update(
            loss,
            self.g_optimizer,
            gen.parameters(),
            self.nan_guard,
            "generator",
            cfg.grad_clip,
            what=lambda: (
                f"generator loss {loss.item()} / gradient; the step was skipped: lower scratchgan.g_lr or check "
                "the discriminator's outputs"
            ),
        )
        if stepped:
            if cfg.baseline == "ema":
                ema_baseline_update(self.baseline_ema, self.baseline_seen, returns, mask, cfg.ema_decay)
            self.g_steps += 1

        with torch.no_grad():  # monitoring only: on an evenly strided subset of at most ~1024 real tokens
            some = log_dist[:: max(1, log_dist.shape[0] // 1024)]
            entropy = entropy_bonus(some[None], torch.ones(1, some.shape[0], dtype=torch.bool))
        lengths = mask.sum(dim=1)  # (B,)
        used = torch.zeros_like(returns) if baseline is None else baseline.expand_as(returns)
        return {
            "generator/pg_loss": pg_loss.item(),
            "generator/entropy": entropy.item(),
            "generator/grad_norm": float(grad_norm),
            "generator/sample_len": float(lengths.float().mean()),
            "reward/mean": float(rewards[mask].mean()),
            "reward/last": float(rewards.gather(1, (lengths - 1).clamp(min=0)[:, None]).mean()),
            "reward/return_mean": float(returns[mask].mean()),
            "reward/baseline_mean": float(used[mask].mean()),
        }

    # ------------------------------------------------------------------ discriminator
    def discriminator_step(self, real_batch: torch.Tensor) -> dict[str, float]:
        """One update on ``real_batch`` ``(B, T)`` against ``B`` fresh samples (see :meth:`_discriminator_update`)."""
        real = real_batch.to(self.generator.device)
        return self._discriminator_update(real, self._sample(real.shape[0]).tokens)

    def splice(
        self, real: torch.Tensor, fake: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Real/fake mixing: rows that start as a real sentence and continue with generated tokens.

        Row i keeps the first ``k_i`` tokens of ``real[i]`` (``k_i`` uniform in ``1 .. len_i - 1``, so the real
        part never contains its EOS; rows of one token are not spliced) and takes ``fake[i]`` from position
        ``k_i`` on.

        Args:
            real: ``(M, T)`` real rows; fake: ``(M, T)`` generated rows.
        Returns:
            ``(M, T)`` spliced tokens, ``(M, T)`` mask of their real positions, ``(M, T)`` float labels (1 for
            prefixes inside the real part).
        """
        disc = self.discriminator
        real_len = disc.mask(real).sum(dim=1)  # (M,)
        u = torch.rand(real.shape[0], device=real.device, generator=self.rng)
        k = 1 + (u * (real_len - 1).clamp(min=0)).long()  # uniform in 1 .. len - 1
        k = torch.where(real_len >= 2, k, torch.zeros_like(k))
        keep = torch.arange(real.shape[1], device=real.device)[None, :] < k[:, None]  # (M, T)
        tokens = torch.where(keep, real, fake)
        mask = keep | disc.mask(fake)  # both are prefixes, so their union is one
        return tokens, mask, keep.float()

    def _discriminator_update(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
        """Masked per-prefix BCE on real ``(B, T)`` and generated ``(B', T)`` rows, plus L2.

        Returns:
            ``discriminator/loss``, ``discriminator/acc_real`` and ``discriminator/acc_fake`` (whole sequences:
            the logit at the last real token), ``discriminator/prefix_acc_real`` and
            ``discriminator/prefix_acc_fake`` (every real prefix).
        Raises:
            NonFiniteLossError: a NaN/inf loss or gradient and ``nan_policy=stop`` (no parameter is changed).
        """
        cfg, disc = self.config, self.discriminator
        mask_real, mask_fake = disc.mask(real), disc.mask(fake)
        labels_fake = torch.zeros(fake.shape, device=fake.device)
        num_mixed = round(cfg.mix_fraction * fake.shape[0])
        if num_mixed:
            order = torch.randperm(real.shape[0], device=real.device, generator=self.rng)[:num_mixed]
            tokens, mask, labels = self.splice(real[order], fake[:num_mixed])
            fake = torch.cat([tokens, fake[num_mixed:]])
            mask_fake = torch.cat([mask, mask_fake[num_mixed:]])
            labels_fake = torch.cat([labels, labels_fake[num_mixed:]])

        disc.train()
        logits_real, logits_fake = disc.prefix_logits(real), disc.prefix_logits(fake)  # (B, T)
        bce = masked_bce(logits_real, 1.0, mask_real) + masked_bce(logits_fake, labels_fake, mask_fake)
        loss = bce + cfg.d_l2 * _l2(disc) if cfg.d_l2 else bce
        stepped, _ = guarded_update(
            loss,
            self.d_optimizer,
            disc.parameters(),
            self.nan_guard,
            "discriminator",
            cfg.grad_clip,
            what=lambda: f"discriminator loss {loss.item()} / gradient; lower scratchgan.d_lr",
        )
        if stepped:
            self.d_steps += 1

        with torch.no_grad():
            last_real = logits_real.gather(1, (mask_real.sum(1) - 1).clamp(min=0)[:, None])
            pure = labels_fake.sum(dim=1) == 0  # generated rows that were not spliced
            last_fake = logits_fake.gather(1, (mask_fake.sum(1) - 1).clamp(min=0)[:, None])[pure]
            correct_fake = (logits_fake > 0) == labels_fake.bool()
        return {
            "discriminator/loss": bce.item(),
            "discriminator/acc_real": float((last_real > 0).float().mean()),
            "discriminator/acc_fake": float((last_fake < 0).float().mean())
            if len(last_fake)
            else float("nan"),
            "discriminator/prefix_acc_real": float((logits_real > 0)[mask_real].float().mean()),
            "discriminator/prefix_acc_fake": float(correct_fake[mask_fake].float().mean()),
        }

    # ------------------------------------------------------------------ state
    def _extra_state(self) -> dict:
        return {"baseline": baseline_state(self.baseline_ema, self.baseline_seen)}

    def _load_extra_state(self, state: dict) -> None:
        load_baseline(state["baseline"], self.baseline_ema, self.baseline_seen)


def _trainable(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def _l2(module: nn.Module) -> torch.Tensor:
    """Sum of squared trainable weights."""
    return torch.stack([p.pow(2).sum() for p in _trainable(module)]).sum()


# ---------------------------------------------------------------------------------------------------------
# Embedding initialisation: from a checkpoint's generator or from a vectors file


def input_embedding(generator: nn.Module) -> nn.Embedding:
    """The token embedding a generator reads (for a transformer with tied weights, also its output layer)."""
    if isinstance(getattr(generator, "embedding", None), nn.Embedding):
        return generator.embedding
    model = getattr(generator, "model", None)
    if model is not None and hasattr(model, "get_input_embeddings"):
        return model.get_input_embeddings()
    raise TypeError(f"cannot find the input embedding of {type(generator).__name__}")


def vocab_strings(tokenizer: Tokenizer) -> list[str | None]:
    """The string of every id (None for PAD/BOS/EOS, which have none)."""
    out: list[str | None] = []
    for i in range(tokenizer.vocab_size):
        words = tokenizer.decode_tokens([i]) if i != tokenizer.eos_id else []
        out.append(words[0] if len(words) == 1 else None)
    return out


def read_vectors(path: str | Path, dim: int, wanted: set[str] | None = None) -> dict[str, torch.Tensor]:
    """Word vectors from a text file with one ``word v1 .. v_dim`` line per word (GloVe's format).

    A first line of two integers (word2vec's ``count dim`` header) is skipped. The word is everything before the
    last ``dim`` fields, so words containing spaces are read whole.

    Args:
        path: the file (UTF-8).
        dim: the expected vector size.
        wanted: keep only these words (None keeps all); the first occurrence of a word wins.
    Returns:
        word -> ``(dim,)`` float tensor.
    Raises:
        FileNotFoundError: no such file. ValueError: a line with the wrong number of fields or a non-number,
        naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"vectors file not found: {path}")
    vectors: dict[str, torch.Tensor] = {}
    first = True
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue
            if parts == [""]:
                continue
            if first and len(parts) != dim + 1:  # the first word (usually "the" or ",") has no space in it
                raise ValueError(
                    f"{path}:{lineno}: vectors of size {len(parts) - 1}, expected {dim} (the size of the "
                    "embeddings they initialise, generator.embed_dim)"
                )
            first = False
            if len(parts) < dim + 1:
                raise ValueError(
                    f"{path}:{lineno}: expected a word and {dim} numbers, got {len(parts)} fields (the vectors "
                    "must have the size of the embeddings they initialise)"
                )
            word = " ".join(parts[:-dim])
            if (wanted is not None and word not in wanted) or word in vectors:
                continue
            try:
                vectors[word] = torch.tensor([float(x) for x in parts[-dim:]])
            except ValueError:
                raise ValueError(f"{path}:{lineno}: not a number in the vector of {word!r}") from None
    return vectors


def _copy_rows(embedding: nn.Embedding, strings: list[str | None], vectors: dict[str, torch.Tensor]) -> int:
    """Copies the vector of every id whose string (or its lowercase form) has one; returns how many."""
    found = 0
    with torch.no_grad():
        for i, s in enumerate(strings):
            if s is None:
                continue
            v = vectors.get(s, vectors.get(s.lower()))
            if v is not None:
                embedding.weight[i].copy_(v.to(embedding.weight))
                found += 1
    return found


def init_embeddings(
    cfg: Config, tokenizer: Tokenizer, generator: nn.Module, discriminator: nn.Module | None = None
) -> dict[str, float] | None:
    """Initialises fresh models' token embeddings as ``cfg.scratchgan.embedding_init`` says.

    ``checkpoint``: the generator embeddings of the checkpoint at ``embedding_path``, matched by token string
    (so its tokenizer may differ); ``vectors``: a GloVe-format text file (:func:`read_vectors`). Tokens without a
    vector keep their random initialisation. With ``embedding_discriminator`` the discriminator's embedding gets
    the same rows.

    Returns:
        None for ``random``; else ``{"found", "total", "coverage"}``: tokens with a vector, tokens with a string
        (PAD/BOS/EOS excluded) and their ratio.
    Raises:
        ConfigError: the dimensions do not match, naming the keys.
    """
    s = cfg.scratchgan
    if s.embedding_init == "random":
        return None
    targets = [("generator.embed_dim", input_embedding(generator))]
    if s.embedding_discriminator and discriminator is not None:
        targets.append(("discriminator.embed_dim", discriminator.embedding))
    strings = vocab_strings(tokenizer)
    dim = targets[0][1].embedding_dim
    if s.embedding_init == "checkpoint":
        from seqgan.runs import load_run

        run = load_run(s.embedding_path)
        weight = input_embedding(run.generator).weight.detach()
        vectors = {w: weight[i] for i, w in enumerate(vocab_strings(run.tokenizer)) if w is not None}
        source_dim = weight.shape[1]
    else:
        wanted = {w for w in strings if w is not None} | {w.lower() for w in strings if w is not None}
        vectors = read_vectors(s.embedding_path, dim, wanted)
        source_dim = dim
    found = 0
    for key, emb in targets:
        if emb.embedding_dim != source_dim:
            raise ConfigError(
                f"{key}={emb.embedding_dim} does not match the {source_dim}-dimensional vectors of "
                f"{s.embedding_path} (scratchgan.embedding_init={s.embedding_init})"
            )
        found = _copy_rows(emb, strings, vectors)
    total = sum(w is not None for w in strings)
    return {"found": found, "total": total, "coverage": found / max(total, 1)}
