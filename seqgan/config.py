"""Experiment configuration: nested dataclasses are the one place for defaults and their documentation.

A config is built from the dataclass defaults, then a YAML file, then dotted ``key=value`` overrides from the
command line (``generator.hidden_dim=64``). Every key is checked: an unknown key or a value of the wrong type
raises :class:`ConfigError` naming the dotted key. ``describe()`` prints every field with its docstring.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A config key is unknown, or its value has the wrong type or an invalid value."""


@dataclass
class DataConfig:
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
    valid_fraction: float = 0.0
    """Fraction of training lines held out as the validation split when ``valid`` is not given."""
    max_len: int = 37
    """Maximum tokens per sequence, EOS included when it fits (a sentence of exactly max_len tokens is kept
    without EOS, as a generated sequence that reaches max_len is)."""
    overlong: Literal["truncate", "drop"] = "truncate"
    """What to do with sentences longer than max_len tokens; the count is reported either way."""
    lowercase: bool = True
    """Lowercase text before tokenization."""
    synthetic: Literal["oracle"] | None = None
    """"oracle": instead of text files, sample train/test sequences from the SeqGAN synthetic oracle LSTM
    (fixed length ``max_len``, no EOS, ids as tokens) and report NLL_oracle."""
    oracle_path: str | None = None
    """Oracle weights (.npz); default: the SeqGAN paper's oracle in ../shared/data/seqgan_oracle when present,
    else a random oracle built from ``oracle_seed``."""
    oracle_seed: int = 0
    """Seed of the random oracle (when no weights file is used)."""
    num_train: int = 10000
    """Synthetic data: training sequences sampled from the oracle (10,000 in the SeqGAN paper)."""
    num_test: int = 10000
    """Synthetic data: held-out sequences sampled from the oracle (for NLL_test)."""


@dataclass
class TokenizerConfig:
    kind: Literal["word", "sentencepiece", "hf"] = "word"
    """word: word-level vocabulary; sentencepiece: BPE/unigram trained locally on the training split;
    hf: a Hugging Face tokenizer loaded from a local directory (``hf_path``)."""
    word_split: Literal["nltk", "whitespace"] = "nltk"
    """How the word-level tokenizer splits: nltk.word_tokenize (offline, preserve_line) or str.split."""
    min_freq: int = 1
    """Word-level: minimum training-set frequency for a word to enter the vocabulary."""
    max_size: int | None = None
    """Word-level: at most this many words (specials excluded), most frequent first."""
    sp_model_type: Literal["bpe", "unigram"] = "bpe"
    """SentencePiece model type."""
    sp_vocab_size: int = 4000
    """SentencePiece vocabulary size (specials included)."""
    hf_path: str | None = None
    """Local directory of a Hugging Face tokenizer (``kind: hf``)."""


@dataclass
class GeneratorConfig:
    kind: Literal["lstm", "transformer", "seq2seq", "seq2seq_transformer"] = "lstm"
    """Generator architecture; seq2seq / seq2seq_transformer are the conditional (context -> response)
    encoder-decoders of ``seqgan.conditional`` (LSTM with attention / torch transformer layers)."""
    embed_dim: int = 32
    """LSTM: token embedding size."""
    hidden_dim: int = 32
    """LSTM: hidden state size."""
    num_layers: int = 1
    """LSTM: number of stacked layers."""
    dropout: float = 0.0
    """Dropout (LSTM between layers and on the output; transformer: residual/attention/embedding)."""
    n_layer: int = 2
    """Transformer: number of blocks."""
    n_head: int = 4
    """Transformer: attention heads."""
    n_embd: int = 128
    """Transformer: model width."""
    model_type: str = "gpt2"
    """Transformer: any ``transformers`` causal-LM model type built from config."""
    pretrained_path: str | None = None
    """Transformer: load weights with ``from_pretrained`` from this local directory instead."""


