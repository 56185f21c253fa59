"""Data-parallel training under torchrun: the process group, sharding and agreement.

torchrun sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in every worker; :class:`Dist`
reads them, joins the process group (gloo on CPU, NCCL on CUDA unless told), wraps the
model in DistributedDataParallel and gives every rank its shard of each epoch's batches
(the same seeded order everywhere, trimmed to a multiple of the world size so that every
rank takes the same number of steps: DDP's all-reduce would otherwise wait forever).
Anything that decides how many steps run (a steps or duration limit, a signal) is agreed
by an all-reduce, so no rank leaves a collective the others are in.
"""

from __future__ import annotations

import os
from typing import Any


class Dist:
    """One worker's view of the run; a single process when WORLD_SIZE is unset or 1."""

    def __init__(self, torch: Any, backend: str, device: Any) -> None:
        self.torch = torch
        self.world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        self.rank = int(os.environ.get("RANK", "0") or 0)
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
        self.active = self.world > 1
        self.device = device
        self.backend = None
        if not self.active:
            return
        import torch.distributed as tdist

        if device.type == "cuda":
            if self.local_rank >= torch.cuda.device_count():  # NCCL cannot put two ranks on one GPU
                raise ValueError(f"local rank {self.local_rank} has no GPU: {torch.cuda.device_count()} CUDA "
                                 "device(s) here; nproc_per_node must be at most that (or use device=cpu)")
            self.device = torch.device(f"cuda:{self.local_rank}")
            torch.cuda.set_device(self.device)
        self.backend = ("nccl" if self.device.type == "cuda" else "gloo") if backend == "auto" else backend
        if self.backend == "nccl" and self.device.type != "cuda":
            raise ValueError("backend=nccl needs a CUDA device; use gloo on cpu")
        tdist.init_process_group(self.backend)
        self.tdist = tdist

    def wrap(self, model: Any) -> Any:
        """The model to train with: DistributedDataParallel around ``model`` when distributed."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def shard(self, batches: list, trim: bool = True) -> list:
        """This rank's batches: every world-th one, from an equal share (``trim``) of them."""
        if not self.active:
            return batches
        if trim:
            batches = batches[: len(batches) // self.world * self.world]
            if not batches:
                raise ValueError(f"fewer training batches than the {self.world} processes: raise train_size "
                                 "or lower batch_size")
        return batches[self.rank::self.world]

    def agree_max(self, value: int) -> int:
        """The largest ``value`` over the ranks (a collective: every rank must call it)."""
        return int(self._reduce([value], "MAX", self.torch.int64)[0]) if self.active else value

    def sums(self, values: list[float]) -> list[float]:
        """Element-wise sums over the ranks (a collective)."""
        return self._reduce(values, "SUM", self.torch.float64) if self.active else values

    def maxes(self, values: list[float]) -> list[float]:
        """Element-wise maxima over the ranks (a collective)."""
        return self._reduce(values, "MAX", self.torch.float64) if self.active else values

    def _reduce(self, values: list, op: str, dtype: Any) -> list[float]:
        t = self.torch.tensor(values, dtype=dtype, device=self._comm_device())
        self.tdist.all_reduce(t, op=getattr(self.tdist.ReduceOp, op))
        return [float(x) for x in t.tolist()]

    def _comm_device(self) -> Any:
        return self.device if self.backend == "nccl" else "cpu"

    def info(self) -> dict[str, Any]:
        return {"world_size": self.world, "backend": self.backend} if self.active else {"world_size": 1}

    def close(self) -> None:
        if self.active and self.tdist.is_initialized():
            self.tdist.destroy_process_group()
