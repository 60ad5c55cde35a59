"""A GAN inside TRL: a seqgan discriminator as the reward of GRPO or RLOO, trained online against the policy.

TRL's ``GRPOTrainer`` and ``RLOOTrainer`` take reward functions and frozen reward models. A discriminator that
keeps learning to tell the policy's completions from real text, while the policy learns to fool it, is a GAN;
this module gives TRL one:

* :class:`DiscriminatorReward`: a callable with TRL's reward-function signature (``prompts``, ``completions``,
  ``completion_ids``, ``**kwargs`` -> one float per completion) that scores the completions' token ids with a
  seqgan discriminator (:class:`~seqgan.models.discriminator.CNNDiscriminator` over the policy's vocabulary, or
  :class:`~seqgan.models.pair_discriminator.PairDiscriminator` on (prompt, completion)) and keeps the most recent
  completions;
* :class:`DiscriminatorCallback`: a ``transformers.TrainerCallback`` that every ``every`` policy steps trains
  that discriminator on those completions against real text (binary cross-entropy, Adam, the NaN policy of
  :func:`~seqgan.trainers.base.guarded_update`), reports its loss and accuracies through TRL's logger (and
  exactly at its step through an optional ``log`` function), and saves / restores its state with TRL's
  checkpoints (``checkpoint-N/seqgan_discriminator.pt``), so ``train(resume_from_checkpoint=True)`` continues the
  discriminator too;
* :func:`train_trl_gan`: the whole run ``recipes/trl_gan.py`` drives (policy from an MLE checkpoint or fresh with
  supervised fine-tuning, discriminator warm-up, GRPO / RLOO with the two above, this toolkit's evaluation
  before and after, metrics and curves, the final policy saved as a Hugging Face folder).

The policy is any Hugging Face causal LM. Its tokenizer must number tokens as the discriminator does: with this
toolkit's word tokenizer, :func:`seqgan.data.tokenizers.to_hf_tokenizer` gives the Hugging Face tokenizer with
the same ids. Completions that stop at EOS include it (TRL keeps the first EOS), as the real rows do
(``y_1 .. y_n EOS PAD ..``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqgan.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from seqgan.data.datasets import fit_length, pad_row
from seqgan.data.pairs import mismatched_indices
from seqgan.losses import discriminator_bce
from seqgan.trainers.base import NonFiniteGuard, guarded_update
from seqgan.trainers.steps import discriminator_step
from seqgan.utils import adam

try:  # the callback subclasses TRL's (transformers') TrainerCallback when it is installed
    from transformers import TrainerCallback
except ImportError:  # pragma: no cover - transformers is a core dependency
    TrainerCallback = object  # type: ignore[assignment,misc]

__all__ = ["DiscriminatorCallback", "DiscriminatorReward", "ids_to_rows", "prompt_texts", "train_trl_gan"]

STATE_FILE = "seqgan_discriminator.pt"
"""The discriminator's state in each of TRL's ``checkpoint-N`` folders."""

REWARDS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "prob": torch.sigmoid,  # D(x): the probability that x is real
    "logit": lambda z: z,  # log D(x) - log(1 - D(x))
    "log_prob": nn.functional.logsigmoid,  # log D(x)
}
"""``reward`` -> the map from the discriminator's logit to the completion's reward."""


def ids_to_rows(ids: Sequence[Sequence[int]], max_len: int, pad_id: int) -> torch.Tensor:
    """Token-id lists -> ``(B, max_len)`` rows, cut at ``max_len`` and right-padded with ``pad_id``."""
    rows = torch.full((len(ids), max_len), pad_id, dtype=torch.long)
    for i, seq in enumerate(ids):
        seq = list(seq)[:max_len]
        if seq:
            rows[i, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return rows


class DiscriminatorReward:
    """TRL reward function: the discriminator's verdict on each completion.

    Args:
        discriminator: a seqgan CNN discriminator (``(B, T)`` ids -> ``(B,)`` logits, real positive) or a pair
            discriminator (``(contexts, responses)`` -> logits) over the policy's token ids.
        max_len: completions are cut to this many tokens (the real rows' width).
        pad_id: padding id of the rows.
        reward: ``prob`` (D(x), in (0, 1)), ``logit`` or ``log_prob`` (log D(x)).
        contexts_of: for a pair discriminator, ``prompts -> (B, Tc)`` context ids.
        buffer_size: how many of the most recent completions (with their contexts) to keep for
            :class:`DiscriminatorCallback`.
        batch_size: completions scored per discriminator call.
    """

    __name__ = "discriminator"  # TRL names the reward's metrics after it: rewards/discriminator/mean

    def __init__(
        self,
        discriminator: nn.Module,
        max_len: int,
        pad_id: int,
        reward: str = "prob",
        contexts_of: Callable[[list], torch.Tensor] | None = None,
        buffer_size: int = 512,
        batch_size: int = 256,
    ) -> None:
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {sorted(REWARDS)}, got {reward!r}")
        self.discriminator, self.max_len, self.pad_id = discriminator, max_len, pad_id
        self.reward, self.contexts_of = reward, contexts_of
        self.buffer_size, self.batch_size = buffer_size, batch_size
        self.fake = torch.empty(0, max_len, dtype=torch.long)
        self.contexts: torch.Tensor | None = None
        self.log_metric: Callable[[str, float], None] | None = None

    @property
    def pairs(self) -> bool:
        return self.contexts_of is not None

    @torch.no_grad()
    def scores(self, rows: torch.Tensor, contexts: torch.Tensor | None = None) -> torch.Tensor:
        """``(B,)`` logits of ``rows`` (and their ``contexts``), in eval mode (no dropout)."""
        d = self.discriminator
        device = next(d.parameters()).device
        was_training = d.training
        d.eval()
        try:
            out = []
            for i in range(0, rows.shape[0], self.batch_size):
                x = rows[i : i + self.batch_size].to(device)
                if contexts is None:
                    out.append(d(x).float())
                else:
                    out.append(d(contexts[i : i + self.batch_size].to(device), x).float())
        finally:
            d.train(was_training)
        return torch.cat(out).cpu() if out else torch.empty(0)

    def remember(self, rows: torch.Tensor, contexts: torch.Tensor | None = None) -> None:
        """Adds completions (and their contexts) to the buffer, keeping the most recent ``buffer_size``."""
        self.fake = torch.cat([self.fake, rows.cpu()])[-self.buffer_size :]
        if contexts is not None:
            base = contexts.cpu() if self.contexts is None else torch.cat([self.contexts, contexts.cpu()])
            self.contexts = base[-self.buffer_size :]

    def __call__(
        self, prompts: list, completions: list, completion_ids: list[list[int]] | None = None, **kwargs: Any
    ) -> list[float]:
        if completion_ids is None:
            raise ValueError("DiscriminatorReward needs the completions' token ids (completion_ids) from TRL")
        self.log_metric = kwargs.get("log_metric", self.log_metric)
        rows = ids_to_rows(completion_ids, self.max_len, self.pad_id)
        contexts = self.contexts_of(prompts) if self.contexts_of is not None else None
        logits = self.scores(rows, contexts)
        self.remember(rows, contexts)
        return REWARDS[self.reward](logits).tolist()

    def state_dict(self) -> dict:
        return {
            "fake": self.fake.clone(),
            "contexts": None if self.contexts is None else self.contexts.clone(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.fake = state["fake"].clone()
        self.contexts = None if state.get("contexts") is None else state["contexts"].clone()


class DiscriminatorCallback(TrainerCallback):
    """Trains :class:`DiscriminatorReward`'s discriminator during a TRL run, on the policy's latest completions.

    Every ``every`` policy steps (after the step), ``steps`` updates, each on ``batch_size`` completions drawn
    from the reward's buffer against ``batch_size`` real rows (a pair discriminator: real (context, response)
    pairs against the completions with their prompts' contexts, and a ``mismatch_fraction`` of real responses
    paired with another context). The metrics (``discriminator/loss``, ``acc_real``, ``acc_fake``) go to TRL's
    logger (reported with the next step's logs) and, exactly at their step, to ``log(step, metrics)``.

    Args:
        reward: the reward whose discriminator this trains.
        real: real rows ``(N, T)`` (ids ``y_1 .. y_n EOS PAD ..``, ``T`` = the reward's ``max_len``); for a
            pair discriminator ``(contexts (N, Tc), responses (N, T))``.
        every: policy steps between discriminator trainings.
        steps: discriminator updates each time.
        batch_size: real and generated rows per update (each).
        lr: Adam learning rate.
        seed: seeds the draws of real and generated rows.
        mismatch_fraction: pair discriminator: share of negatives that are mismatched real pairs.
        nan_policy: ``stop`` or ``skip`` a non-finite update (see :class:`NonFiniteGuard`).
        log: called as ``log(global_step, metrics)`` after each training.
    """

    def __init__(
        self,
        reward: DiscriminatorReward,
        real: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
        every: int = 1,
        steps: int = 1,
        batch_size: int = 64,
        lr: float = 1e-4,
        seed: int = 0,
        mismatch_fraction: float = 0.0,
        nan_policy: str = "stop",
        log: Callable[[int, dict], None] | None = None,
    ) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.reward, self.every, self.steps, self.batch_size = reward, every, steps, batch_size
        if reward.pairs != isinstance(real, tuple):
            raise ValueError("a pair discriminator trains on (contexts, responses); a CNN on (N, T) rows")
        self.real = real
        self.mismatch_fraction = mismatch_fraction
        self.optimizer = adam(reward.discriminator.parameters(), lr=lr)
        self.rng = torch.Generator().manual_seed(seed)
        self.guard = NonFiniteGuard(nan_policy)
        self.log = log
        self.updates = 0
        self.history: list[dict] = []

    # ------------------------------------------------------------------ training
    def train(self, step: int, updates: int | None = None) -> dict[str, float]:
        """``updates`` (default ``steps``) discriminator updates on the buffer; returns their mean metrics."""
        reward = self.reward
        if reward.fake.shape[0] == 0:
            return {}
        device = next(reward.discriminator.parameters()).device
        sums: dict[str, float] = {}
        n = updates if updates is not None else self.steps
        for _ in range(n):
            fake_idx = torch.randperm(reward.fake.shape[0], generator=self.rng)[: self.batch_size]
            num_real = (self.real[1] if reward.pairs else self.real).shape[0]
            real_idx = torch.randperm(num_real, generator=self.rng)[: self.batch_size]
            if reward.pairs:
                metrics = self._pair_update(real_idx, fake_idx, device)
            else:
                metrics = discriminator_step(
                    reward.discriminator,
                    self.optimizer,
                    self.real[real_idx].to(device),
                    reward.fake[fake_idx].to(device),
                    self.guard,
                )
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v
            self.updates += 1
        metrics = {k: v / n for k, v in sums.items()} if n else {}
        if metrics:
            metrics["discriminator/updates"] = float(self.updates)
            self.history.append({"step": step, **metrics})
            if reward.log_metric is not None:
                for k, v in metrics.items():
                    reward.log_metric(k, v)
            if self.log is not None:
                self.log(step, metrics)
        return metrics

    def _pair_update(self, real_idx: torch.Tensor, fake_idx: torch.Tensor, device) -> dict[str, float]:
        contexts, responses = self.real
        reward = self.reward
        d = reward.discriminator
        d.train()
        b = real_idx.numel()
        n_mis = int(round(b * self.mismatch_fraction))
        neg_ctx, neg = [], []
        if n_mis:
            j = mismatched_indices(contexts, responses, real_idx[:n_mis], self.rng)
            neg_ctx.append(contexts[real_idx[:n_mis]])
            neg.append(responses[j])
        take = fake_idx[: max(b - n_mis, 0)]
        neg_ctx.append(reward.contexts[take])
        neg.append(reward.fake[take])
        neg_ctx_t, neg_t = torch.cat(neg_ctx).to(device), torch.cat(neg).to(device)
        logits_real = d(contexts[real_idx].to(device), responses[real_idx].to(device))
        logits_fake = d(neg_ctx_t, neg_t)
        loss = discriminator_bce(logits_real, logits_fake)
        guarded_update(loss, self.optimizer, d.parameters(), self.guard, "discriminator",
                       what="pair discriminator loss / gradient; lower trl.d_lr")  # fmt: skip
        return {
            "discriminator/loss": loss.item(),
            "discriminator/acc_real": float((logits_real > 0).float().mean()),
            "discriminator/acc_fake": float((logits_fake < 0).float().mean()),
        }

    # ------------------------------------------------------------------ TrainerCallback hooks
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0:
            self.train(state.global_step)
        return control

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            save_checkpoint(self.state_dict(), folder / STATE_FILE)
        return control

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step > 0:  # TRL resumed from checkpoint-<global_step>: the discriminator follows
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}" / STATE_FILE
            if not path.is_file():
                raise CheckpointError(
                    f"{path} is missing: the discriminator's state of the checkpoint TRL resumes from"
                )
            self.load_state_dict(load_checkpoint(path))
        return control

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {
            "discriminator": self.reward.discriminator.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": self.rng.get_state(),
            "nan_guard": self.guard.state_dict(),
            "buffer": self.reward.state_dict(),
            "updates": self.updates,
            "history": [dict(h) for h in self.history],
        }

    def load_state_dict(self, state: dict) -> None:
        self.reward.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.set_state(state["rng"])
        self.guard.load_state_dict(state["nan_guard"])
        self.reward.load_state_dict(state["buffer"])
        self.updates = int(state["updates"])
        self.history = [dict(h) for h in state["history"]]


class _ReportLogs(TrainerCallback):
    """Forwards TRL's log records to a seqgan reporter (the discriminator's own metrics are reported exactly at
    their step by :class:`DiscriminatorCallback`, so TRL's one-step-late copies are left out), and asks for a
    checkpoint after the last step, so that a later ``--resume`` can go further."""

    def __init__(self, reporter) -> None:
        self.reporter = reporter

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_save = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            kept = {k: v for k, v in logs.items() if not k.startswith("discriminator/")}
            self.reporter.log(state.global_step, kept)
        return control


# ---------------------------------------------------------------------------------------------------------
# the run recipes/trl_gan.py drives


def train_trl_gan(cfg, resume: bool = False, overwrite: bool = False) -> dict:
    """GRPO / RLOO with an online discriminator, as the ``trl`` section describes; returns the evaluation
    before and after (``trl_eval.json``).

    Writes in ``out_dir``: ``trl_config.yaml``, ``trl/`` (TRL's ``checkpoint-N`` folders with the
    discriminator's state), ``trl_metrics.jsonl`` (TRL's per-step logs and the discriminator's metrics; other
    ``report_to`` sinks too), ``trl_eval.json``, ``trl_curves.png`` and ``policy/`` (the final policy and its
    tokenizer as a Hugging Face folder: ``AutoModelForCausalLM.from_pretrained`` reads it).

    Raises:
        RunDirError, ConfigError, DataError, CheckpointError: bad input, before anything is written.
    """
    try:
        import trl
    except ImportError:
        from seqgan.config import ConfigError

        raise ConfigError('recipes/trl_gan.py needs the trl package: pip install -e ".[trl]"') from None
    from datasets import Dataset

    from seqgan.config import ConfigError, inactive_settings, replace, save_config, to_dict
    from seqgan.data.tokenizers import to_hf_tokenizer
    from seqgan.models import build_discriminator, build_generator
    from seqgan.plotting import plot_curves
    from seqgan.reporting import check_report_to, make_reporter
    from seqgan.runs import evaluation, load_run, prepare_data
    from seqgan.runtime import resolve_device
    from seqgan.stages.rundir import check_run_dir, claim_run_dir
    from seqgan.utils import seed_everything

    t = cfg.trl
    out = Path(cfg.out_dir)
    check_run_dir(out, "trl", resume, overwrite)
    check_report_to(cfg.report_to)
    if cfg.generator.kind != "transformer":
        raise ConfigError(f"recipes/trl_gan.py trains a Hugging Face causal LM: generator.kind=transformer, "
                          f"got {cfg.generator.kind!r}")  # fmt: skip
    if t.batch_size % t.num_generations:
        raise ConfigError(
            f"trl.batch_size={t.batch_size} must be a multiple of trl.num_generations={t.num_generations}"
        )
    for key in inactive_settings(cfg, stage="trl"):
        print(f"note: {key} has no effect in a TRL run")
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    pairs = cfg.task == "pairs"

    # ---- policy, discriminator, data
    if t.policy_checkpoint:
        from seqgan.stages.adversarial import fit_to_checkpoint

        run = load_run(t.policy_checkpoint, device)
        if run.generator.spec().get("kind") != "transformer":
            raise CheckpointError(
                f"{t.policy_checkpoint} holds a {run.generator.spec().get('kind')} generator; trl.policy_checkpoint "
                "needs a transformer (generator.kind=transformer)"
            )
        if run.cfg.task != cfg.task:
            raise CheckpointError(
                f"{t.policy_checkpoint} is a model of the {run.cfg.task} task, this run trains {cfg.task}"
            )
        cfg = fit_to_checkpoint(cfg, run.payload["config"], t.policy_checkpoint)
        tok, generator = run.tokenizer, run.generator
        data = prepare_data(cfg, tok)
        discriminator = run.discriminator
        if discriminator is None or discriminator.spec().get("kind", "cnn") != "cnn" or pairs:
            discriminator = build_discriminator(cfg, tok).to(device)
    else:
        data = prepare_data(cfg)
        tok = data.tokenizer
        # positions for the prompt (BOS, or the context and a separator), max_len tokens and an EOS
        span = cfg.data.max_len + 1 + (cfg.conditional.context_max_len if pairs else 0)
        generator = build_generator(replace(cfg, data=replace(cfg.data, max_len=span)), tok).to(device)
        discriminator = build_discriminator(cfg, tok).to(device)
    policy = generator.model
    hf_tok = to_hf_tokenizer(tok)
    eos = hf_tok.eos_token
    train = data.splits["train"]
    max_len = cfg.data.max_len
    num_eval = t.eval_num_samples

    if pairs:
        prompts = prompt_texts(tok, train.contexts)
        completions = [" ".join(tok.decode_tokens(r)) for r in train.responses.tolist()]
        context_rows = dict(zip(prompts, train.contexts.tolist(), strict=True))  # prompt -> its context ids

        def contexts_of(batch_prompts: list) -> torch.Tensor:
            rows = []
            for p in batch_prompts:
                if p not in context_rows:  # a prompt that is not a training context's: encode its text
                    ids = tok.encode(p.removesuffix(f" {eos}"))
                    context_rows[p] = pad_row(fit_length(ids, cfg.conditional.context_max_len, "truncate",
                                                         keep="tail"), cfg.conditional.context_max_len, tok)  # fmt: skip
                rows.append(context_rows[p])
            return torch.tensor(rows, dtype=torch.long)

        real: Any = (train.contexts, train.responses)
    else:
        prompts = [hf_tok.bos_token] * max(len(train), t.batch_size)
        completions = [" ".join(tok.decode_tokens(r)) for r in train.tolist()]
        completions = (completions * (len(prompts) // max(len(completions), 1) + 1))[: len(prompts)]
        contexts_of = None  # type: ignore[assignment]
        real = train
    eval_cfg = replace(cfg, adversarial=replace(cfg.adversarial, eval_num_samples=num_eval),
                       conditional=replace(cfg.conditional, eval_num_pairs=num_eval))  # fmt: skip

    def evaluate(seed: int) -> dict[str, float]:
        if pairs:
            return _pair_metrics(policy, hf_tok, tok, data, eval_cfg, seed)
        return evaluation(eval_cfg, data)(generator, seed)

    claim_run_dir(out, "trl", resume, overwrite)
    save_config(cfg, out / "trl_config.yaml")
    reporter = make_reporter(out, cfg.report_to, name="trl_metrics.jsonl", stage="trl", append=resume,
                             config=to_dict(cfg))  # fmt: skip
    report = {"before": {}, "after": {}}
    start = time.time()
    eval_path = out / "trl_eval.json"
    if resume and eval_path.is_file():
        report = json.loads(eval_path.read_text())
    if not resume:
        report["before"] = evaluate(cfg.seed + 100)
        print("before: " + _fmt(report["before"]))
        eval_path.write_text(json.dumps(report, indent=2) + "\n")

    # ---- supervised fine-tuning of a fresh policy (TRL's SFTTrainer), prompt -> completion
    if t.sft_steps and not resume:
        sft_args = trl.SFTConfig(
            output_dir=str(out / "trl" / "sft"), max_steps=t.sft_steps, per_device_train_batch_size=t.sft_batch_size,
            learning_rate=t.sft_lr, completion_only_loss=True, save_strategy="no", report_to="none",
            logging_steps=max(1, t.sft_steps // 20), seed=cfg.seed, use_cpu=device.type == "cpu",
            bf16=cfg.precision == "bf16", max_length=None, disable_tqdm=None,
        )  # fmt: skip
        positions = _positions(policy)
        keep = [  # (prompt, completion, EOS) must fit the policy's positions
            i for i, (p, c) in enumerate(zip(prompts, completions, strict=False))
            if len(hf_tok(p + " " + c, add_special_tokens=False)["input_ids"]) + 1 <= positions
        ]  # fmt: skip
        sft_data = Dataset.from_dict(
            {"prompt": [prompts[i] for i in keep], "completion": [completions[i] for i in keep]}
        )
        sft = trl.SFTTrainer(model=policy, args=sft_args, train_dataset=sft_data, processing_class=hf_tok)
        sft.train()
        sft_log = make_reporter(out, ["jsonl"], name="trl_sft_metrics.jsonl", stage="trl_sft")
        for record in sft.state.log_history:
            if "loss" in record:
                sft_log.log(record["step"], {"sft/loss": record["loss"]})
        sft_log.close()
        report["after_sft"] = evaluate(cfg.seed + 100)
        print("after supervised fine-tuning: " + _fmt(report["after_sft"]))

    # ---- GRPO / RLOO with the online discriminator
    reward = DiscriminatorReward(discriminator, max_len, tok.pad_id, t.reward, contexts_of, t.d_buffer)
    callback = DiscriminatorCallback(
        reward, real, t.d_every, t.d_steps, t.d_batch_size, t.d_lr, cfg.seed, cfg.conditional.mismatch_fraction,
        cfg.nan_policy, log=reporter.log,
    )  # fmt: skip
    if t.d_warmup_steps and not resume:
        _warm_up(callback, policy, hf_tok, prompts, max_len, t, cfg.seed)
    common = dict(
        output_dir=str(out / "trl"), max_steps=t.steps, per_device_train_batch_size=t.batch_size,
        num_generations=t.num_generations, max_completion_length=max_len, learning_rate=t.learning_rate,
        beta=t.beta, temperature=t.temperature, lr_scheduler_type=t.lr_scheduler, logging_steps=1,
        save_steps=t.save_steps, report_to="none",
        seed=cfg.seed, use_cpu=device.type == "cpu", bf16=cfg.precision == "bf16", disable_tqdm=None,
    )  # fmt: skip
    config_cls, trainer_cls = (
        (trl.GRPOConfig, trl.GRPOTrainer) if t.trainer == "grpo" else (trl.RLOOConfig, trl.RLOOTrainer)
    )
    trainer = trainer_cls(
        model=policy, reward_funcs=[reward], args=config_cls(**common), processing_class=hf_tok,
        train_dataset=Dataset.from_dict({"prompt": prompts}), callbacks=[callback, _ReportLogs(reporter)],
    )  # fmt: skip
    trainer.train(resume_from_checkpoint=True if resume else None)

    # ---- evaluation, curves, the final policy
    report["after"] = evaluate(cfg.seed + 100)
    report["discriminator_history"] = callback.history
    report["wall_s"] = report.get("wall_s", 0.0) + time.time() - start
    eval_path.write_text(json.dumps(report, indent=2) + "\n")
    print("after: " + _fmt(report["after"]))
    reporter.close()
    plot_curves(
        reporter.path,
        ["reward", "rewards/discriminator/mean", "discriminator/acc_fake", "discriminator/acc_real", "kl"],
        out / "trl_curves.png", x="step", title=f"{t.trainer.upper()} with an online discriminator",
    )  # fmt: skip
    policy.save_pretrained(out / "policy")
    hf_tok.save_pretrained(out / "policy")
    return report


def _positions(policy) -> int:
    """The longest sequence the policy's position embeddings take (unbounded: a large number)."""
    config = policy.config
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1 << 30


def _warm_up(
    callback: DiscriminatorCallback, policy, hf_tok, prompts: list, max_len: int, t, seed: int
) -> None:
    """Fills the reward's buffer with the starting policy's completions (of prompts drawn at random) and trains
    the discriminator on them (``trl.d_warmup_steps`` updates) before the first policy step."""
    gen = torch.Generator().manual_seed(seed)
    chosen = [prompts[i] for i in torch.randint(0, len(prompts), (t.d_buffer,), generator=gen).tolist()]
    rows = ids_to_rows(
        _generate(policy, hf_tok, chosen, max_len, t.temperature, seed), max_len, hf_tok.pad_token_id
    )
    reward = callback.reward
    reward.remember(rows, reward.contexts_of(chosen) if reward.pairs else None)
    metrics = callback.train(0, t.d_warmup_steps)
    print("discriminator warm-up: " + ", ".join(f"{k.split('/')[-1]} {v:.3f}" for k, v in metrics.items()))


@torch.no_grad()
def _generate(policy, hf_tok, prompts: list, max_len: int, temperature: float, seed: int,
              batch_size: int = 64) -> list[list[int]]:  # fmt: skip
    """One sampled completion per prompt, in order (cut after the first EOS, which is kept)."""
    was_training = policy.training
    policy.eval()
    side = hf_tok.padding_side
    hf_tok.padding_side = "left"
    out: list[list[int]] = []
    try:
        for i in range(0, len(prompts), batch_size):
            batch = hf_tok(
                prompts[i : i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False
            )
            batch = {k: v.to(policy.device) for k, v in batch.items()}
            with torch.random.fork_rng(devices=[policy.device] if policy.device.type == "cuda" else []):
                torch.manual_seed(seed + i)
                outputs = policy.generate(
                    **batch, do_sample=True, temperature=temperature, top_k=0, max_new_tokens=max_len,
                    pad_token_id=hf_tok.pad_token_id, eos_token_id=hf_tok.eos_token_id,
                )  # fmt: skip
            for seq in outputs[:, batch["input_ids"].shape[1] :].tolist():
                if hf_tok.eos_token_id in seq:
                    seq = seq[: seq.index(hf_tok.eos_token_id) + 1]
                out.append(seq)
    finally:
        hf_tok.padding_side = side
        policy.train(was_training)
    return out


@torch.no_grad()
def _pair_metrics(policy, hf_tok, tok, data, cfg, seed: int) -> dict[str, float]:
    """The conditional task's response metrics for a causal LM answering each test context as its prompt:
    BLEU against the reference, distinct-n, generic share, length, and NLL_test (nats per response token,
    EOS included, given the prompt)."""
    from seqgan.metrics.responses import response_metrics

    test = data.splits.get("test")
    if test is None:
        return {}
    n = min(cfg.conditional.eval_num_pairs, len(test))
    prompts = prompt_texts(tok, test.contexts[:n])
    rows = _generate(policy, hf_tok, prompts, cfg.data.max_len, cfg.sample.temperature, seed)
    hyps = [tok.decode_tokens(r) for r in rows]
    refs = [tok.decode_tokens(r) for r in test.responses[:n].tolist()]
    metrics = response_metrics(hyps, refs)
    metrics["nll_test"] = _prompted_nll(policy, hf_tok, prompts, test.responses[:n], tok.pad_id)
    return metrics


def prompt_texts(tokenizer, contexts: torch.Tensor) -> list[str]:
    """The prompt texts a policy answers ``(N, Tc)`` encoded contexts with (TRL tokenizes prompts itself).

    A Hugging Face tokenizer decodes each context itself (so byte-level BPE pieces join back into words) and,
    when it has a chat template, the text is one user turn through it with the assistant's header
    (``apply_chat_template(..., add_generation_prompt=True)``); without one, the text and the EOS token. A
    word-level tokenizer (whose Hugging Face equivalent splits on whitespace) gives its words joined by spaces,
    then EOS.
    """
    from seqgan.data.tokenizers import HFTokenizer, to_hf_tokenizer

    rows = contexts.tolist()
    if not isinstance(tokenizer, HFTokenizer):
        eos = to_hf_tokenizer(tokenizer).eos_token
        return [" ".join(tokenizer.decode_tokens(c)) + f" {eos}" for c in rows]
    hf = tokenizer.hf
    texts = [tokenizer.decode(c) for c in rows]
    if not getattr(hf, "chat_template", None):
        return [t + hf.eos_token for t in texts]
    return [
        hf.apply_chat_template([{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True)
        for t in texts
    ]


@torch.no_grad()
def _prompted_nll(policy, hf_tok, prompts: list, responses: torch.Tensor, pad_id: int) -> float:
    """Mean NLL per response token (EOS included) of ``responses`` ``(N, T)`` given each prompt."""
    was_training = policy.training
    policy.eval()
    total, count = 0.0, 0
    try:
        for prompt, resp in zip(prompts, responses.tolist(), strict=True):
            p = hf_tok(prompt, add_special_tokens=False)["input_ids"]
            r = [i for i in resp if i != pad_id]
            ids = torch.tensor([p + r], device=policy.device)
            logits = policy(ids).logits[0, len(p) - 1 : -1].float()
            nll = nn.functional.cross_entropy(logits, ids[0, len(p) :], reduction="sum")
            total, count = total + float(nll), count + len(r)
    finally:
        policy.train(was_training)
    return total / max(count, 1)


def _fmt(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, int | float))
