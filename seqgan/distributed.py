"""Multi-process training with PyTorch's DistributedDataParallel, launched by ``torchrun``.

``torchrun --nproc_per_node N recipes/<recipe>.py ...`` starts N copies of a recipe with ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE`` in their environment. :func:`init` joins them into a process group (NCCL on
CUDA, gloo on CPU); without those variables everything here is a no-op and a recipe runs as one process.

What each rank does:

* models: :class:`DistributedModule` wraps the generator and the discriminator in DDP. Every method of the
  wrapped model that runs with gradients enabled (``forward``, ``masked_logits``, ``step`` ...) goes through
  DDP's forward, so the gradients of whatever a trainer computes are averaged across ranks in ``backward``;
  without gradients (sampling, rollouts, evaluation) the model is called directly. DDP copies rank 0's weights
  to every rank when it wraps them.
* data and samples: :func:`shard` gives each rank an equal share of the real data (the remainder is dropped so
  that every rank takes the same number of steps); :func:`per_rank_config` divides the per-update sample
  counts and batch sizes by the number of ranks, so one update of N ranks sees as many sequences as one
  update of a single process.
* seeds: :func:`rank_seed` offsets the seed per rank (rank 0 keeps the configured seed), so ranks draw different
  samples, rollouts and data orders.
* metrics: :func:`mean_metrics` averages a metric dict over ranks; only rank 0 (:func:`is_main`) evaluates,
  logs, prints and writes checkpoints.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = [
    "DistributedModule",
    "any_rank",
    "check_in_sync",
    "cleanup",
    "gather_objects",
    "in_sync",
    "init",
    "is_distributed",
    "is_main",
    "launched_by_torchrun",
    "local_rank",
    "mean_metrics",
    "metrics_logger",
    "parameter_checksum",
    "per_rank_config",
    "rank",
    "rank_seed",
    "shard",
    "unwrap",
    "world_size",
    "wrap",
]

RANK_SEED_STRIDE = 1_000_003
"""Seed of rank r = seed + r * RANK_SEED_STRIDE."""

PER_RANK_KEYS = ("batch_size", "d_batch_size", "d_num_negatives")
"""Config fields (in ``pretrain``, ``adversarial`` and any method section) that count sequences per update or
per round; :func:`per_rank_config` divides them by the number of ranks."""


def launched_by_torchrun() -> bool:
    """True when the environment names a world of more than one process (``torchrun`` sets these)."""
    return "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Rank 0 (or the only process): the one that logs, evaluates and writes files."""
    return rank() == 0


def init(device: torch.device) -> torch.device:
    """Joins the ``torchrun`` process group when launched by it; returns the device this rank uses.

    CUDA devices get the NCCL backend and ``cuda:LOCAL_RANK``; CPU gets gloo. Ranks other than 0 print
    nothing (their stdout goes to /dev/null; errors still reach stderr).
    """
    if not launched_by_torchrun() or is_distributed():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    if not is_main():
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (lives as long as the process)
    return device


def cleanup() -> None:
    """Leaves the process group (no-op when not distributed)."""
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()


def rank_seed(seed: int) -> int:
    """The seed of this rank: ``seed`` on rank 0, offset by ``RANK_SEED_STRIDE`` per rank elsewhere."""
    return seed + rank() * RANK_SEED_STRIDE


def shard(data: torch.Tensor) -> torch.Tensor:
    """This rank's rows of ``(N, ...)`` data: rows ``rank, rank + W, ...`` of the first ``N - N % W`` rows."""
    w = world_size()
    if w == 1:
        return data
    n = len(data) - len(data) % w
    if n == 0:
        raise ValueError(f"{len(data)} rows cannot be shared by {w} ranks")
    return data[rank() : n : w]


def per_rank_config(cfg: Any) -> Any:
    """A copy of ``cfg`` whose per-update counts (:data:`PER_RANK_KEYS`) are divided by the number of ranks.

    Every section of the config is visited, so new methods' sections using these names are covered. A count
    that does not divide evenly is rounded down (at least 1).
    """
    w = world_size()
    if w == 1:
        return cfg
    changes = {}
    for f in dataclasses.fields(cfg):
        section = getattr(cfg, f.name)
        if not dataclasses.is_dataclass(section):
            continue
        names = {g.name for g in dataclasses.fields(section)}
        upd = {k: max(1, getattr(section, k) // w) for k in PER_RANK_KEYS if k in names}
        if upd:
            changes[f.name] = dataclasses.replace(section, **upd)
    from seqgan.config import replace

    return replace(cfg, **changes)


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any rank (a collective call when distributed)."""
    if not is_distributed():
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def mean_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The mean of every numeric metric over ranks (every rank must pass the same keys); others are kept."""
    if not is_distributed():
        return metrics
    keys = sorted(k for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool))
    names = gather_objects(keys)
    if any(n != keys for n in names):
        raise RuntimeError(f"ranks report different metrics: {names}")
    t = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t)
    t /= world_size()
    return {**metrics, **{k: v for k, v in zip(keys, t.tolist(), strict=True)}}


