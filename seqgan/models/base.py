"""The generator contract shared by every generator kind.

A generator models p(y_t | y_<t) over a fixed vocabulary. Sequences are stored without BOS: ``tokens`` is
``(B, T)`` with ``pad_id`` after the first ``eos_id``. Teacher forcing feeds ``[BOS, y_1 .. y_{T-1}]`` and reads
the logits of ``y_1 .. y_T``. Incremental decoding starts from ``init_state(B)`` and is fed BOS first.

Leaked features (LeakGAN, Guo et al. 2018, arXiv 1709.08624). A generator whose next-token distribution reads a
discriminator's features of the prefix it has produced declares ``needs_features = True``. Before it decodes or
is trained it is bound to a :class:`FeatureLeak` (``bind_features``), a function of ``(tokens (B, T), lengths
(B,))`` that returns ``(B, F)`` features of the first ``lengths[b]`` tokens of each row. Its ``forward``,
``masked_logits`` and ``step`` then read the features themselves (``step``'s state carries the prefix), so every
decoding path that goes through the contract -- sampling, Monte-Carlo rollouts, teacher-forced MLE, evaluation,
the recipes' sampling tool -- supplies them without knowing. The fused fast decoders cannot leak (they bypass
``step``): :func:`seqgan.decoding.make_decoder` decodes such a generator through ``step``. The runs bind the leak
where models are built or loaded (:func:`seqgan.models.bind_leak`), and the rollout policy's deep copy shares
its generator's leak (the current discriminator), never a copy of the discriminator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from seqgan.decoding.decoders import Decoder


FeatureFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``(tokens (B, T) ids, lengths (B,)) -> (B, F)`` features of each row's first ``lengths[b]`` tokens."""


class FeatureLeak:
    """The features a discriminator leaks to a generator: ``leak(tokens, lengths) -> (B, F)``, computed without
    gradient and in eval mode (restored after), so decoding never trains the discriminator nor moves its
    running statistics.

    A deep copy of a generator (the lagged rollout policy) shares its leak: ``copy.deepcopy`` returns the same
    object, so a copy reads the current discriminator's features rather than a frozen copy of it.

    Args:
        source: a module with ``prefix_features(tokens, lengths) -> (B, F)`` and ``feature_dim`` (e.g.
            :class:`~seqgan.models.discriminator.CNNDiscriminator`).
    """

    def __init__(self, source: nn.Module) -> None:
        if not hasattr(source, "prefix_features"):
            raise TypeError(
                f"a {type(source).__name__} leaks no features (it has no prefix_features); a generator that "
                "reads a discriminator's features needs the CNN discriminator (discriminator.kind=cnn)"
            )
        self.source = source

    @property
    def feature_dim(self) -> int:
        return int(self.source.feature_dim)

    def __call__(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        was_training = self.source.training
        self.source.eval()
        try:
            with torch.no_grad():
                return self.source.prefix_features(tokens, lengths).float()
        finally:
            self.source.train(was_training)

    def __deepcopy__(self, memo: dict) -> FeatureLeak:
        return self


class Generator(nn.Module):
    """Base class: subclasses implement ``forward``, ``init_state``, ``step``, ``select_state``, ``spec`` and
    ``from_spec`` (and may override ``masked_logits`` and ``fast_decoder`` to be faster)."""

    vocab_size: int
    pad_id: int
    bos_id: int
    eos_id: int | None
    needs_features: bool = False
    """True for a generator that reads a discriminator's leaked features (see the module docstring); it must be
    bound with :meth:`bind_features` before it decodes or is trained."""

    def bind_features(self, leak: FeatureFn | None) -> None:
        """Binds the feature function this generator reads at every step (None unbinds it).

        Raises:
            TypeError: the generator reads no features (``needs_features`` is False).
        """
        if not self.needs_features:
            raise TypeError(f"{type(self).__name__} reads no leaked features")
        self.__dict__["_leak"] = leak  # a plain attribute: never a submodule, never in the state_dict

    def mle_extra_loss(self, tokens: torch.Tensor) -> torch.Tensor | None:
        """A term the MLE step adds to the mean NLL of ``(B, T)`` target sequences (with gradient), or None (the
        default): LeakGAN's Manager is pretrained on the real sentences' feature transitions this way."""
        return None

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
