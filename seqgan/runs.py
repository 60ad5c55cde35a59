"""A run's data and models for either task, checkpoint assembly, and one :func:`load_run`.

Two tasks share every stage (pretraining, adversarial training, evaluation) and differ only in what a
:class:`Task` provides:

* ``sentences`` (:class:`SentenceTask`): unconditional text, one sentence per line (or sequences sampled from
  the SeqGAN synthetic oracle); examples are ``(N, T)`` id tensors; the discriminator reads sentences.
* ``pairs`` (:class:`PairTask`, selected by ``conditional.train``): (context, response) pairs; examples are
  :class:`Pairs` of ``(N, Tc)`` contexts and ``(N, T)`` responses; the generator is an encoder-decoder, or a
  causal LM that reads each context as a prompt (its chat template; :class:`Pairs` then also hold the
  ``(N, P)`` prompts), and the discriminator judges the pair (Li et al. 2017, arXiv 1701.06547).
* ``category`` (:class:`CategoryTask`, selected by ``category.train``): labelled sentences; examples are
  :class:`~seqgan.data.labelled.Labelled` ``(N,)`` class ids and ``(N, T)`` ids; the generator is
  class-conditional and the discriminator has ``k + 1`` outputs (the classes, then fake); SentiGAN and CatGAN.

:func:`task_of` picks the task of a config; :func:`prepare_data` loads and encodes its splits (the tokenizer is
trained on what the run keeps of the training split); :func:`new_models` builds fresh models;
:func:`make_checkpoint` assembles the self-describing checkpoint payload and :func:`load_run` rebuilds config,
tokenizer and models from one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from seqgan.chat import encode_prompts
from seqgan.checkpoint import CheckpointError, load_checkpoint, rng_state
from seqgan.config import Config, ConfigError, config_from_saved, to_dict
from seqgan.data.datasets import (
    DataError,
    EncodeReport,
    batches,
    encode_sentences,
    fit_length,
    load_text_splits,
)
from seqgan.data.labelled import Labelled, LabelledLines, balanced_batches, encode_labelled, load_labelled
from seqgan.data.pairs import EncodedPairs, encode_pairs, load_pairs
from seqgan.data.tokenizers import IdTokenizer, Tokenizer, build_tokenizer, tokenizer_from_state
from seqgan.losses import sequence_nll
from seqgan.models import (
    BoundGenerator,
    ConditionalGenerator,
    bind_leak,
    build_discriminator,
    build_generator,
    discriminator_class,
    generator_class,
    generator_task,
)
from seqgan.sampling import sample
from seqgan.trainers.base import NonFiniteGuard
from seqgan.trainers.category import multiclass_discriminator_round, sample_class
from seqgan.trainers.conditional import pair_discriminator_round, sample_responses
from seqgan.trainers.steps import PRETRAIN_OBJECTIVES, mle_step

__all__ = [
    "CategoryTask",
    "Labelled",
    "PairTask",
    "Pairs",
    "Run",
    "RunData",
    "SentenceTask",
    "Task",
    "load_oracle",
    "load_run",
    "make_checkpoint",
    "new_models",
    "prepare_data",
    "reads_prompts",
    "reply",
    "sample_by_class",
    "task_of",
]


# ---------------------------------------------------------------------------------------------- data
@dataclass
class Pairs:
    """Encoded (context, response) examples: ``contexts`` ``(N, Tc)`` and ``responses`` ``(N, T)``; for a
    causal-LM generator also ``prompts`` ``(N, P)``, the contexts as the prompts it reads
    (:func:`seqgan.chat.encode_prompts`)."""

    contexts: torch.Tensor
    responses: torch.Tensor
    prompts: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.contexts.shape[0]

    def __getitem__(self, index) -> Pairs:
        prompts = None if self.prompts is None else self.prompts[index]
        return Pairs(self.contexts[index], self.responses[index], prompts)

    def to(self, device) -> Pairs:
        prompts = None if self.prompts is None else self.prompts.to(device)
        return Pairs(self.contexts.to(device), self.responses.to(device), prompts)

    @property
    def conditions(self) -> torch.Tensor:
        """What the generator reads: the prompts of a causal LM, else the contexts (the discriminator always
        reads the contexts)."""
        return self.contexts if self.prompts is None else self.prompts


@dataclass
class RunData:
    """A run's tokenizer and encoded splits.

    Attributes:
        tokenizer: trained on the training split (or given).
        splits: ``"train"``, ``"test"`` (and ``"valid"``) examples: ``(N, T)`` tensors (sentences) or
            :class:`Pairs`.
        reports: one summary line per split (kept, truncated, dropped, unknown tokens).
        raw: sentences: the raw lines per split (BLEU references, the real-data row); pairs: the kept raw
            ``(contexts, responses)`` of each split as :class:`~seqgan.data.pairs.Pairs`; labelled sentences:
            the kept raw lines of each split as :class:`~seqgan.data.labelled.LabelledLines`.
        classes: the category task's class names in id order (None for the other tasks).
    """

    tokenizer: Tokenizer
    splits: dict[str, torch.Tensor | Pairs | Labelled]
    reports: dict[str, str]
    raw: dict = field(default_factory=dict)
    classes: list[str] | None = None


def load_oracle(data_cfg):
    """The synthetic oracle a config names: ``(oracle, "file" | "random")`` (``data.oracle_path`` or a random
    oracle from ``data.oracle_seed``), with sequences of ``data.max_len``."""
    from seqgan.metrics.oracle import OracleLSTM

    return OracleLSTM.load_or_random(data_cfg.oracle_path, data_cfg.oracle_seed, seq_len=data_cfg.max_len)


# ---------------------------------------------------------------------------------------------- tasks
class Task:
    """What differs between the tasks; the stages call only this (see the module docstring)."""

    name: str
    eval_keys: list[str]
    """The metrics of the evaluation table, in order."""

    def prepare(self, cfg: Config, tokenizer: Tokenizer | None = None) -> RunData:
        raise NotImplementedError

    def mle_step(self, generator, optimizer, batch, grad_clip: float, guard: NonFiniteGuard) -> float:
        """One teacher-forced MLE update on a batch of training examples; NaN when skipped."""
        raise NotImplementedError

    def heldout_nll(self, generator, examples, batch_size: int = 256) -> float:
        """Mean per-token NLL of held-out examples (eval mode, no gradient)."""
        raise NotImplementedError

    def batches(self, examples, batch_size: int, rng: torch.Generator, cfg: Config):
        """One epoch of MLE index batches over the training examples (a seeded shuffle)."""
        return batches(len(examples), batch_size, True, rng)

    def evaluator(self, data: RunData, cfg: Config):
        """What the scheduled evaluations reuse (built once per stage), or None."""
        return None

    def check_models(self, generator, data: RunData, source: str) -> None:
        """Refuses a pretrained generator that does not fit the data (the category task: its classes)."""
        return None

    def show(self, generator, data: RunData, cfg: Config, num: int, rng: torch.Generator) -> list[str]:
        """A few lines of samples to print during pretraining."""
        raise NotImplementedError

    def discriminator_round(
        self, discriminator, optimizer, generator, train, num: int, epochs: int, batch_size: int, cfg: Config,
        data_rng: torch.Generator, sample_rng: torch.Generator, guard: NonFiniteGuard,
    ) -> dict[str, float]:  # fmt: skip
        """One round of discriminator (pre)training on ``num`` training examples and as many negatives."""
        raise NotImplementedError

    def discriminator_heldout(self, discriminator, generator, data: RunData, cfg: Config, rng) -> dict:
        """Held-out discriminator accuracy after a pretraining round (may be empty)."""
        return {}

    def trainer_data(self, train) -> dict:
        """Keyword arguments the task's trainer needs besides the config and the models."""
        return {}

    def evaluate(self, generator, data: RunData, cfg: Config, seed: int, evaluator=None) -> dict[str, float]:
        """The scheduled evaluation of the adversarial stage: metrics without the ``eval/`` prefix."""
        raise NotImplementedError


