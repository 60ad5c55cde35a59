"""Generators and discriminators behind one kind registry.

Generators (the :class:`~seqgan.models.base.Generator` contract): ``lstm`` (:class:`LSTMGenerator`), ``rmc``
(:class:`~seqgan.models.rmc.RMCGenerator`, RelGAN's relational-memory generator), ``leakgan``
(:class:`~seqgan.models.leakgan.LeakGANGenerator`, LeakGAN's Manager and Worker, which read the CNN
discriminator's leaked features: :func:`bind_leak`), ``transformer``
(:class:`~seqgan.models.transformer.TransformerGenerator`, any Hugging Face causal LM), and the conditional
encoder-decoders ``seq2seq`` (:class:`~seqgan.models.seq2seq.Seq2SeqLSTM`) and ``seq2seq_transformer``
(:class:`~seqgan.models.seq2seq.Seq2SeqTransformer`), and the class-conditional ``class_lstm``
(:class:`~seqgan.models.class_conditional.ClassLSTM`) and ``lstm_per_class``
(:class:`~seqgan.models.class_conditional.LSTMPerClass`). Discriminators: ``cnn`` (:class:`CNNDiscriminator`;
with ``num_outputs = k + 1`` the category task's multi-class one), ``rnn`` (:class:`RNNDiscriminator`, one logit
per prefix), ``relgan`` (:class:`~seqgan.models.relgan_discriminator.RelGANDiscriminator`, RelGAN's CNN over
several embedded representations, one logit per representation), ``lm`` (:class:`LMDiscriminator`, a language
model over the generator's ids: DPGAN's discriminator, CoT's mediator), ``pair_cnn``
(:class:`~seqgan.models.pair_discriminator.PairDiscriminator`, D(context, response)), ``minilm``
(:class:`~seqgan.models.feature_discriminator.SentenceFeatureDiscriminator`, a trained head on a frozen
pretrained sentence encoder) and ``ranker`` (:class:`~seqgan.models.ranker.Ranker`, RankGAN's CNN sentence
encoder whose features rank sentences by cosine similarity; :class:`~seqgan.models.ranker.BoundRanker` binds it
to a reference and a comparison set).

:func:`build_generator` / :func:`build_discriminator` make fresh models from a :class:`~seqgan.config.Config`;
:func:`generator_class` / :func:`discriminator_class` give the class of a checkpoint spec's ``kind`` (every model
has ``spec()`` and ``from_spec(spec)``). ``transformers`` is imported only when a transformer is used.
"""

from __future__ import annotations

import torch
from torch import nn

from seqgan.models.base import FeatureLeak, Generator
from seqgan.models.class_conditional import ClassBoundDiscriminator, ClassLSTM, LSTMPerClass
from seqgan.models.discriminator import CNNDiscriminator
from seqgan.models.feature_discriminator import SentenceFeatureDiscriminator
from seqgan.models.leakgan import LeakGANGenerator
from seqgan.models.lm_discriminator import LMDiscriminator
from seqgan.models.lstm import LSTMGenerator
from seqgan.models.pair_discriminator import BoundDiscriminator, PairDiscriminator
from seqgan.models.ranker import BoundRanker, Ranker
from seqgan.models.relgan_discriminator import RelGANDiscriminator
from seqgan.models.rmc import RMCGenerator
from seqgan.models.rnn_discriminator import RNNDiscriminator
from seqgan.models.seq2seq import BoundGenerator, ConditionalGenerator, Seq2SeqLSTM, Seq2SeqTransformer

__all__ = [
    "BoundDiscriminator",
    "BoundGenerator",
    "BoundRanker",
    "CNNDiscriminator",
    "ClassBoundDiscriminator",
    "ClassLSTM",
    "ConditionalGenerator",
    "FeatureLeak",
    "LeakGANGenerator",
    "LSTMPerClass",
    "Generator",
    "LMDiscriminator",
    "LSTMGenerator",
    "PairDiscriminator",
    "RMCGenerator",
    "RNNDiscriminator",
    "Ranker",
    "RelGANDiscriminator",
    "SentenceFeatureDiscriminator",
    "Seq2SeqLSTM",
    "Seq2SeqTransformer",
    "TransformerGenerator",
    "bind_leak",
    "build_discriminator",
    "build_generator",
    "discriminator_class",
    "generator_class",
    "generator_task",
]


def __getattr__(name):  # transformers is imported only when a transformer is used
    if name == "TransformerGenerator":
        from seqgan.models.transformer import TransformerGenerator

        return TransformerGenerator
    raise AttributeError(f"module 'seqgan.models' has no attribute {name!r}")