@dataclass
class DiscriminatorConfig:
    embed_dim: int = 64
    """Token embedding size."""
    filter_sizes: list[int] = field(default_factory=lambda: [2, 3, 4, 5])
    """Convolution widths (tokens)."""
    num_filters: list[int] = field(default_factory=lambda: [300, 300, 300, 300])
    """Filters per width (same length as filter_sizes)."""
    dropout: float = 0.25
    """Dropout before the output layer."""
    highway: bool = True
    """Use the highway layer over the pooled features (SeqGAN)."""
    batch_by_length: bool = True
    """Discriminator training (pretraining and SeqGAN rounds) draws batches of similar lengths: the random order
    is cut into pools of 50 batches, sorted by length inside each pool, and the batches are shuffled. The CNN
    then skips most padded windows (faster on short sentences); false draws plain random batches."""
    kind: Literal["cnn", "rnn"] = "cnn"
    """cnn: SeqGAN's CNN, one logit per sequence; rnn: ScratchGAN's LSTM scoring every prefix (needed by
    adversarial.method=scratchgan; uses embed_dim, hidden_dim, num_layers, dropout)."""
    hidden_dim: int = 128
    """rnn: LSTM hidden size."""
    num_layers: int = 1
    """rnn: stacked LSTM layers."""


@dataclass
class PretrainConfig:
    epochs: int = 30
    """MLE epochs over the training split."""
    batch_size: int = 64
    """MLE batch size."""
    lr: float = 1e-2
    """Adam learning rate of the generator."""
    grad_clip: float = 5.0
    """Gradient-norm clipping (0 disables)."""
    eval_batch_size: int = 256
    """Batch size for held-out NLL."""
    num_print_samples: int = 5
    """Samples printed after each epoch."""
    oracle_eval_samples: int = 5000
    """Synthetic-oracle runs: samples scored by the oracle (NLL_oracle) after each epoch."""
    d_rounds: int = 3
    """Discriminator pretraining: rounds of (generate fresh negatives, train d_epochs)."""
    d_epochs: int = 2
    """Discriminator epochs per round."""
    d_num_negatives: int = 5000
    """Generated sentences per round (the same number of real sentences is drawn)."""
    d_batch_size: int = 64
    """Discriminator batch size."""
    d_lr: float = 1e-4
    """Adam learning rate of the discriminator."""


@dataclass
class AdversarialConfig:
    method: Literal["seqgan", "scratchgan", "gumbel"] = "seqgan"
    """Adversarial training method: seqgan (policy gradient with Monte-Carlo rollout rewards); scratchgan (ScratchGAN: per-prefix rewards from a recurrent discriminator, trained from scratch; see the scratchgan section); gumbel (RelGAN-style Gumbel-softmax relaxation, generator trained through the discriminator by backpropagation; see the gumbel section)."""
    pretrain_checkpoint: str | None = None
    """The MLE checkpoint to start from (default: <out_dir>/pretrain.pt)."""
    epochs: int = 50
    """Adversarial epochs; each is g_steps generator updates then d_steps discriminator rounds."""
    g_steps: int = 1
    """Generator (policy-gradient) updates per epoch."""
    d_steps: int = 4
    """Discriminator rounds per epoch: sample d_num_negatives fresh sentences, train d_epochs on them."""
    d_epochs: int = 2
    """Discriminator epochs per round."""
    d_num_negatives: int = 10000
    """Generated sentences per discriminator round (as many real sentences are drawn)."""
    d_batch_size: int = 64
    """Discriminator batch size."""
    batch_size: int = 64
    """Sequences per generator update."""
    num_rollouts: int = 16
    """Monte-Carlo completions per prefix (R)."""
    rollout_update_rate: float = 0.8
    """The rollout policy lags the generator: rollout = rate * rollout + (1 - rate) * generator after each
    generator update (SeqGAN uses 0.8); 0 uses the current generator."""
    rollout_chunk_rows: int = 0
    """Cap on continuation rows decoded at once (0: no cap; lower it to bound memory)."""
    baseline: Literal["none", "mean", "ema"] = "none"
    """Reward baseline: none (SeqGAN), mean reward per step over the batch, or an exponential moving average."""
    ema_decay: float = 0.9
    """Decay of the EMA baseline."""
    entropy_coef: float = 0.0
    """Weight of the entropy bonus in the generator loss."""
    g_lr: float = 1e-3
    """Adam learning rate of the generator during adversarial training."""
    d_lr: float = 1e-4
    """Adam learning rate of the discriminator during adversarial training."""
    grad_clip: float = 5.0
    """Generator gradient-norm clipping (0 disables)."""
    eval_every: int = 5
    """Evaluate (BLEU, Self-BLEU, NLL_test, NLL_oracle) every this many epochs (and at the start and end)."""
    eval_num_samples: int = 2000
    """Samples per scheduled evaluation."""
    checkpoint_every: int = 5
    """Write <out_dir>/adversarial.pt every this many epochs (and at the end)."""


