"""What every adversarial trainer shares: its checkpoint state.

A trainer holds ``generator``, ``discriminator``, ``g_optimizer``, ``d_optimizer``, step counters ``g_steps`` /
``d_steps`` and an optional ``torch.Generator`` ``rng``; subclasses add their own state (rollout policy,
baselines, annealing) through :meth:`AdversarialTrainer._extra_state` / :meth:`AdversarialTrainer._load_extra_state`.
"""

from __future__ import annotations

import torch


class AdversarialTrainer:
    """Base class: ``state_dict`` / ``load_state_dict`` of the shared parts (plain tensors, dicts and numbers only,
    loadable with ``torch.load(weights_only=True)``)."""

    def state_dict(self) -> dict:
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "g_optimizer": self.g_optimizer.state_dict(),
            "d_optimizer": self.d_optimizer.state_dict(),
            "g_steps": self.g_steps,
            "d_steps": self.d_steps,
            "rng": None if self.rng is None else self.rng.get_state(),
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