def generator_class(kind: str) -> type[nn.Module]:
    """The generator class of a spec's ``kind``; ValueError for an unknown kind."""
    if kind == "transformer":
        from seqgan.models.transformer import TransformerGenerator

        return TransformerGenerator
    kinds = {
        "lstm": LSTMGenerator,
        "rmc": RMCGenerator,
        "leakgan": LeakGANGenerator,
        "seq2seq": Seq2SeqLSTM,
        "seq2seq_transformer": Seq2SeqTransformer,
        "class_lstm": ClassLSTM,
        "lstm_per_class": LSTMPerClass,
    }
    if kind not in kinds:
        raise ValueError(f"unknown generator kind {kind!r} (known: transformer, {', '.join(kinds)})")
    return kinds[kind]


def discriminator_class(kind: str) -> type[nn.Module]:
    """The discriminator class of a spec's ``kind`` (a spec without one is a CNN); ValueError when unknown."""
    kinds = {
        "cnn": CNNDiscriminator,
        "rnn": RNNDiscriminator,
        "relgan": RelGANDiscriminator,
        "lm": LMDiscriminator,
        "pair_cnn": PairDiscriminator,
        "minilm": SentenceFeatureDiscriminator,
        "ranker": Ranker,
    }
    if kind not in kinds:
        raise ValueError(f"unknown discriminator kind {kind!r} (known: {', '.join(kinds)})")
    return kinds[kind]


def bind_leak(generator: nn.Module, discriminator: nn.Module | None) -> None:
    """Binds a generator that reads leaked features (``needs_features``: LeakGAN's) to ``discriminator``'s
    features (:class:`~seqgan.models.base.FeatureLeak`); does nothing for any other generator. DDP wrappers are
    looked through.

    Raises:
        ValueError: the generator needs features and there is no discriminator, or its features are not as wide
            as the generator reads.
        TypeError: the discriminator leaks no features (not a CNN).
    """
    generator = getattr(generator, "module", generator)
    if not getattr(generator, "needs_features", False):
        return
    if discriminator is None:
        raise ValueError(f"a {type(generator).__name__} reads a discriminator's features, and there is none")
    leak = FeatureLeak(getattr(discriminator, "module", discriminator))
    if leak.feature_dim != generator.feature_dim:
        raise ValueError(
            f"the generator reads {generator.feature_dim} features but the discriminator has {leak.feature_dim}"
        )
    generator.bind_features(leak)


def is_conditional(spec: dict) -> bool:
    """Whether a generator spec describes a conditional (context -> response) generator."""
    return str(spec.get("kind", "")).startswith("seq2seq")


def generator_task(spec: dict) -> str:
    """The task a generator spec belongs to: ``"pairs"`` (seq2seq kinds), ``"category"`` (class-conditional
    kinds) or ``"sentences"``."""
    kind = str(spec.get("kind", ""))
    if kind.startswith("seq2seq"):
        return "pairs"
    return "category" if kind in ("class_lstm", "lstm_per_class") else "sentences"


def build_generator(cfg, tokenizer, classes: list[str] | None = None) -> nn.Module:
    """A fresh generator for ``cfg`` (a :class:`~seqgan.config.Config`), sized to ``tokenizer``; with
    ``generator.pretrained_path`` the transformer is loaded from that local directory. ``classes``: the class
    names of the category task's generators.

    ``generator.init_std`` > 0 then redraws every parameter from N(0, init_std).

    Raises:
        ValueError: the pretrained model does not fit the tokenizer (more token ids than embeddings, or special
            ids outside its vocabulary).
    """
    gen = _build_generator(cfg, tokenizer, classes)
    std = cfg.generator.init_std
    if std and not (cfg.generator.kind == "transformer" and cfg.generator.pretrained_path):
        with torch.no_grad():
            for p in gen.parameters():
                p.normal_(0.0, std)
    return gen


