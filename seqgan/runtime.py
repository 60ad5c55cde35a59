"""Process-level settings, applied only when a program asks for them, and the precision context of a run.

The library changes no environment variable and no thread count by itself. The recipes and benchmarks call:

* :func:`prefer_passive_waits` first thing, before torch is imported: OpenMP threads that spin while waiting
  make torch 5-10x slower on CPUs shared with any other busy process; sleeping waits cost little otherwise.
  It sets ``OMP_WAIT_POLICY=PASSIVE`` unless the variable is already set.
* :func:`configure` once the config is known: ``num_threads`` torch threads (0 keeps torch's default).

:func:`resolve_device` checks ``device`` against what the machine has; :func:`autocast` and
:func:`compile_models` implement the config's ``precision`` and ``compile``.
"""

from __future__ import annotations

import contextlib
import os
import sys

__all__ = ["autocast", "compile_models", "configure", "prefer_passive_waits", "resolve_device"]


def prefer_passive_waits() -> bool:
    """Sets ``OMP_WAIT_POLICY=PASSIVE`` unless it is set; returns whether it takes effect (it does only if
    torch has not been imported yet, since OpenMP reads it when it starts)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return "torch" not in sys.modules


def configure(cfg) -> None:
    """Applies a config's process-level settings: ``num_threads`` torch CPU threads (0: torch's default)."""
    import torch

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)


def resolve_device(name: str = "auto"):
    """``auto`` -> CUDA when available, else CPU; otherwise ``torch.device(name)``, checked.

    Raises:
        ConfigError: the device is not available on this machine (one line naming the ``device`` key).
    """
    import torch

    from seqgan.config import ConfigError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device={name}: not a device name (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device={name}: no CUDA device is available here; use device=cpu or device=auto"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device={name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device={name}: MPS is not available here; use device=cpu or device=auto")
    return device


def autocast(precision: str, device) -> contextlib.AbstractContextManager:
    """The autocast context of ``precision`` (``"bf16"``: bfloat16 autocast on ``device``; ``"fp32"``: none).

    The context may span many optimizer steps (a whole adversarial epoch), so autocast's cache of lower-precision
    weight copies is off: with it, every forward inside the context would reuse the copies made before the
    first update, and training would follow stale weights.
    """
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, cache_enabled=False)
    raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")


def compile_models(enabled: bool, *modules) -> None:
    """``torch.compile`` each module's forward in place when ``enabled`` (config key ``compile``).

    In place (``nn.Module.compile``), so the modules keep their class, methods and state-dict keys: checkpoints,
    the fused decoders and the rollout scorer see the same objects, and only calls through ``module(...)`` run the
    compiled graph.
    """
    if enabled:
        for module in modules:
            module.compile()
