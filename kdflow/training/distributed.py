"""Data-parallel training under `torchrun`: NCCL on GPUs, gloo on CPU.

Every process builds the same global batch (same permutation, same augmentation draws) and
trains on its own slice; DDP averages the gradients, so N processes follow the single-process
run up to floating-point reduction order. Only rank 0 writes files, and only rank 0 reads the
training state: it sends what it read to the others (`broadcast`), so that nodes without a shared
filesystem resume together from rank 0's state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """True for rank 0, the only process that writes files."""
        return self.rank == 0

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This process's contiguous slice of a global batch (fit checks it divides evenly)."""
        if self.size == 1:
            return batch
        return batch.chunk(self.size)[self.rank]


def world() -> World:
    """This process's rank and world size from torchrun's ``RANK`` and ``WORLD_SIZE``; rank 0 of 1 without torchrun."""
    return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))


def setup(device: torch.device) -> World:
    """Join the process group started by torchrun (once per process); a no-op when alone."""
    here = world()
    if here.size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return here


def broadcast(obj: T, here: World) -> T:
    """Rank 0's `obj` on every rank (other ranks pass anything, e.g. None); `obj` itself, untouched, when alone.

    The object travels pickled; tensors in it arrive on the device they had on rank 0, so keep them on the CPU."""
    if here.size == 1:
        return obj
    # NCCL moves the pickled bytes through this process's GPU (the one `setup` set); gloo through the CPU.
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    box = [obj if here.is_main else None]
    dist.broadcast_object_list(box, src=0, device=device)
    return box[0]  # type: ignore[return-value]  # rank 0's object of type T


def teardown() -> None:
    """Leave the process group if this process joined one; a no-op when alone."""
    if dist.is_initialized():
        dist.destroy_process_group()