def gather_objects(obj: Any) -> list:
    """``obj`` of every rank, in rank order (``[obj]`` when not distributed)."""
    if not is_distributed():
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def parameter_checksum(module: nn.Module) -> str:
    """SHA-256 of every parameter's bytes in order: equal on two ranks iff their weights are bit-identical."""
    h = hashlib.sha256()
    for p in unwrap(module).parameters():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def in_sync(*modules: nn.Module) -> bool:
    """True when every rank holds bit-identical parameters for each module (collective)."""
    sums = [parameter_checksum(m) for m in modules]
    return all(s == sums for s in gather_objects(sums))


def check_in_sync(*modules: nn.Module, when: str = "") -> None:
    """Raises when the ranks' parameters differ (a collective; no-op in one process). Each rank prints its
    checksums to stderr (``rank 1 parameters after epoch 3: sha256 ...``)."""
    if not is_distributed():
        return
    sums = [parameter_checksum(m) for m in modules]
    sys.stderr.flush()  # one write of one short line: lines of different ranks never interleave
    os.write(2, f"rank {rank()} parameters {when}: sha256 {' '.join(sums)}\n".encode())
    if any(s != sums for s in gather_objects(sums)):
        raise RuntimeError(
            f"the ranks' parameters differ {when}: the DDP gradient averaging did not cover an update"
        )


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# ---------------------------------------------------------------------------------------------- DDP wrapper
class _Dispatch(nn.Module):
    """DDP calls ``forward``; this forward calls any method of the wrapped model by name."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, method: str, *args, **kwargs):
        return getattr(self.model, method)(*args, **kwargs)


class DistributedModule(nn.Module):
    """A model wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` that still looks like the model.

    Attributes and methods of the model are reachable on the wrapper (``generator.step``, ``.device``,
    ``.spec()``); methods the model's class defines run through DDP's forward when gradients are enabled, so any
    loss built from them has its gradients averaged over ranks in ``backward``. ``state_dict`` and
    ``load_state_dict`` are the model's own (no ``module.`` prefix), so checkpoints do not depend on the number
    of processes.

    Args:
        model: the model (already on its device).
        device_ids: ``[local_rank]`` on CUDA, None on CPU.
        find_unused_parameters: DDP's option, for models whose losses leave some parameters unused.
    """

    def __init__(
        self, model: nn.Module, device_ids: list[int] | None = None, find_unused_parameters: bool = False
    ) -> None:
        super().__init__()
        self.ddp = DistributedDataParallel(
            _Dispatch(model),
            device_ids=device_ids,
            forward_sync_buffers=False,  # no collective in forward: ranks may run different no-grad work
            find_unused_parameters=find_unused_parameters,
        )

    @property
    def module(self) -> nn.Module:
        """The wrapped model."""
        return self.ddp.module.model

    def forward(self, *args, **kwargs):
        if torch.is_grad_enabled():
            return self.ddp("forward", *args, **kwargs)
        return self.module(*args, **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)  # parameters, buffers, submodules of the wrapper itself
        except AttributeError:
            pass
        model = self._modules["ddp"].module.model
        value = getattr(model, name)
        if callable(value) and hasattr(value, "__self__") and not hasattr(nn.Module, name):
            return functools.partial(self._call, name)
        return value

    def _call(self, method: str, *args, **kwargs):
        if torch.is_grad_enabled():
            return self.ddp(method, *args, **kwargs)
        return getattr(self.module, method)(*args, **kwargs)

    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in a :class:`DistributedModule` when distributed, else ``model`` itself."""
    if not is_distributed():
        return model
    return DistributedModule(model, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a :class:`DistributedModule` (or ``model`` itself)."""
    return model.module if isinstance(model, DistributedModule) else model


class _NullLogger:
    """What ranks other than 0 log to: nothing."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def log(self, step: int, metrics: dict) -> None:
        pass

    def close(self) -> None:
        pass


def metrics_logger(out_dir: str | Path, **kwargs) -> Any:
    """The run's metric sinks (:func:`seqgan.reporting.make_reporter`, same arguments) on rank 0; a logger that
    writes nothing on the other ranks."""
    from seqgan.reporting import make_reporter

    if is_main():
        return make_reporter(out_dir, **kwargs)
    return _NullLogger(Path(out_dir) / kwargs.get("name", "metrics.jsonl"))
