"""Incremental decoding for every generator kind: samplers and decoding adapters.

* :mod:`seqgan.decoding.samplers`: :func:`filter_logits` (top-k / top-p), :func:`draw` (inverse-CDF draws),
  :class:`LogitSampler` and :class:`FusedSampler` (the output projection fused with the draw).
* :mod:`seqgan.decoding.decoders`: :class:`Decoder` adapters (:class:`StepDecoder` for any generator's ``step``
  contract, :class:`LSTMDecoder`) and :func:`make_decoder`, which picks a generator's fast path.
* :mod:`seqgan.decoding.hf`: the transformer fast path and the key / value cache operations; the one module
  that touches ``transformers`` internals. It is not imported here, so that importing this package does not
  import ``transformers``.

Built on by :func:`seqgan.sampling.sample` and :class:`seqgan.rollout.MonteCarloRollout`; imports neither.
"""

from seqgan.decoding.decoders import Decoder, LSTMDecoder, StepDecoder, make_decoder
from seqgan.decoding.samplers import FusedSampler, LogitSampler, draw, filter_logits

__all__ = [
    "Decoder",
    "FusedSampler",
    "LSTMDecoder",
    "LogitSampler",
    "StepDecoder",
    "draw",
    "filter_logits",
    "make_decoder",
]
