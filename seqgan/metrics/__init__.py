"""Evaluation metrics, each with its protocol spelled out in its arguments and docstring.

- :mod:`~seqgan.metrics.bleu`: exact, fast BLEU-n and Self-BLEU-n (nltk-identical).
- :mod:`~seqgan.metrics.nll`: NLL_test of held-out data under a generator.
- :mod:`~seqgan.metrics.oracle`: the SeqGAN synthetic oracle and NLL_oracle.
- :mod:`~seqgan.metrics.fed`: Frechet embedding distance with all-MiniLM-L6-v2.
- :mod:`~seqgan.metrics.diversity`: distinct-n, average length, generic-reply share.
- :mod:`~seqgan.metrics.suite` / :mod:`~seqgan.metrics.evaluator`: the evaluation table and its protocol.
- :mod:`~seqgan.metrics.sweep`: quality-diversity sweeps over temperature.
"""

from seqgan.metrics.bleu import (
    ReferenceBleu,
    bleu,
    bleu_multi,
    bleu_per_hypothesis,
    self_bleu,
    self_bleu_multi,
    self_bleu_per_sample,
)
from seqgan.metrics.diversity import average_length, distinct_n, generic_reply_share
from seqgan.metrics.nll import nll_test
from seqgan.metrics.oracle import OracleLSTM, nll_oracle

__all__ = [
    "OracleLSTM",
    "ReferenceBleu",
    "average_length",
    "bleu",
    "bleu_multi",
    "bleu_per_hypothesis",
    "distinct_n",
    "generic_reply_share",
    "nll_oracle",
    "nll_test",
    "self_bleu",
    "self_bleu_multi",
    "self_bleu_per_sample",
]
