"""The generator contract shared by every generator kind.

A generator models p(y_t | y_<t) over a fixed vocabulary. Sequences are stored without BOS: ``tokens`` is
``(B, T)`` with ``pad_id`` after the first ``eos_id``. Teacher forcing feeds ``[BOS, y_1 .. y_{T-1}]`` and reads
the logits of ``y_1 .. y_T``. Incremental decoding starts from ``init_state(B)`` and is fed BOS first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from seqgan.decoding.decoders import Decoder


class Generator(nn.Module):
    """Base class: subclasses implement ``forward``, ``init_state``, ``step``, ``select_state``, ``spec`` and
    ``from_spec`` (and may override ``masked_logits`` and ``fast_decoder`` to be faster)."""

    vocab_size: int
    pad_id: int
    bos_id: int
    eos_id: int | None

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits.

        Args:
            inputs: ``(B, T)`` token ids whose first column is BOS.
        Returns:
            ``(B, T, V)`` logits; row t predicts the token after ``inputs[:, t]``.
        """
        raise NotImplementedError

    def masked_logits(self, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits at the positions where ``mask`` is True only: ``(N, V)`` for N True entries.

        Equal to ``self(inputs)[mask]``; subclasses skip the vocabulary projection at padded positions, which is
        most of the cost of an MLE step on short sentences.
        """
        return self(inputs)[mask]

    def init_state(self, batch_size: int) -> Any:
        """The state before any token has been read (the next ``step`` input is BOS)."""
        raise NotImplementedError

    def step(self, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """Reads one token per row and returns ``((B, V) logits of the next token, new state)``."""
        raise NotImplementedError

    def select_state(self, state: Any, index: torch.Tensor) -> Any:
        """Rows ``index`` ``(N,)`` of a decoding state, in that order (rows may repeat: the rollouts copy a prefix's
        state once per completion)."""
        raise NotImplementedError

    def fast_decoder(self, temperature: float) -> Decoder | None:
        """A fused decoding adapter for batched sampling and rollouts (:func:`seqgan.decoding.make_decoder`), or
        None (the default) to decode through ``init_state`` / ``step`` / ``select_state``.

        A subclass that overrides ``step``, ``forward`` or ``init_state`` without overriding this method does not
        get its parent's fast decoder (it would bypass the overrides).

        Args:
            temperature: softmax temperature of the draws (``never_sample`` ids are always excluded).
        Returns:
            A :class:`~seqgan.decoding.decoders.Decoder` equivalent to the ``step`` path, or None.
        """
        return None

    def spec(self) -> dict:
        """A plain dict (str/int/float/bool/None/list/dict only) from which ``from_spec`` rebuilds the module."""
        raise NotImplementedError

    @classmethod
    def from_spec(cls, spec: dict) -> Generator:
        raise NotImplementedError

    @property
    def never_sample(self) -> list[int]:
        """Ids that are never targets (PAD, BOS); sampling excludes them. Empty for fixed-length data
        (``eos_id is None``), where every id is a real token."""
        if self.eos_id is None:
            return []
        return sorted({self.pad_id, self.bos_id} - {self.eos_id})

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def teacher_inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` targets -> ``(B, T)`` inputs ``[BOS, y_1 .. y_{T-1}]``."""
        bos = torch.full_like(tokens[:, :1], self.bos_id)
        return torch.cat([bos, tokens[:, :-1]], dim=1)