class SentenceTask(Task):
    """Unconditional sentences (or the synthetic oracle's sequences)."""

    name = "sentences"
    eval_keys = [
        *(f"bleu{n}" for n in (2, 3, 4, 5)),
        *(f"self_bleu{n}" for n in (2, 3, 4, 5)),
        "nll_test",
        "nll_oracle",
    ]

    def prepare(self, cfg: Config, tokenizer: Tokenizer | None = None) -> RunData:
        """Loads the splits, trains the tokenizer on what is kept of train (unless one is given), encodes every
        split. With ``data.synthetic: oracle`` the splits are sampled from the oracle (seeded by ``seed``)."""
        d = cfg.data
        if d.synthetic == "oracle":
            oracle, _ = load_oracle(d)
            rng = torch.Generator().manual_seed(cfg.seed)
            splits = {
                "train": oracle.sample(d.num_train, generator=rng),
                "test": oracle.sample(d.num_test, generator=rng),
            }
            tok = IdTokenizer(oracle.vocab_size, oracle.start_token)
            reports = {
                k: EncodeReport(len(v), len(v), tokens=v.numel()).summary(k) for k, v in splits.items()
            }
            raw = {k: [tok.decode(r) for r in v.tolist()] for k, v in splits.items()}
            return RunData(tok, splits, reports, raw)
        raw = load_text_splits(d, cfg.seed)
        if tokenizer is None:

            def kept(splitter: Tokenizer) -> list[list[str]]:
                cut = (fit_length(splitter.tokens(line), d.max_len, d.overlong) for line in raw["train"])
                return [t for t in cut if t]

            tokenizer = build_tokenizer(cfg.tokenizer, raw["train"], d.lowercase, kept)
        splits, reports = {}, {}
        for name, lines in raw.items():
            try:
                splits[name], rep = encode_sentences(lines, tokenizer, d.max_len, d.overlong)
            except DataError as e:  # say which split and file
                source = d.hf_dataset or getattr(d, name, None)
                raise DataError(f"the {name} split" + (f" ({source})" if source else "") + f": {e}") from None
            reports[name] = rep.summary(name)
        return RunData(tokenizer, splits, reports, raw)

    def mle_step(self, generator, optimizer, batch, grad_clip, guard) -> float:
        return mle_step(generator, optimizer, batch, grad_clip, guard)

    def heldout_nll(self, generator, examples, batch_size: int = 256) -> float:
        from seqgan.metrics.nll import nll_test

        return nll_test(generator, examples, batch_size)

    def show(self, generator, data, cfg, num, rng) -> list[str]:
        sc = cfg.sample
        out = sample(generator, num, cfg.data.max_len, sc.temperature, sc.top_k, sc.top_p, rng=rng)
        return [data.tokenizer.decode(row) for row in out.tokens.tolist()]

    def discriminator_round(
        self,
        discriminator,
        optimizer,
        generator,
        train,
        num,
        epochs,
        batch_size,
        cfg,
        data_rng,
        sample_rng,
        guard,
    ) -> dict[str, float]:
        """The method's discriminator objective (:data:`~seqgan.trainers.steps.PRETRAIN_OBJECTIVES`, named by
        ``Method.d_pretrain``) on ``num`` real sentences and, when it needs them, ``num`` fresh samples."""
        objective = PRETRAIN_OBJECTIVES[cfg.method.d_pretrain]
        device = generator.device
        fake = None
        if objective.needs_samples:
            fake = sample(generator, num, cfg.data.max_len, rng=sample_rng, batch_size=1024).tokens
        real = train[torch.randperm(len(train), generator=data_rng)[:num]].to(device)
        return objective.train(
            discriminator, optimizer, real, fake, epochs, batch_size, data_rng, guard,
            by_length=cfg.discriminator.batch_by_length, **objective.settings(cfg),
        )  # fmt: skip

    def discriminator_heldout(self, discriminator, generator, data, cfg, rng) -> dict:
        if "test" not in data.splits:
            return {}
        test = data.splits["test"][: cfg.pretrain.d_num_negatives].to(generator.device)
        fresh = sample(generator, len(test), cfg.data.max_len, rng=rng, batch_size=1024).tokens
        objective = PRETRAIN_OBJECTIVES[cfg.method.d_pretrain]
        return objective.heldout(discriminator, test, fresh, **objective.settings(cfg))

    def evaluate(self, generator, data, cfg, seed, evaluator=None) -> dict[str, float]:
        """BLEU-2..5, Self-BLEU-2..5, NLL_test (NLL_oracle for oracle runs) of ``adversarial.eval_num_samples``
        samples; ``evaluator`` is the run's :class:`~seqgan.metrics.evaluator.Evaluator` (built when None)."""
        evaluator = evaluator or self.evaluator(data, cfg)
        metrics, tokens = evaluator.evaluate(
            generator, cfg.adversarial.eval_num_samples, cfg.data.max_len, seed=seed
        )
        if cfg.data.synthetic == "oracle":
            metrics["nll_oracle"] = load_oracle(cfg.data)[0].nll(tokens.cpu())
        return metrics

    @staticmethod
    def evaluator(data: RunData, cfg: Config, nll_sentences: int | None = None):
        """The run's :class:`~seqgan.metrics.evaluator.Evaluator` (BLEU against the test split; NLL_test over its
        first ``nll_sentences`` sentences, default ``adversarial.eval_nll_sentences``, 0 = all)."""
        from seqgan.metrics.evaluator import Evaluator

        if "test" not in data.splits:
            raise DataError("evaluation needs a test split (data.test)")
        n = cfg.adversarial.eval_nll_sentences if nll_sentences is None else nll_sentences
        test = data.splits["test"]
        return Evaluator(data.tokenizer, data.raw["test"], test[:n] if n else test, cfg.data.lowercase)


