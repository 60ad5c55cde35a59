"""Conditional generation: an adversarially trained chatbot on (context, response) pairs (Li et al. 2017,
"Adversarial Learning for Neural Dialogue Generation", arXiv 1701.06547).

* :mod:`~seqgan.conditional.pairs`: TSV / ChatterBot YAML loaders, encoding, mismatched negatives, Chit-Chat.
* :mod:`~seqgan.conditional.models`: :class:`Seq2SeqLSTM` (attention), :class:`Seq2SeqTransformer`, and
  :class:`BoundGenerator` (a model bound to contexts, seen as an unconditional generator).
* :mod:`~seqgan.conditional.discriminator`: :class:`PairDiscriminator` D(c, x) and :class:`BoundDiscriminator`.
* :mod:`~seqgan.conditional.trainer`: :class:`ConditionalTrainer` (policy gradient with context-conditioned
  rollouts, teacher forcing, generated + mismatched negatives).
* :mod:`~seqgan.conditional.metrics`: response metrics (BLEU against each reference, distinct-n, generic share,
  length, adversarial success).
* :mod:`~seqgan.conditional.stages`: the pretrain / adversarial / evaluate stages the recipes call.
"""

from seqgan.conditional.discriminator import BoundDiscriminator, PairDiscriminator
from seqgan.conditional.models import (
    BoundGenerator,
    ConditionalGenerator,
    Seq2SeqLSTM,
    Seq2SeqTransformer,
    build_conditional_generator,
    conditional_generator_from_spec,
)
from seqgan.conditional.pairs import Pairs, encode_pairs, load_pairs, mismatched_indices
from seqgan.conditional.trainer import ConditionalConfig, ConditionalTrainer, sample_responses

__all__ = [
    "BoundDiscriminator",
    "BoundGenerator",
    "ConditionalConfig",
    "ConditionalGenerator",
    "ConditionalTrainer",
    "PairDiscriminator",
    "Pairs",
    "Seq2SeqLSTM",
    "Seq2SeqTransformer",
    "build_conditional_generator",
    "conditional_generator_from_spec",
    "encode_pairs",
    "load_pairs",
    "mismatched_indices",
    "sample_responses",
]