@dataclass
class ConditionalConfig:
    train: str | None = None
    """(context, response) pairs: a TSV file (context TAB response per line) or ChatterBot YAML (a .yml file or
    a folder of them). Setting it makes the run conditional (a chatbot); ``data.max_len`` bounds responses."""
    test: str | None = None
    """Held-out pairs in the same format (BLEU against each context's reference response, NLL_test)."""
    max_train_pairs: int = 0
    """Use only the first this many training pairs (0: all)."""
    max_test_pairs: int = 0
    """Use only the first this many test pairs (0: all)."""
    context_max_len: int = 24
    """Context tokens kept (the last ones, EOS appended when it fits)."""
    attention: bool = True
    """seq2seq (LSTM): Luong dot-product attention over the encoder states (False: the final state only)."""
    d_hidden: int = 64
    """Pair discriminator: hidden units of the MLP over [h_c, h_x, h_c * h_x]."""
    d_shared_encoder: bool = False
    """Pair discriminator: one CNN encodes both context and response (False: two CNNs)."""
    mismatch_fraction: float = 0.5
    """Share of the discriminator's negatives that are mismatched pairs (context, real response of another
    context); the rest are (context, generated response)."""
    teacher_forcing_every: int = 1
    """Teacher forcing (Li et al. 2017): one MLE update on human responses after every this many
    policy-gradient updates (0 disables)."""
    eval_num_pairs: int = 500
    """Test contexts answered by the adversarial recipe's scheduled evaluations."""
    evaluator_epochs: int = 3
    """Adversarial success: epochs of the separately trained evaluator discriminator."""
    evaluator_num_pairs: int = 4000
    """Adversarial success: training contexts (each with its human and a generated response) for the evaluator."""
    evaluator_lr: float = 1e-3
    """Adversarial success: Adam learning rate of the evaluator discriminator."""


@dataclass
class ScratchGANConfig:
    steps_per_epoch: int = 10
    """Iterations per adversarial epoch; each samples one batch, takes a discriminator step on it against as many
    real sentences, then a generator step on the same samples."""
    batch_size: int = 512
    """Generated (and real) sequences per iteration (ScratchGAN relies on large batches: 512)."""
    discount: float = 0.23
    """Discount gamma of the returns R_t = sum_{s>=t} gamma^(s-t) r_s (ScratchGAN: 0.23)."""
    reward: Literal["sigmoid", "logit", "log_sigmoid"] = "sigmoid"
    """Per-step reward from the prefix logit: sigmoid: 2 sigmoid(D) - 1 (ScratchGAN's code); logit: the raw
    logit; log_sigmoid: log D (MaskGAN)."""
    baseline: Literal["ema", "mean", "none"] = "ema"
    """Baseline subtracted from the returns: ema: per-step exponential moving average of the batch means of R_t
    (used, then updated); mean: the current batch's per-step mean; none."""
    ema_decay: float = 0.9
    """Decay of the EMA baseline: b_t <- decay * b_t + (1 - decay) * mean_t."""
    g_lr: float = 1e-4
    """Adam learning rate of the generator."""
    d_lr: float = 1e-3
    """Adam learning rate of the discriminator."""
    adam_beta1: float = 0.5
    """Adam beta1 of both optimizers (ScratchGAN: 0.5)."""
    g_l2: float = 0.0
    """L2 weight on the generator's trainable parameters (added to its loss as g_l2 * sum w^2)."""
    d_l2: float = 1e-6
    """L2 weight on the discriminator's trainable parameters (added to its loss as d_l2 * sum w^2)."""
    grad_clip: float = 5.0
    """Gradient-norm clipping of both models (0 disables)."""
    temperature: float = 1.0
    """Sampling temperature of the generated batches (log-probabilities are taken under it)."""
    mix_fraction: float = 0.0
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