class PairTask(Task):
    """(context, response) pairs: the conditional task."""

    name = "pairs"
    eval_keys = ["bleu1", "bleu2", "bleu4", "distinct1", "distinct2", "generic_share", "avg_len", "nll_test"]

    def prepare(self, cfg: Config, tokenizer: Tokenizer | None = None) -> RunData:
        """Loads ``conditional.train`` / ``conditional.test``, trains the tokenizer on what is kept of both
        sides of the training pairs (unless one is given) and encodes them."""
        c, d = cfg.conditional, cfg.data
        if not c.train:
            raise DataError("conditional.train is not set: no (context, response) pairs to load")
        raw = {"train": load_pairs(c.train).head(c.max_train_pairs)}
        if c.test:
            raw["test"] = load_pairs(c.test).head(c.max_test_pairs)
        if tokenizer is None:
            train = raw["train"]

            def kept(splitter: Tokenizer) -> list[list[str]]:
                out = []
                for context, response in zip(train.contexts, train.responses, strict=True):
                    ctx, resp = splitter.tokens(context), splitter.tokens(response)
                    resp = fit_length(resp, d.max_len, d.overlong) if ctx and resp else None
                    if resp:
                        out += [fit_length(ctx, c.context_max_len, "truncate", keep="tail"), resp]
                return out

            tokenizer = build_tokenizer(cfg.tokenizer, train.contexts + train.responses, d.lowercase, kept)
        splits, reports, kept_raw = {}, {}, {}
        for name, pairs in raw.items():
            enc: EncodedPairs = encode_pairs(pairs, tokenizer, d.max_len, c.context_max_len, d.overlong)
            prompts = encode_prompts(tokenizer, enc.contexts) if reads_prompts(cfg) else None
            splits[name], reports[name], kept_raw[name] = (
                Pairs(enc.contexts, enc.responses, prompts),
                enc.summary(name)
                + ("" if prompts is None else f"; prompts of up to {prompts.shape[1]} tokens"),
                enc.kept_raw,
            )
        return RunData(tokenizer, splits, reports, kept_raw)

    def mle_step(self, generator, optimizer, batch: Pairs, grad_clip, guard) -> float:
        return mle_step(
            BoundGenerator(generator, batch.conditions), optimizer, batch.responses, grad_clip, guard
        )

    def heldout_nll(self, generator, examples: Pairs, batch_size: int = 256) -> float:
        return pair_nll(generator, examples.conditions, examples.responses, batch_size)

    def show(self, generator, data, cfg, num, rng) -> list[str]:
        pairs = data.raw.get("test") or data.raw["train"]
        sc = cfg.sample
        got = reply(generator, data.tokenizer, pairs.contexts[:num], cfg.data.max_len, cfg.conditional.context_max_len,
                    sc.temperature, sc.top_k, sc.top_p, rng)  # fmt: skip
        return [f"{c!r} -> {r!r}" for c, r in zip(pairs.contexts[:num], got, strict=False)]

    def discriminator_round(
        self, discriminator, optimizer, generator, train: Pairs, num, epochs, batch_size, cfg, data_rng, sample_rng,
        guard,
    ) -> dict[str, float]:  # fmt: skip
        return pair_discriminator_round(
            discriminator, optimizer, generator, train.contexts, train.responses, num, epochs, batch_size,
            cfg.conditional.mismatch_fraction, cfg.data.max_len, data_rng, sample_rng, guard=guard,
            prompts=train.prompts,
        )  # fmt: skip

    def trainer_data(self, train: Pairs) -> dict:
        return {"contexts": train.contexts, "responses": train.responses, "prompts": train.prompts}

    def evaluate(self, generator, data, cfg, seed, evaluator=None) -> dict[str, float]:
        """Response metrics (BLEU against each reference, distinct-n, generic share, length, NLL_test; no
        adversarial-success evaluator) on the first ``conditional.eval_num_pairs`` test contexts."""
        from seqgan.metrics.responses import response_metrics

        test = data.splits.get("test")
        if test is None:
            return {}
        n = min(cfg.conditional.eval_num_pairs, len(test))
        rng = torch.Generator(device=generator.device).manual_seed(seed)
        sc = cfg.sample
        gen = sample_responses(generator, test.conditions[:n].to(generator.device), cfg.data.max_len,
                               sc.temperature, sc.top_k, sc.top_p, rng)  # fmt: skip
        tok = data.tokenizer
        hyps = [tok.decode_tokens(r) for r in gen.tokens.tolist()]
        refs = [tok.decode_tokens(r) for r in test.responses[:n].tolist()]
        row = response_metrics(hyps, refs)
        row["nll_test"] = pair_nll(generator, test.conditions, test.responses)
        return row