def _build_generator(cfg, tokenizer, classes: list[str] | None = None) -> nn.Module:
    """The generator of ``cfg.generator.kind``, with its own initialisation."""
    g = cfg.generator
    ids = {"pad_id": tokenizer.pad_id, "bos_id": tokenizer.bos_id, "eos_id": tokenizer.eos_id}
    if g.kind == "lstm":
        return LSTMGenerator(tokenizer.vocab_size, g.embed_dim, g.hidden_dim, g.num_layers, g.dropout, **ids)
    if g.kind == "rmc":
        return RMCGenerator(
            tokenizer.vocab_size, g.embed_dim, g.mem_slots, g.num_heads, g.head_size, g.dropout, **ids
        )
    if g.kind == "leakgan":  # F: the CNN discriminator's feature width, the sum of its filter counts
        return LeakGANGenerator(
            tokenizer.vocab_size, sum(cfg.discriminator.num_filters), g.embed_dim, g.hidden_dim,
            g.manager_hidden_dim, g.goal_size, g.step_size, g.dropout, **ids,
        )  # fmt: skip
    if g.kind in ("class_lstm", "lstm_per_class"):
        if not classes:
            raise ValueError(f"generator.kind={g.kind} needs the class names (the category task's labels)")
        if g.kind == "class_lstm":
            return ClassLSTM(tokenizer.vocab_size, classes, g.embed_dim, g.hidden_dim, g.num_layers, g.dropout,
                             g.class_every_step, **ids)  # fmt: skip
        return LSTMPerClass(
            tokenizer.vocab_size, classes, g.embed_dim, g.hidden_dim, g.num_layers, g.dropout, **ids
        )
    if g.kind == "seq2seq":
        return Seq2SeqLSTM(
            tokenizer.vocab_size, g.embed_dim, g.hidden_dim, g.num_layers, g.dropout, g.attention, **ids
        )
    if g.kind == "seq2seq_transformer":
        positions = max(cfg.data.max_len, cfg.conditional.context_max_len) + 1
        return Seq2SeqTransformer(
            tokenizer.vocab_size, positions, g.n_layer, g.n_head, g.n_embd, g.dropout, **ids
        )
    if g.kind == "transformer":
        from seqgan.models.transformer import TransformerGenerator

        if g.pretrained_path:
            gen = TransformerGenerator.from_pretrained(g.pretrained_path, **ids)
            if gen.vocab_size < tokenizer.vocab_size:
                raise ValueError(
                    f"the model at {g.pretrained_path} has {gen.vocab_size} token embeddings but the tokenizer "
                    f"has {tokenizer.vocab_size} tokens; use the model's own tokenizer (tokenizer.kind=hf)"
                )
        else:
            # on (context, response) pairs the positions hold the prompt (BOS, context, EOS) and the response
            prompt = cfg.conditional.context_max_len + 2 if cfg.task == "pairs" else 0
            gen = TransformerGenerator.from_config(
                tokenizer.vocab_size,
                cfg.data.max_len + prompt,
                n_layer=g.n_layer,
                n_head=g.n_head,
                n_embd=g.n_embd,
                dropout=g.dropout,
                model_type=g.model_type,
                **ids,
            )
        if g.lora_r:
            gen.add_lora(g.lora_r, g.lora_alpha, g.lora_dropout, g.lora_target_modules)
        return gen
    raise ValueError(f"unknown generator kind {g.kind!r}")


def build_discriminator(cfg, tokenizer, classes: list[str] | None = None) -> nn.Module:
    """A fresh discriminator for ``cfg``: the kind :attr:`~seqgan.config.Config.discriminator_kind` resolves to
    (the pair discriminator for the conditional task; for the category task a CNN with ``len(classes) + 1``
    outputs, the classes then fake), sized by the ``discriminator`` section."""
    d = cfg.discriminator
    if cfg.task == "category":
        if not classes:
            raise ValueError("the category task's discriminator needs the class names")
        return CNNDiscriminator(tokenizer.vocab_size, d.embed_dim, d.filter_sizes, d.num_filters, d.dropout,
                                d.highway, tokenizer.pad_id, num_outputs=len(classes) + 1)  # fmt: skip
    pad_id = tokenizer.pad_id if tokenizer.eos_id is not None else None  # fixed-length ids: no padding token
    if cfg.task == "pairs":
        return PairDiscriminator(
            tokenizer.vocab_size,
            d.embed_dim,
            d.filter_sizes,
            d.num_filters,
            d.dropout,
            d.highway,
            d.pair_hidden,
            d.shared_encoder,
            tokenizer.pad_id,
            eos_id=tokenizer.eos_id,
        )
    if cfg.discriminator_kind == "minilm":
        return SentenceFeatureDiscriminator(
            tokenizer.state_dict(), d.feature_hidden, d.dropout, d.feature_encoder, d.feature_cache
        )
    if cfg.discriminator_kind == "relgan":
        return RelGANDiscriminator(
            tokenizer.vocab_size, d.embed_dim, d.num_rep, d.filter_sizes, d.num_filters, d.dropout, d.highway,
            pad_id, tokenizer.eos_id,
        )  # fmt: skip
    if cfg.discriminator_kind == "lm":  # over the generator's ids, with its special tokens
        return LMDiscriminator(
            tokenizer.vocab_size, d.embed_dim, d.hidden_dim, d.num_layers, d.dropout, tokenizer.pad_id,
            tokenizer.bos_id, tokenizer.eos_id,
        )  # fmt: skip
    if cfg.discriminator_kind == "ranker":
        return Ranker(
            tokenizer.vocab_size, d.embed_dim, d.filter_sizes, d.num_filters, d.dropout, d.highway, pad_id,
            eos_id=tokenizer.eos_id,
        )  # fmt: skip
    if cfg.discriminator_kind == "rnn":
        return RNNDiscriminator(
            tokenizer.vocab_size, d.embed_dim, d.hidden_dim, d.num_layers, d.dropout, pad_id, tokenizer.eos_id
        )
    return CNNDiscriminator(
        tokenizer.vocab_size, d.embed_dim, d.filter_sizes, d.num_filters, d.dropout, d.highway, pad_id,
        eos_id=tokenizer.eos_id,
    )  # fmt: skip