@dataclass
class GumbelConfig:
    """``adversarial.method: gumbel`` (RelGAN, Nie et al. 2019): relaxed samples, trained by backpropagation."""

    relaxation: Literal["gumbel", "softmax"] = "gumbel"
    """What the discriminator reads for a generated token: gumbel: softmax(beta * (logits + Gumbel noise));
    softmax: the generator's distribution softmax(logits) itself (the weak variant: easy to tell from one-hot)."""
    straight_through: bool = False
    """Straight-through: the discriminator reads the one-hot sampled token, gradients use the relaxed vector."""
    temperature_schedule: Literal["constant", "linear", "exp", "sigmoid"] = "exp"
    """Annealing of the inverse temperature beta from 1 to max_inverse_temperature over anneal_steps generator
    steps (constant: max_inverse_temperature throughout)."""
    max_inverse_temperature: float = 100.0
    """beta_max, the inverse temperature reached at the end of annealing (RelGAN: 100 or 1000)."""
    anneal_steps: int = 0
    """Generator steps over which beta (and the instance noise) is annealed; 0: the whole run
    (adversarial.epochs x steps_per_epoch x g_steps)."""
    loss: Literal["standard", "rsgan", "lsgan", "hinge", "wasserstein", "wgan-gp"] = "rsgan"
    """GAN loss: standard (non-saturating), rsgan (relativistic standard, RelGAN's best), lsgan, hinge,
    wasserstein (weight clipping) or wgan-gp (gradient penalty on one-hot real / soft fake interpolations)."""
    label_smoothing: float = 0.0
    """One-sided label smoothing: the real target is 1 - label_smoothing (standard, rsgan, lsgan losses)."""
    instance_noise: float = 0.0
    """Initial standard deviation of Gaussian noise added to the discriminator's input embeddings (real and fake),
    annealed linearly to 0 over anneal_steps; 0 disables."""
    spectral_norm: bool = False
    """Spectral normalization (Miyato et al. 2018) of the discriminator's convolutions and linear layers, put on
    the pretrained discriminator when the trainer is built (its weights become the unnormalized originals)."""
    gp_weight: float = 10.0
    """wgan-gp: weight of the gradient penalty."""
    clip_value: float = 0.01
    """wasserstein: discriminator weights are clipped to [-clip_value, clip_value] after each step."""
    batch_size: int = 64
    """Sequences per generator and per discriminator step (as many real ones)."""
    steps_per_epoch: int = 20
    """Iterations per adversarial epoch; each is g_steps generator steps then d_steps discriminator steps."""
    g_steps: int = 1
    """Generator steps per iteration."""
    d_steps: int = 3
    """Discriminator steps per iteration (each on a fresh real batch and fresh relaxed samples)."""
    g_lr: float = 1e-4
    """Adam learning rate of the generator (RelGAN: 1e-4)."""
    d_lr: float = 1e-4
    """Adam learning rate of the discriminator (RelGAN: 1e-4)."""
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """Adam (beta1, beta2) of both optimizers (WGAN-GP often uses [0.5, 0.9])."""
    grad_clip: float = 5.0
    """Generator gradient-norm clipping (0 disables)."""

    def __post_init__(self) -> None:
        if self.max_inverse_temperature < 1.0:
            raise ConfigError(
                f"gumbel.max_inverse_temperature must be >= 1, got {self.max_inverse_temperature}"
            )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"gumbel.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.label_smoothing and self.loss not in ("standard", "rsgan", "lsgan"):
            raise ConfigError(
                f"gumbel.label_smoothing applies to the standard, rsgan and lsgan losses, not {self.loss}"
            )
        if len(self.adam_betas) != 2 or not all(0.0 <= b < 1.0 for b in self.adam_betas):
            raise ConfigError(f"gumbel.adam_betas must be two numbers in [0, 1), got {self.adam_betas}")
        for key in ("batch_size", "steps_per_epoch", "g_steps"):
            if getattr(self, key) < 1:
                raise ConfigError(f"gumbel.{key} must be >= 1, got {getattr(self, key)}")
        for key in ("anneal_steps", "d_steps", "instance_noise", "gp_weight", "clip_value", "grad_clip"):
            if getattr(self, key) < 0:
                raise ConfigError(f"gumbel.{key} must be >= 0, got {getattr(self, key)}")


