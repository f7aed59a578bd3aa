"""One process per device, as torchrun starts them: NCCL on GPUs, gloo on CPU.

Single-process runs (plain ``python training/train.py``) go through the same calls with world size 1.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes checkpoints, logs and reports."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup() -> Context:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK and join the process group if there is one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Context(rank, world_size, local_rank, device)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def any_rank(flag: torch.Tensor, context: Context) -> torch.Tensor:
    """``flag`` (a bool tensor on the device) or-ed over every rank, without a host sync: all ranks then
    hold the same decision (DDP never waits for a rank that took another branch)."""
    if not context.distributed:
        return flag
    value = flag.to(torch.int32)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return value > 0


def sum_over_ranks(sums: dict[str, float], counts: dict[str, int], context: Context,
                   names: tuple[str, ...]) -> tuple[dict[str, float], dict[str, int]]:
    """Add per-rank metric sums and image counts over all ranks (``names`` fixes the order everywhere)."""
    if not context.distributed:
        return sums, counts
    values = torch.tensor([[sums.get(n, 0.0), float(counts.get(n, 0))] for n in names], dtype=torch.float64,
                          device=context.device)  # [len(names), 2]
    dist.all_reduce(values)
    values = values.cpu()
    total_sums = {n: float(values[i, 0]) for i, n in enumerate(names) if values[i, 1] > 0}
    total_counts = {n: int(values[i, 1]) for i, n in enumerate(names) if values[i, 1] > 0}
    return total_sums, total_counts


def broadcast_buffers(module: torch.nn.Module, context: Context) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP broadcasts buffers at the start of each forward, so after the last step each rank holds its own
    local statistics; this makes evaluation and the final weights identical everywhere (and equal to what
    rank 0 saves)."""
    if context.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def barrier(context: Context) -> None:
    if context.distributed:
        dist.barrier()
