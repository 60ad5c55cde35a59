"""Decoding adapters: one incremental-decoding interface over every generator kind.

A decoder turns a :class:`~seqgan.models.base.Generator` into ``init`` / ``step`` / ``rearrange`` plus a
``sampler`` that draws the next tokens from what ``step`` returns. Batched decoders built on it (Monte-Carlo
rollouts, :func:`seqgan.sampling.sample`) append rows as copies of other rows and drop finished rows, so the
adapter only has to implement those two state operations.

* :class:`StepDecoder`: any generator, through its contract ``init_state`` / ``step`` (logits) /
  ``select_state``, drawing with :class:`~seqgan.decoding.samplers.LogitSampler`.
* :class:`LSTMDecoder`: the LSTM fast path (Yu et al. 2017's generator, arXiv 1609.05473): ``step`` returns the
  LSTM output and the output projection is fused with the draw
  (:class:`~seqgan.decoding.samplers.FusedSampler`).
* The transformer fast path (key / value slots, HF base model, fused LM head) lives in
  :mod:`seqgan.decoding.hf`, the one module that touches ``transformers`` internals.
* :func:`make_decoder` picks the generator's own fast decoder (``Generator.fast_decoder``) when it applies,
  else :class:`StepDecoder`. A generator that reads a discriminator's leaked features (``needs_features``,
  LeakGAN's) is always decoded through :class:`StepDecoder`: a fused path bypasses ``step``, where the features
  of each prefix are read.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch

from seqgan.decoding.samplers import FusedSampler, LogitSampler

if TYPE_CHECKING:
    from seqgan.models.base import Generator
    from seqgan.models.lstm import LSTMGenerator

__all__ = ["Decoder", "StepDecoder", "LSTMDecoder", "make_decoder"]

# A subclass that overrides one of these gets no fast decoder from its parent (the fast path would bypass them).
_DECODING_METHODS = ("step", "forward", "init_state")


class Decoder:
    """Decoding adapter: ``init`` / ``step`` / ``rearrange`` plus a ``sampler``; used as a context manager around
    one decoding run (a fast path may install faster, equivalent kernels meanwhile).

    Attributes:
        sampler: ``sampler(out, num_draws, rng)`` -> ``(n, num_draws)`` ids from ``step``'s ``(n, ...)`` output.
        fused: True when ``step`` returns features that ``sampler`` projects (a fast path), False for logits.
        compact_fraction: drop finished rows once more than this fraction of the rows is finished.
    """

    sampler: Any
    fused = False
    compact_fraction = 0.0

    def __enter__(self) -> Decoder:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def fork(self) -> Decoder:
        """An equivalent decoder that another thread can use at the same time (own sampler buffers; the model
        and whatever ``__enter__`` set up are shared)."""
        twin = copy.copy(self)
        twin.sampler = self.sampler.fork()
        return twin

    def init(self, n: int, capacity: int | None = None, seq_len: int | None = None) -> Any:
        """The state of ``n`` rows that have read nothing (the next input is BOS).

        Args:
            n: rows.
            capacity: most rows the state will hold (rows joining later included); a hint.
            seq_len: most steps that will be decoded; a hint.
        """
        raise NotImplementedError

    def step(self, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """Reads ``(n,)`` tokens; returns ``(n, H)`` features (fused) or ``(n, V)`` logits, and the new state."""
        raise NotImplementedError

    def rearrange(self, state: Any, n: int, keep: torch.Tensor | None, src: torch.Tensor) -> Any:
        """The state of rows ``keep`` (all ``n`` rows when None) in order, then copies of rows ``src``.

        Args:
            state: a state of ``n`` rows (it may be updated in place).
            n: its rows.
            keep: ``(n_keep,)`` row indices, or None.
            src: ``(n_new,)`` row indices (of the old layout) whose copies are appended.
        """
        raise NotImplementedError

    def row_bytes(self, seq_len: int) -> int | None:
        """Bytes of preallocated decoding state per row for ``seq_len`` steps (None: nothing worth capping)."""
        return None


class StepDecoder(Decoder):
    """Any generator, through its contract: ``init_state`` / ``step`` (logits) / ``select_state``."""

    compact_fraction = 0.0  # rearranging is a gather anyway, so drop finished rows at once

    def __init__(self, generator: Generator, temperature: float) -> None:
        self.g = generator
        self.sampler = LogitSampler(temperature, generator.never_sample, generator.device)

    def init(self, n: int, capacity: int | None = None, seq_len: int | None = None) -> Any:
        return self.g.init_state(n)

    def step(self, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        return self.g.step(tokens, state)  # (n, V) logits

    def rearrange(self, state: Any, n: int, keep: torch.Tensor | None, src: torch.Tensor) -> Any:
        keep = torch.arange(n, device=src.device) if keep is None else keep
        return self.g.select_state(state, torch.cat([keep, src]))


class LSTMDecoder(Decoder):
    """:class:`~seqgan.models.lstm.LSTMGenerator` fast path: ``step`` returns the ``(n, H)`` LSTM output and the
    projection is fused with sampling. The state is the LSTM's ``(h, c)``, each ``(layers, n, H)``."""

    fused = True

    def __init__(self, generator: LSTMGenerator, temperature: float) -> None:
        self.g = generator
        self.sampler = FusedSampler(
            generator.proj.weight, generator.proj.bias, temperature, generator.never_sample
        )

    def init(
        self, n: int, capacity: int | None = None, seq_len: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.g.init_state(n)

    def step(
        self, tokens: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        out, state = self.g.lstm(self.g.embedding(tokens)[:, None, :], state)  # (n, 1, H)
        return out[:, 0], state  # dropout is the identity in eval mode

    def rearrange(
        self, state: tuple[torch.Tensor, torch.Tensor], n: int, keep: torch.Tensor | None, src: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        if keep is None:
            return torch.cat([h, h[:, src]], dim=1), torch.cat([c, c[:, src]], dim=1)
        index = torch.cat([keep, src])
        return h[:, index], c[:, index]


def _keeps_fast_decoder(generator: Generator) -> bool:
    """The class that defines ``generator``'s ``fast_decoder`` also defines its ``step`` / ``forward`` /
    ``init_state``: a subclass that changes how the model decodes does not inherit a fast path that would
    bypass its changes (unless it provides its own ``fast_decoder``). False for objects without one."""
    cls = type(generator)
    owner = next((c for c in cls.__mro__ if "fast_decoder" in vars(c)), None)
    return owner is not None and all(
        getattr(cls, name) is getattr(owner, name, None) for name in _DECODING_METHODS
    )


def make_decoder(generator: Generator, temperature: float, fast: bool = True) -> Decoder:
    """The decoding adapter for ``generator``.

    Args:
        generator: any generator (put it in eval mode before decoding).
        temperature: softmax temperature of the draws (the generator's ``never_sample`` ids are excluded).
        fast: use the generator's fused fast path (``generator.fast_decoder(temperature)``, e.g. for plain
            :class:`~seqgan.models.lstm.LSTMGenerator` and
            :class:`~seqgan.models.transformer.TransformerGenerator`) when it has one that applies; False
            always decodes through the generic ``step`` contract.
    Returns:
        The decoder; enter it (``with decoder:``) around the decoding.
    """
    if getattr(generator, "needs_features", False):  # leaked features are read in step: no fused path
        return StepDecoder(generator, temperature)
    if fast and _keeps_fast_decoder(generator):
        decoder = generator.fast_decoder(temperature)
        if decoder is not None:
            return decoder
    return StepDecoder(generator, temperature)