@dataclass
class SampleConfig:
    temperature: float = 1.0
    """Softmax temperature."""
    top_k: int = 0
    """Keep only the k most likely tokens (0 disables)."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest set of tokens with probability >= top_p (1 disables)."""


@dataclass
class Config:
    seed: int = 0
    """Seed for Python, NumPy and torch; same seed, same result on CPU."""
    out_dir: str = "runs/default"
    """Run folder: resolved config, metrics.jsonl, checkpoints and plots."""
    device: str = "auto"
    """"auto" (CUDA when available), "cpu", "cuda" or "cuda:N"."""
    num_threads: int = 0
    """torch CPU threads (0 keeps torch's default)."""
    checkpoint_keep: int = 0
    """Also keep the last K checkpoints as numbered files (adversarial_0007.pt) beside the stable name (0: only
    pretrain.pt / adversarial.pt, overwritten in place)."""
    nan_policy: Literal["stop", "skip"] = "stop"
    """A NaN/inf loss or gradient: stop the run (the last checkpoint stays as it was) or skip the update."""
    nan_max_consecutive: int = 10
    """nan_policy=skip: stop after this many skipped updates in a row."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """bf16: run the training updates (MLE, generator and discriminator steps) under bfloat16 autocast; rollout
    rewards, evaluation and the weights stay fp32."""
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
    scratchgan: ScratchGANConfig = field(default_factory=ScratchGANConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    conditional: ConditionalConfig = field(default_factory=ConditionalConfig)
    gumbel: GumbelConfig = field(default_factory=GumbelConfig)

    def __post_init__(self) -> None:
        validate(self)


def validate(cfg: Config) -> None:
    """Value checks that types alone cannot express; raises ConfigError naming the key."""
    if cfg.data.max_len < 2:
        raise ConfigError(f"data.max_len must be at least 2, got {cfg.data.max_len}")
    if cfg.checkpoint_keep < 0 or cfg.nan_max_consecutive < 1:
        raise ConfigError(
            f"checkpoint_keep must be >= 0 and nan_max_consecutive >= 1, got {cfg.checkpoint_keep} and "
            f"{cfg.nan_max_consecutive}"
        )
    if not 0.0 <= cfg.data.valid_fraction < 1.0:
        raise ConfigError(f"data.valid_fraction must be in [0, 1), got {cfg.data.valid_fraction}")
    d = cfg.discriminator
    if len(d.filter_sizes) != len(d.num_filters):
        raise ConfigError(
            f"discriminator.filter_sizes ({len(d.filter_sizes)} entries) and discriminator.num_filters "
            f"({len(d.num_filters)} entries) must have the same length"
        )
    if cfg.tokenizer.kind == "hf" and not cfg.tokenizer.hf_path:
        raise ConfigError(
            "tokenizer.hf_path must name a local tokenizer directory when tokenizer.kind is 'hf'"
        )
    if cfg.sample.temperature <= 0:
        raise ConfigError(f"sample.temperature must be > 0, got {cfg.sample.temperature}")
    if not 0.0 < cfg.sample.top_p <= 1.0:
        raise ConfigError(f"sample.top_p must be in (0, 1], got {cfg.sample.top_p}")
    c = cfg.conditional
    if not 0.0 <= c.mismatch_fraction <= 1.0:
        raise ConfigError(f"conditional.mismatch_fraction must be in [0, 1], got {c.mismatch_fraction}")
    if c.context_max_len < 1 or c.teacher_forcing_every < 0:
        raise ConfigError("conditional.context_max_len must be >= 1 and teacher_forcing_every >= 0")
    if cfg.generator.kind.startswith("seq2seq") and not c.train:
        raise ConfigError(
            f"generator.kind={cfg.generator.kind} needs (context, response) pairs: set conditional.train"
        )
    _validate_scratchgan(cfg)
    for key in ("epochs", "batch_size", "eval_batch_size", "d_batch_size"):
        if getattr(cfg.pretrain, key) < (0 if key == "epochs" else 1):
            raise ConfigError(f"pretrain.{key} must be positive, got {getattr(cfg.pretrain, key)}")


def _validate_scratchgan(cfg: Config) -> None:
    s = cfg.scratchgan
    if cfg.adversarial.method == "scratchgan" and cfg.discriminator.kind != "rnn":
        raise ConfigError(
            "adversarial.method=scratchgan scores every prefix: set discriminator.kind=rnn "
            f"(got {cfg.discriminator.kind!r})"
        )
    if not 0.0 <= s.discount <= 1.0:
        raise ConfigError(f"scratchgan.discount must be in [0, 1], got {s.discount}")
    if not 0.0 <= s.ema_decay < 1.0:
        raise ConfigError(f"scratchgan.ema_decay must be in [0, 1), got {s.ema_decay}")
    if not 0.0 <= s.mix_fraction <= 1.0:
        raise ConfigError(f"scratchgan.mix_fraction must be in [0, 1], got {s.mix_fraction}")
    if s.batch_size < 1 or s.steps_per_epoch < 1:
        raise ConfigError("scratchgan.batch_size and scratchgan.steps_per_epoch must be positive")
    if s.temperature <= 0:
        raise ConfigError(f"scratchgan.temperature must be > 0, got {s.temperature}")
    if s.embedding_init != "random" and not s.embedding_path:
        raise ConfigError(f"scratchgan.embedding_init={s.embedding_init} needs scratchgan.embedding_path")


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
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
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
        ConfigError: unknown key, wrong type or invalid value, naming the key.
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
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of config sections")
        tree = loaded
    if overrides:
        tree = _merge(tree, parse_overrides(overrides))
    return from_dict(cls, tree)


def save_config(cfg: Any, path: str | Path) -> None:
    """Writes the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")


def describe(cls: type = Config, prefix: str = "") -> str:
    """Every key with its type, default and docstring (used by ``--help-config``)."""
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
        body = tree.body[0].body  # type: ignore[attr-defined]
        for a, b in zip(body, body[1:], strict=False):
            if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant):
                docs[a.target.id] = " ".join(str(b.value.value).split())  # type: ignore[attr-defined]
    except (OSError, TypeError, IndexError):
        pass
    hints = _hints(cls)
    lines = []
    defaults = cls() if prefix == "" else None
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            lines.append(describe(tp, prefix=f"{prefix}{f.name}."))
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = getattr(defaults, f.name, None)
        lines.append(f"{prefix}{f.name} ({_type_name(tp)}, default {default!r}): {docs.get(f.name, '')}")
    return "\n".join(lines)
