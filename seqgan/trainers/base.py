"""The contract every adversarial trainer implements, and the guarded update they all share.

A trainer holds ``generator``, ``discriminator``, ``g_optimizer``, ``d_optimizer``, the step counters
``g_steps`` / ``d_steps``, an optional ``torch.Generator`` ``rng`` and a :class:`NonFiniteGuard` ``nan_guard``
(the config's ``nan_policy``), and implements:

* ``generator_step(...)`` and ``discriminator_step(...)``: one update each, returning slash-namespaced metrics;
* ``train_epoch(real, data_rng)``: one epoch of the method's own schedule on the ``(N, T)`` real rows ``real``
  (drawn in ``data_rng``'s order), returning the epoch's metrics;
* ``state_dict()`` / ``load_state_dict()``: everything needed to resume exactly, as plain tensors, dicts and
  numbers (loadable with ``torch.load(weights_only=True)``); subclasses add their own entries (rollout policy,
  baselines) through :meth:`AdversarialTrainer._extra_state` / :meth:`AdversarialTrainer._load_extra_state`;
* ``from_config(cfg, generator, discriminator, rng=None, **task_data)``: the trainer a
  :class:`~seqgan.config.Config` describes (its method's section is the trainer's config).

Every parameter update goes through :func:`guarded_update`, so every method honours ``nan_policy``: a NaN/inf
loss or gradient is never applied; ``stop`` raises :class:`NonFiniteLossError`, ``skip`` skips the update and
counts it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

__all__ = [
    "AdversarialTrainer",
    "NonFiniteGuard",
    "NonFiniteLossError",
    "baseline_state",
    "guarded_update",
    "load_baseline",
    "new_baseline",
    "total_norm",
]


class NonFiniteLossError(FloatingPointError):
    """A loss or gradient was NaN/inf and the NaN policy says stop (no parameter was changed by that step)."""


def _all_finite(values) -> bool:
    """Whether every element of every tensor (or number) is finite, with one host sync per device.

    Tensors are reduced to their norms by one fused pass (``torch._foreach_norm``): a NaN/inf element makes its
    norm NaN/inf, and finite values too large for a float32 norm (above about 1e19) also count as non-finite.
    """
    tensors: dict[torch.device, list[torch.Tensor]] = {}
    for v in values:
        if isinstance(v, torch.Tensor):
            if v.numel():
                t = v.detach() if v.is_floating_point() else v.detach().float()
                tensors.setdefault(t.device, []).append(t)
        elif not math.isfinite(float(v)):
            return False
    return all(bool(torch.stack(torch._foreach_norm(ts)).isfinite().all()) for ts in tensors.values())


class NonFiniteGuard:
    """What to do with a step whose loss or gradient is NaN/inf (``nan_policy`` in the config).

    ``stop`` raises :class:`NonFiniteLossError`; ``skip`` skips the update, counts it (``skipped``, and in a
    row per kind of update: generator, discriminator, MLE) and raises only after ``max_consecutive`` skipped
    updates of one kind in a row (a good update of another kind does not reset the count). The decision is
    taken on every rank alike when distributed (a step is bad when it is bad on any rank), so ranks never
    disagree about whether to step.

    Args:
        policy: ``"stop"`` or ``"skip"``.
        max_consecutive: with ``skip``, raise after this many bad steps in a row.
    """

    def __init__(self, policy: str = "stop", max_consecutive: int = 10) -> None:
        if policy not in ("stop", "skip"):
            raise ValueError(f"nan_policy must be 'stop' or 'skip', got {policy!r}")
        self.policy, self.max_consecutive = policy, max_consecutive
        self.skipped = 0
        self.in_a_row: dict[str, int] = {}
        self.note = ""
        """Appended to the stop message (the run stages say which checkpoint is intact)."""

    @property
    def consecutive(self) -> int:
        """The longest current run of skipped updates of one kind."""
        return max(self.in_a_row.values(), default=0)

    def ok(
        self, *values: torch.Tensor | float, what: str | Callable[[], str] = "loss", kind: str = "update"
    ) -> bool:
        """True when every value is finite on every rank; else counts the step and returns False (``skip``) or
        raises :class:`NonFiniteLossError` (``stop``, or too many bad steps in a row). ``what`` (a string or a
        function returning one, called only for a bad step) describes the values in the message."""
        from seqgan import distributed

        finite = _all_finite(values)
        if not distributed.any_rank(not finite):
            self.in_a_row[kind] = 0
            return True
        self.skipped += 1
        self.in_a_row[kind] = self.in_a_row.get(kind, 0) + 1
        what = what() if callable(what) else what
        note = f"; {self.note}" if self.note else ""
        if self.policy == "stop":
            raise NonFiniteLossError(f"non-finite {what} (nan_policy=stop){note}")
        if self.in_a_row[kind] >= self.max_consecutive:
            raise NonFiniteLossError(
                f"non-finite {what} in {self.in_a_row[kind]} consecutive {kind} steps (nan_policy=skip, "
                f"nan_max_consecutive={self.max_consecutive}){note}"
            )
        return False

    def state_dict(self) -> dict:
        return {"skipped": self.skipped, "in_a_row": dict(self.in_a_row)}

    def load_state_dict(self, state: dict) -> None:
        self.skipped = int(state.get("skipped", 0))
        self.in_a_row = {str(k): int(v) for k, v in state.get("in_a_row", {}).items()}


def total_norm(params: Iterable[nn.Parameter]) -> torch.Tensor:
    """The 2-norm of all gradients of ``params`` together, in one fused pass (0 when none has a gradient)."""
    grads = [p.grad.detach() for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def guarded_update(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    params: Iterable[nn.Parameter],
    guard: NonFiniteGuard,
    kind: str,
    grad_clip: float = 0.0,
    what: str | Callable[[], str] = "loss / gradient",
    clear: Iterable[nn.Module] = (),
    keep_grads: bool = False,
) -> tuple[bool, torch.Tensor]:
    """Backward, gradient norm (clipped to ``grad_clip`` when > 0), and the optimizer step unless the loss or
    the gradient norm is not finite.

    Backward runs before the check, so that under DDP every rank takes part in the gradient all-reduce. A
    skipped step leaves the parameters and the optimizer state untouched (gradients are cleared).

    Args:
        loss: scalar loss with a graph to ``params``.
        optimizer: the optimizer of ``params``.
        params: the parameters this update trains.
        guard: the run's :class:`NonFiniteGuard` (raises or skips on NaN/inf).
        kind: ``"generator"``, ``"discriminator"`` or ``"MLE"`` (consecutive skips are counted per kind).
        grad_clip: clip the total gradient norm to this (0: no clipping).
        what: describes the update in the NaN message (a string, or a function called only when needed).
        clear: modules whose gradients are discarded after backward (e.g. the discriminator in a generator
            update that backpropagates through it).
        keep_grads: add to the gradients that earlier ``backward`` calls left (gradient accumulation: ``loss``
            is the last micro-batch's) instead of clearing them first.
    Returns:
        ``(stepped, grad_norm)``: whether the update was applied, and the total gradient norm before clipping.
    """
    params = [p for p in params if p.requires_grad]
    if not keep_grads:
        optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for module in clear:
        module.zero_grad(set_to_none=True)
    norm = total_norm(params)
    if guard.ok(loss.detach(), norm, what=what, kind=kind):
        if grad_clip > 0:
            torch.nn.utils.clip_grads_with_norm_(params, grad_clip, norm)
        optimizer.step()
        return True, norm
    optimizer.zero_grad(set_to_none=True)
    return False, norm


class AdversarialTrainer:
    """Base class: the shared state (see the module docstring) and its ``state_dict`` / ``load_state_dict``."""

    generator: nn.Module
    discriminator: nn.Module
    g_optimizer: torch.optim.Optimizer
    d_optimizer: torch.optim.Optimizer
    g_steps: int
    d_steps: int
    rng: torch.Generator | None
    nan_guard: NonFiniteGuard

    section: str = ""
    """The config section :meth:`from_config` reads: the method's own settings (``seqgan``, ``cot``, ...)."""

    @classmethod
    def from_config(
        cls,
        cfg,
        generator: nn.Module,
        discriminator: nn.Module,
        rng: torch.Generator | None = None,
        **_: object,
    ) -> AdversarialTrainer:
        """The trainer an experiment config describes: its :attr:`section`, the sequence length, the NaN
        policy, and whatever else :meth:`config_options` reads from the config."""
        return cls(
            generator,
            discriminator,
            getattr(cfg, cls.section),
            max_len=cfg.data.max_len,
            rng=rng,
            nan_guard=NonFiniteGuard(cfg.nan_policy, cfg.nan_max_consecutive),
            **cls.config_options(cfg),
        )

    @classmethod
    def config_options(cls, cfg) -> dict:
        """Keyword arguments of the constructor that :meth:`from_config` takes from other config sections."""
        return {}

    def generator_step(self, *args, **kwargs) -> dict[str, float]:
        raise NotImplementedError

    def discriminator_step(self, *args, **kwargs) -> dict[str, float]:
        raise NotImplementedError

    def train_epoch(self, real: torch.Tensor | None, data_rng: torch.Generator) -> dict[str, float]:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "g_optimizer": self.g_optimizer.state_dict(),
            "d_optimizer": self.d_optimizer.state_dict(),
            "g_steps": self.g_steps,
            "d_steps": self.d_steps,
            "rng": None if self.rng is None else self.rng.get_state(),
            "nan_guard": self.nan_guard.state_dict(),
            **self._extra_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.g_optimizer.load_state_dict(state["g_optimizer"])
        self.d_optimizer.load_state_dict(state["d_optimizer"])
        self.g_steps, self.d_steps = int(state["g_steps"]), int(state["d_steps"])
        if self.rng is not None and state.get("rng") is not None:
            self.rng.set_state(state["rng"])
        if "nan_guard" in state:
            self.nan_guard.load_state_dict(state["nan_guard"])
        self._load_extra_state(state)

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, state: dict) -> None:
        return None


def new_baseline(max_len: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A fresh per-step EMA baseline: ``(T,)`` values and ``(T,)`` flags of the steps that have one."""
    return torch.zeros(max_len, device=device), torch.zeros(max_len, dtype=torch.bool, device=device)


def baseline_state(ema: torch.Tensor, seen: torch.Tensor) -> dict:
    """The per-step EMA baseline's checkpoint entry."""
    return {"ema": ema.clone(), "seen": seen.clone()}


def load_baseline(state: dict, ema: torch.Tensor, seen: torch.Tensor) -> None:
    """Restores :func:`baseline_state` into ``ema`` / ``seen`` in place (their lengths must match)."""
    if state["ema"].shape != ema.shape:
        raise ValueError(f"baseline of length {state['ema'].shape[0]} does not fit max_len={ema.shape[0]}")
    ema.copy_(state["ema"])
    seen.copy_(state["seen"])
