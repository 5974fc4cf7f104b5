"""Data-parallel training over processes started by ``torchrun`` (env vars RANK, WORLD_SIZE, LOCAL_RANK).

Every rank draws the same seeded permutation of the training split each epoch and takes its own
slice of every global batch, so one global batch is the same images whatever the number of ranks.
Gradients are averaged by ``DistributedDataParallel``; rank 0 alone validates, logs and writes
checkpoints. Backend: NCCL on CUDA, gloo on the CPU.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist
import torch.nn as nn

from fewshot_cam.errors import UserError


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job; a single process is rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> DistInfo:
    """Read RANK / WORLD_SIZE / LOCAL_RANK as set by ``torchrun``; a plain run is rank 0 of 1."""
    try:
        info = DistInfo(
            int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
        )
    except ValueError:
        raise UserError("RANK, WORLD_SIZE and LOCAL_RANK must be integers") from None
    if not 0 <= info.rank < info.world_size:
        raise UserError(f"RANK {info.rank} is outside WORLD_SIZE {info.world_size}")
    return info


def local_device(device: torch.device, info: DistInfo) -> torch.device:
    """Under torchrun a CUDA device means this process's GPU, cuda:LOCAL_RANK."""
    if info.enabled and device.type == "cuda":
        return torch.device("cuda", info.local_rank)
    return device


@contextlib.contextmanager
def process_group(info: DistInfo, device: torch.device) -> Iterator[DistInfo]:
    """Join the job's process group (from env:// MASTER_ADDR/MASTER_PORT) for the block's duration."""
    if not info.enabled or dist.is_initialized():
        yield info
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=info.rank, world_size=info.world_size)
    try:
        yield info
    finally:
        dist.destroy_process_group()


def wrap(module: nn.Module, device: torch.device, info: DistInfo) -> nn.Module:
    """``module`` itself for a single process, else a DistributedDataParallel wrapper."""
    if not info.enabled:
        return module
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)


def shard(batch: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """This rank's contiguous slice of a global batch of indices (B,) -> (B / world_size,)."""
    if len(batch) % info.world_size:
        raise UserError(f"batch size {len(batch)} is not divisible by the {info.world_size} ranks")
    per_rank = len(batch) // info.world_size
    return batch[info.rank * per_rank : (info.rank + 1) * per_rank]


def all_reduce(tensor: torch.Tensor, info: DistInfo, op: str = "sum") -> torch.Tensor:
    """Sum (or min) of ``tensor`` over ranks, in place; a no-op for a single process."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MIN)
    return tensor


def broadcast_buffers(module: nn.Module, info: DistInfo) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP broadcasts them before each forward, so after the last step of an epoch the ranks differ by
    that step's local update; this makes every rank hold what rank 0 validates and saves.
    """
    if info.enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
