"""seqgan: adversarial training of text generators (SeqGAN policy gradient, Gumbel-softmax relaxations,
ScratchGAN, a conditional chatbot GAN) with exact, fast evaluation.

The public API, loaded on first use (``import seqgan`` itself imports neither torch nor transformers and
changes no process state; see :mod:`seqgan.runtime` for the thread settings the recipes apply):

- configuration: :class:`Config`, :func:`load_config`, the method sections :class:`SeqGANConfig`,
  :class:`GumbelConfig`, :class:`ScratchGANConfig`, :class:`CoTConfig`, :class:`DPGANConfig`,
  :class:`RankGANConfig`, :class:`LeakGANConfig` and the task section :class:`ConditionalConfig`;
- data: :class:`WordTokenizer`, :class:`SentencePieceTokenizer`, :class:`HFTokenizer`;
- models: :class:`Generator`, :class:`LSTMGenerator`, :class:`RMCGenerator`, :class:`LeakGANGenerator`,
  :class:`TransformerGenerator`,
  :class:`Seq2SeqLSTM`, :class:`Seq2SeqTransformer`, :class:`CNNDiscriminator`, :class:`RelGANDiscriminator`,
  :class:`RNNDiscriminator`, :class:`LMDiscriminator`, :class:`PairDiscriminator`, :class:`Ranker`;
- decoding: :func:`sample`, :class:`Samples`, :class:`MonteCarloRollout`;
- training: :class:`PolicyGradientTrainer`, :class:`GumbelTrainer`, :class:`ScratchGANTrainer`,
  :class:`ConditionalTrainer`, :class:`MaliGANTrainer`, :class:`DGSANTrainer`, :class:`CoTTrainer`,
  :class:`DPGANTrainer`, :class:`RankGANTrainer`, :class:`LeakGANTrainer`, :func:`build_trainer`; the loop:
  :func:`fit`, :class:`Callback`,
  :class:`EarlyStopping`, :class:`FitState`;
- runs and checkpoints: :func:`load_run`, :func:`prepare_data`, :func:`evaluation`, :func:`load_checkpoint`,
  :func:`save_checkpoint`, :func:`seed_everything`.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "seqgan.config",
    "ConfigError": "seqgan.config",
    "load_config": "seqgan.config",
    "SeqGANConfig": "seqgan.config",
    "GumbelConfig": "seqgan.config",
    "ScratchGANConfig": "seqgan.config",
    "CoTConfig": "seqgan.config",
    "DPGANConfig": "seqgan.config",
    "RankGANConfig": "seqgan.config",
    "LeakGANConfig": "seqgan.config",
    "ConditionalConfig": "seqgan.config",
    "WordTokenizer": "seqgan.data.tokenizers",
    "SentencePieceTokenizer": "seqgan.data.tokenizers",
    "HFTokenizer": "seqgan.data.tokenizers",
    "Generator": "seqgan.models.base",
    "LSTMGenerator": "seqgan.models.lstm",
    "RMCGenerator": "seqgan.models.rmc",
    "LeakGANGenerator": "seqgan.models.leakgan",
    "TransformerGenerator": "seqgan.models.transformer",
    "Seq2SeqLSTM": "seqgan.models.seq2seq",
    "Seq2SeqTransformer": "seqgan.models.seq2seq",
    "CNNDiscriminator": "seqgan.models.discriminator",
    "RelGANDiscriminator": "seqgan.models.relgan_discriminator",
    "RNNDiscriminator": "seqgan.models.rnn_discriminator",
    "LMDiscriminator": "seqgan.models.lm_discriminator",
    "PairDiscriminator": "seqgan.models.pair_discriminator",
    "Ranker": "seqgan.models.ranker",
    "sample": "seqgan.sampling",
    "Samples": "seqgan.sampling",
    "MonteCarloRollout": "seqgan.rollout",
    "PolicyGradientTrainer": "seqgan.trainers.seqgan",
    "GumbelTrainer": "seqgan.trainers.gumbel",
    "ScratchGANTrainer": "seqgan.trainers.scratchgan",
    "CoTTrainer": "seqgan.trainers.cot",
    "DPGANTrainer": "seqgan.trainers.dpgan",
    "ConditionalTrainer": "seqgan.trainers.conditional",
    "MaliGANTrainer": "seqgan.trainers.maligan",
    "DGSANTrainer": "seqgan.trainers.dgsan",
    "RankGANTrainer": "seqgan.trainers.rankgan",
    "LeakGANTrainer": "seqgan.trainers.leakgan",
    "build_trainer": "seqgan.trainers",
    "load_run": "seqgan.runs",
    "prepare_data": "seqgan.runs",
    "evaluation": "seqgan.runs",
    "fit": "seqgan.loop",
    "Callback": "seqgan.loop",
    "EarlyStopping": "seqgan.loop",
    "FitState": "seqgan.loop",
    "seed_everything": "seqgan.utils",
    "load_checkpoint": "seqgan.checkpoint",
    "save_checkpoint": "seqgan.checkpoint",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'seqgan' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