class CategoryTask(Task):
    """Labelled sentences: class-conditional generation (SentiGAN, CatGAN, the conditional MLE baseline)."""

    name = "category"
    eval_keys = [
        *(f"bleu{n}" for n in (2, 3, 4, 5)),
        *(f"self_bleu{n}" for n in (2, 3, 4, 5)),
        "nll_test",
        "class_acc",
    ]

    def prepare(self, cfg: Config, tokenizer: Tokenizer | None = None) -> RunData:
        """Loads ``category.train`` / ``category.test`` (the classes: ``category.labels``, or the training
        file's labels sorted), trains the tokenizer on what is kept of the training sentences (unless one is
        given) and encodes both splits; each split's report gives its count per class."""
        c, d = cfg.category, cfg.data
        if not c.train:
            raise DataError("category.train is not set: no labelled sentences to load")
        train = load_labelled(c.train, c.labels or None).per_class(c.max_per_class)
        classes = list(c.labels) or train.classes()
        raw = {"train": train}
        if c.test:
            raw["test"] = load_labelled(c.test, classes).per_class(c.max_per_class)
        if tokenizer is None:

            def kept(splitter: Tokenizer) -> list[list[str]]:
                cut = (fit_length(splitter.tokens(line), d.max_len, d.overlong) for line in train.sentences)
                return [t for t in cut if t]

            tokenizer = build_tokenizer(cfg.tokenizer, train.sentences, d.lowercase, kept)
        splits, reports, kept_raw = {}, {}, {}
        for name, lines in raw.items():
            enc = encode_labelled(lines, tokenizer, classes, d.max_len, d.overlong)
            splits[name] = Labelled(enc.labels, enc.tokens)
            reports[name] = enc.summary(name)
            kept_raw[name] = enc.kept_raw
        return RunData(tokenizer, splits, reports, kept_raw, classes)

    def mle_step(self, generator, optimizer, batch: Labelled, grad_clip, guard) -> float:
        return mle_step(
            BoundGenerator(generator, batch.labels[:, None]), optimizer, batch.tokens, grad_clip, guard
        )

    def heldout_nll(self, generator, examples: Labelled, batch_size: int = 256) -> float:
        return pair_nll(generator, examples.labels[:, None], examples.tokens, batch_size)

    def batches(self, examples: Labelled, batch_size: int, rng: torch.Generator, cfg: Config):
        if cfg.category.balanced_batches:
            return balanced_batches(examples.labels, batch_size, rng)
        return batches(len(examples), batch_size, True, rng)

    def show(self, generator, data, cfg, num, rng) -> list[str]:
        sc, out = cfg.sample, []
        for i, name in enumerate(data.classes):
            got = sample_class(generator, i, max(1, num // len(data.classes)), cfg.data.max_len, sc.temperature,
                               sc.top_k, sc.top_p, rng)  # fmt: skip
            out += [f"{name}: {data.tokenizer.decode(r)}" for r in got.tokens.tolist()]
        return out

    def discriminator_round(
        self, discriminator, optimizer, generator, train: Labelled, num, epochs, batch_size, cfg, data_rng,
        sample_rng, guard,
    ) -> dict[str, float]:  # fmt: skip
        return multiclass_discriminator_round(
            discriminator, optimizer, generator, train.tokens, train.labels, num, epochs, batch_size,
            cfg.data.max_len, data_rng, sample_rng, guard=guard,
        )  # fmt: skip

    def discriminator_heldout(self, discriminator, generator, data, cfg, rng) -> dict:
        """Eval-mode accuracy of the (k+1)-class discriminator: real test sentences put in their class,
        fresh samples of every class put in the fake class."""
        from seqgan.metrics.classes import accuracy

        if "test" not in data.splits:
            return {}
        test = data.splits["test"]
        per_class = max(1, min(cfg.pretrain.d_num_negatives, len(test)) // len(data.classes))
        fake = torch.cat([sample_class(generator, i, per_class, cfg.data.max_len, rng=rng).tokens
                          for i in range(len(data.classes))])  # fmt: skip
        return {
            "discriminator/eval_acc_real": accuracy(discriminator, test.tokens, test.labels),
            "discriminator/eval_acc_fake": accuracy(discriminator, fake, len(data.classes)),
        }

    def check_models(self, generator, data: RunData, source: str) -> None:
        classes = list(getattr(generator, "classes", []))
        if classes != list(data.classes):
            raise CheckpointError(
                f"{source} was trained on the classes {classes} but the data has {data.classes}; pretrain again "
                "with this data, or set category.labels to the checkpoint's classes"
            )

    def evaluator(self, data: RunData, cfg: Config):
        """The run's :class:`~seqgan.metrics.classes.CategoryEvaluator`, with its class-accuracy classifier
        trained on the training split (seeded by ``seed``; the process's random streams are left as they were)."""
        if "test" not in data.splits:
            raise DataError("evaluation needs a test split (category.test)")
        from seqgan.metrics.classes import CategoryEvaluator, train_classifier

        c, train, test = cfg.category, data.splits["train"], data.splits["test"]
        classifier = train_classifier(
            train.tokens, train.labels, len(data.classes), data.tokenizer.vocab_size, data.tokenizer.pad_id,
            c.classifier_embed_dim, c.classifier_filter_sizes, c.classifier_num_filters, c.classifier_dropout,
            c.classifier_epochs, c.classifier_lr, seed=cfg.seed,
        )  # fmt: skip
        raw: LabelledLines = data.raw["test"]
        return CategoryEvaluator(
            data.tokenizer, data.classes, {name: raw.of_class(name) for name in data.classes},
            {name: test.of_class(i) for i, name in enumerate(data.classes)}, classifier, cfg.data.lowercase,
        )  # fmt: skip

    def evaluate(self, generator, data, cfg, seed, evaluator=None) -> dict[str, float]:
        """The overall row (BLEU-2..5 against each class's test sentences, Self-BLEU-2..5 within each class,
        NLL_test, class accuracy) and each class's BLEU-4 and class accuracy (``bleu4_<class>``,
        ``class_acc_<class>``) of ``category.eval_num_samples`` samples per class."""
        evaluator = evaluator or self.evaluator(data, cfg)
        row, per_class, _ = evaluator.evaluate(
            generator, cfg.category.eval_num_samples, cfg.data.max_len, seed=seed
        )
        for name, m in per_class.items():
            row[f"bleu4_{name}"] = m["bleu4"]
            if "class_acc" in m:
                row[f"class_acc_{name}"] = m["class_acc"]
        return row


def sample_by_class(
    generator,
    tokenizer: Tokenizer,
    label: str,
    num: int,
    max_len: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    rng: torch.Generator | None = None,
) -> list[str]:
    """``num`` detokenized sentences of the class named ``label`` from a class-conditional generator.

    Raises:
        ValueError: ``label`` is not one of the generator's classes (the message names them).
    """
    index = generator.class_index(label)
    out = sample_class(generator, index, num, max_len, temperature, top_k, top_p, rng)
    return [tokenizer.decode(r) for r in out.tokens.tolist()]


TASKS: dict[str, Task] = {"sentences": SentenceTask(), "pairs": PairTask(), "category": CategoryTask()}


def reads_prompts(cfg: Config) -> bool:
    """Whether ``cfg``'s generator reads prompts: a causal LM (``generator.kind: transformer``) on the
    conditional task answers each context as a prompt (:class:`~seqgan.models.prompted.PromptedLM`)."""
    return cfg.task == "pairs" and cfg.generator.kind == "transformer"


def check_stage_models(cfg: Config) -> None:
    """Refuses, before any work, a model the pretraining and adversarial stages cannot train on the
    conditional task: an LSTM language model (no context to read), or a causal LM under ``torchrun`` (its
    prompt path does not go through the DDP wrapper)."""
    from seqgan import distributed

    if cfg.task != "pairs":
        return
    if cfg.generator.kind == "lstm":
        raise ConfigError(
            "generator.kind=lstm on (context, response) pairs: use seq2seq, seq2seq_transformer, or a causal LM "
            "(transformer, the context as its prompt)"
        )
    if reads_prompts(cfg) and distributed.launched_by_torchrun():
        raise ConfigError(
            "a causal LM (generator.kind=transformer) on (context, response) pairs trains in one process; "
            "run it without torchrun"
        )


def task_of(cfg: Config) -> Task:
    """The :class:`Task` of a config (``pairs`` when ``conditional.train`` is set, ``category`` when
    ``category.train`` is)."""
    return TASKS[cfg.task]


def prepare_data(cfg: Config, tokenizer: Tokenizer | None = None) -> RunData:
    """The splits of ``cfg``'s task, encoded with ``tokenizer`` (trained on the training split when None)."""
    return task_of(cfg).prepare(cfg, tokenizer)


def evaluation(cfg: Config, data: RunData, task: Task | None = None):
    """The task's standard evaluation as ``(generator, seed) -> metrics`` (what :func:`seqgan.loop.fit`
    schedules): sentences: BLEU-2..5 against the test split, Self-BLEU-2..5, NLL_test (and NLL_oracle on the
    synthetic task) on ``adversarial.eval_num_samples`` samples; pairs: the response metrics on
    ``conditional.eval_num_pairs`` test contexts; category: the overall and per-class metrics of
    ``category.eval_num_samples`` samples per class. The BLEU references (and the category task's classifier)
    are built once, here."""
    task = task or task_of(cfg)
    evaluator = task.evaluator(data, cfg)

    def evaluate(generator, seed: int) -> dict[str, float]:
        return task.evaluate(generator, data, cfg, seed, evaluator)

    return evaluate


@torch.no_grad()
def pair_nll(model, contexts: torch.Tensor, responses: torch.Tensor, batch_size: int = 256) -> float:
    """Mean per-token NLL (nats) of ``responses`` given ``contexts`` (EOS included, padding excluded), eval mode."""
    was = model.training
    model.eval()
    total, count = 0.0, 0
    bound = BoundGenerator(model, contexts[:1])
    device = bound.device
    try:
        for s in range(0, contexts.shape[0], batch_size):
            ctx = contexts[s : s + batch_size].to(device)
            nll, n = sequence_nll(bound.rebind(ctx), responses[s : s + batch_size].to(device))
            total, count = total + float(nll), count + n
    finally:
        model.train(was)
    return total / max(count, 1)


def reply(
    model,
    tokenizer: Tokenizer,
    contexts: list[str],
    max_len: int,
    context_max_len: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    rng: torch.Generator | None = None,
) -> list[str]:
    """Detokenized responses of a conditional generator (or a causal LM, through its prompts) to raw context
    strings (a context that encodes to nothing reads as just EOS)."""
    from seqgan.data.datasets import pad_row

    rows = [pad_row(fit_length(tokenizer.encode(t), context_max_len, keep="tail"), context_max_len, tokenizer)
            for t in contexts]  # fmt: skip
    ctx = torch.tensor(rows, dtype=torch.long)
    if not isinstance(model, ConditionalGenerator):  # a causal LM reads the contexts as prompts
        ctx = encode_prompts(tokenizer, ctx)
    ctx = ctx.to(model.device)
    out = sample_responses(model, ctx, max_len, temperature, top_k, top_p, rng)
    return [tokenizer.decode(r) for r in out.tokens.tolist()]


# ---------------------------------------------------------------------------------------------- models
def new_models(
    cfg: Config, tokenizer: Tokenizer, device: torch.device | str, classes: list[str] | None = None
) -> tuple[nn.Module, nn.Module]:
    """Fresh generator and discriminator for ``cfg`` (any task; ``classes``: the category task's), on ``device``; a
    generator that reads leaked features is bound to the discriminator's (:func:`~seqgan.models.bind_leak`)."""
    generator = build_generator(cfg, tokenizer, classes).to(device)
    discriminator = build_discriminator(cfg, tokenizer, classes).to(device)
    bind_leak(generator, discriminator)
    return generator, discriminator


def make_checkpoint(
    cfg: Config,
    tokenizer: Tokenizer,
    generator: nn.Module,
    discriminator: nn.Module | None,
    optimizers: dict[str, torch.optim.Optimizer],
    step: int,
    stage: str,
    extra: dict | None = None,
) -> dict:
    """The checkpoint payload: everything needed to resume or sample, without pickled objects."""
    payload = {
        "stage": stage,
        "step": step,
        "config": to_dict(cfg),
        "tokenizer": tokenizer.state_dict(),
        "generator": {"spec": generator.spec(), "state_dict": generator.state_dict()},
        "discriminator": None
        if discriminator is None
        else {"spec": discriminator.spec(), "state_dict": discriminator.state_dict()},
        "optimizers": {k: opt.state_dict() for k, opt in optimizers.items()},
        "rng": rng_state(),
    }
    if extra:
        payload.update(extra)
    return payload


@dataclass
class Run:
    """What a checkpoint rebuilds: config, tokenizer, models (on ``device``) and the raw payload."""

    cfg: Config
    tokenizer: Tokenizer
    generator: nn.Module
    discriminator: nn.Module | None
    payload: dict

    @property
    def task(self) -> Task:
        return task_of(self.cfg)

    @property
    def conditional(self) -> bool:
        return self.cfg.task == "pairs"

    @property
    def category(self) -> bool:
        """Whether the run is class-conditional (the category task); ``generator.classes`` names its classes."""
        return self.cfg.task == "category"


def _entry(ckpt: dict, key: str, path) -> dict:
    value = ckpt.get(key)
    if not isinstance(value, dict):
        raise CheckpointError(f"{path} has no {key} (the checkpoint was edited or is incomplete)")
    return value


def _build(kind_of, entry: dict, what: str, path) -> nn.Module:
    """A model rebuilt from a checkpoint entry ``{"spec", "state_dict"}``, with one-line errors."""
    from seqgan import checkpoint

    spec, state = entry.get("spec"), entry.get("state_dict")
    if not isinstance(spec, dict) or not isinstance(state, dict):
        raise CheckpointError(f"{path}: the {what} entry needs a spec and a state_dict")
    try:
        cls = kind_of(spec.get("kind", "cnn" if what == "discriminator" else "lstm"))
    except ValueError as e:
        raise CheckpointError(f"{path}: {what}: {e}") from None
    build_checked = getattr(checkpoint, "build_checked", None)
    if build_checked is not None:
        return build_checked(cls.from_spec, {k: v for k, v in spec.items()}, state, what, path)
    try:
        model = cls.from_spec(spec)
        model.load_state_dict(state)
    except (TypeError, KeyError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: {what} does not match its spec ({str(e).splitlines()[0]})") from None
    return model


def load_run(path: str | Path, device: torch.device | str = "cpu") -> Run:
    """Rebuilds config, tokenizer, generator and discriminator (either task) from a checkpoint file.

    Raises:
        CheckpointError: the file is missing, damaged, refused, edited (a missing entry, a spec that does not
            match its weights) or its generator does not fit its tokenizer; one line naming the problem.
    """
    ckpt = load_checkpoint(path)
    try:
        cfg = config_from_saved(_entry(ckpt, "config", path))
    except ConfigError as e:
        raise CheckpointError(f"{path}: its config is not valid here ({e})") from None
    try:
        tokenizer = tokenizer_from_state(_entry(ckpt, "tokenizer", path))
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: its tokenizer cannot be rebuilt ({e})") from None
    gen_entry = _entry(ckpt, "generator", path)
    spec = gen_entry.get("spec", {})
    if generator_task(spec) != cfg.task and not (spec.get("kind") == "transformer" and cfg.task == "pairs"):
        raise CheckpointError(f"{path}: its generator kind does not match its config's task")
    spec_vocab = gen_entry.get("spec", {}).get("vocab_size")
    if isinstance(spec_vocab, int) and (
        spec_vocab < tokenizer.vocab_size or (spec_vocab != tokenizer.vocab_size and tokenizer.kind != "hf")
    ):
        raise CheckpointError(
            f"{path}: its generator has {spec_vocab} token embeddings but its {tokenizer.kind} tokenizer has "
            f"{tokenizer.vocab_size} tokens: the ids would point at unrelated rows"
        )
    generator = _build(generator_class, gen_entry, "generator", path).to(device)
    discriminator = None
    if ckpt.get("discriminator") is not None:
        discriminator = _build(
            discriminator_class, _entry(ckpt, "discriminator", path), "discriminator", path
        )
        discriminator = discriminator.to(device)
    try:
        bind_leak(generator, discriminator)  # LeakGAN's generator decodes with its discriminator's features
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: {e}") from None
    return Run(cfg, tokenizer, generator, discriminator, ckpt)
