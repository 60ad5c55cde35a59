"""seqgan: adversarial training of text generators (SeqGAN policy gradient, relaxations, ScratchGAN,
conditional GANs) with exact, fast evaluation."""

import os

# OpenMP threads that spin while waiting make torch 5-10x slower on CPUs shared with any other busy process;
# sleeping waits cost little otherwise. Only effective when seqgan is imported before torch; set the variable
# yourself to choose.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from seqgan.checkpoint import load_checkpoint, save_checkpoint
from seqgan.conditional import PairDiscriminator, Seq2SeqLSTM, Seq2SeqTransformer
from seqgan.config import Config, ConfigError, load_config
from seqgan.data import HFTokenizer, SentencePieceTokenizer, WordTokenizer
from seqgan.models import CNNDiscriminator, Generator, LSTMGenerator, RNNDiscriminator
from seqgan.rollout import MonteCarloRollout
from seqgan.sampling import Samples, sample
from seqgan.trainers import (
    ConditionalConfig,
    ConditionalTrainer,
    GumbelTrainer,
    GumbelTrainerConfig,
    PolicyGradientConfig,
    PolicyGradientTrainer,
    ScratchGANTrainer,
)

__version__ = "0.1.0"


def __getattr__(name):  # keep `import seqgan` free of the transformers import until it is needed
    if name == "TransformerGenerator":
        from seqgan.models.transformer import TransformerGenerator

        return TransformerGenerator
    raise AttributeError(f"module 'seqgan' has no attribute {name!r}")


__all__ = [
    "CNNDiscriminator",
    "ConditionalConfig",
    "ConditionalTrainer",
    "Config",
    "ConfigError",
    "Generator",
    "GumbelTrainer",
    "GumbelTrainerConfig",
    "HFTokenizer",
    "LSTMGenerator",
    "MonteCarloRollout",
    "PairDiscriminator",
    "PolicyGradientConfig",
    "PolicyGradientTrainer",
    "RNNDiscriminator",
    "ScratchGANTrainer",
    "Seq2SeqLSTM",
    "Seq2SeqTransformer",
    "SentencePieceTokenizer",
    "Samples",
    "TransformerGenerator",
    "WordTokenizer",
    "load_checkpoint",
    "load_config",
    "sample",
    "save_checkpoint",
]
