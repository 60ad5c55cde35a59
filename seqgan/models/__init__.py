"""Generators (LSTM, Hugging Face transformer) and discriminators, plus builders from config and spec."""

from __future__ import annotations

from seqgan.models.base import Generator
from seqgan.models.discriminator import CNNDiscriminator
from seqgan.models.lstm import LSTMGenerator
from seqgan.models.rnn_discriminator import RNNDiscriminator


def __getattr__(name):  # transformers is imported only when a transformer is used
    if name == "TransformerGenerator":
        from seqgan.models.transformer import TransformerGenerator

        return TransformerGenerator
    raise AttributeError(name)


def build_generator(cfg, tokenizer, max_len: int) -> Generator:
    """A fresh generator from a GeneratorConfig, sized to ``tokenizer`` (or loaded from a local directory)."""
    ids = {"pad_id": tokenizer.pad_id, "bos_id": tokenizer.bos_id, "eos_id": tokenizer.eos_id}
    if cfg.kind == "lstm":
        return LSTMGenerator(
            tokenizer.vocab_size, cfg.embed_dim, cfg.hidden_dim, cfg.num_layers, cfg.dropout, **ids
        )
    if cfg.kind == "transformer":
        from seqgan.models.transformer import TransformerGenerator

        if cfg.pretrained_path:
            gen = TransformerGenerator.from_pretrained(cfg.pretrained_path, **ids)
            if gen.vocab_size < tokenizer.vocab_size:
                raise ValueError(
                    f"the model at {cfg.pretrained_path} has {gen.vocab_size} token embeddings but the tokenizer "
                    f"has {tokenizer.vocab_size} tokens; use the model's own tokenizer (tokenizer.kind=hf)"
                )
            return gen
        return TransformerGenerator.from_config(
            tokenizer.vocab_size,
            max_len,
            n_layer=cfg.n_layer,
            n_head=cfg.n_head,
            n_embd=cfg.n_embd,
            dropout=cfg.dropout,
            model_type=cfg.model_type,
            **ids,
        )
    raise ValueError(f"unknown generator kind {cfg.kind!r}")


def generator_from_spec(spec: dict) -> Generator:
    """Rebuilds a generator's architecture from ``Generator.spec()`` (weights are loaded separately)."""
    if spec["kind"] == "lstm":
        return LSTMGenerator.from_spec(spec)
    if spec["kind"] == "transformer":
        from seqgan.models.transformer import TransformerGenerator

        return TransformerGenerator.from_spec(spec)
    raise ValueError(f"unknown generator kind {spec['kind']!r}")


def build_discriminator(cfg, tokenizer) -> CNNDiscriminator | RNNDiscriminator:
    """A discriminator from a DiscriminatorConfig: the CNN (``kind: cnn``) or the per-prefix LSTM (``rnn``)."""
    if getattr(cfg, "kind", "cnn") == "rnn":
        return RNNDiscriminator(
            tokenizer.vocab_size,
            cfg.embed_dim,
            cfg.hidden_dim,
            cfg.num_layers,
            cfg.dropout,
            tokenizer.pad_id if tokenizer.eos_id is not None else None,
            tokenizer.eos_id,
        )
    return CNNDiscriminator(
        tokenizer.vocab_size,
        cfg.embed_dim,
        cfg.filter_sizes,
        cfg.num_filters,
        cfg.dropout,
        cfg.highway,
        tokenizer.pad_id if tokenizer.eos_id is not None else None,  # fixed-length ids: no padding token
    )


def discriminator_from_spec(spec: dict) -> CNNDiscriminator | RNNDiscriminator:
    """Rebuilds a discriminator from its ``spec()`` (a spec without ``kind`` is a CNN, as older checkpoints)."""
    kind = spec.get("kind", "cnn")
    if kind == "cnn":
        return CNNDiscriminator.from_spec(spec)
    if kind == "rnn":
        return RNNDiscriminator.from_spec(spec)
    raise ValueError(f"unknown discriminator kind {kind!r}")


__all__ = [
    "Generator",
    "LSTMGenerator",
    "CNNDiscriminator",
    "RNNDiscriminator",
    "TransformerGenerator",
    "build_generator",
    "build_discriminator",
    "discriminator_from_spec",
    "generator_from_spec",
]
