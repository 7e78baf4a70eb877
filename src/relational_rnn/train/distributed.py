"""Multi-process training with `torchrun`: process group, rank queries, the few collectives the loop needs.

`torchrun --nproc_per_node P -m relational_rnn.cli train ...` starts P processes with the
environment variables RANK, LOCAL_RANK and WORLD_SIZE set; `train` then calls `process_group`,
which initialises `torch.distributed` (gloo on CPU, nccl on CUDA) when WORLD_SIZE > 1 and
destroys it at the end. Without those variables (or with WORLD_SIZE = 1) every helper here is
a no-op and the loop runs as a single process.

A supervised task trains under DDP the same way whatever it is: every rank draws the FULL
seeded global batch of the step (a function of seed and step, as in one process) and keeps its
rows (`shard_rows`); DDP averages the gradients of equal slices, so a P-process step is the
one-process step up to float reduction order. Whatever a task decides from the training data
(a curriculum's advance, the logged accuracy) it decides from counts summed over the ranks
(`sum_over_ranks`), so its state stays the same on every rank and equals the one-process state.
"""

from __future__ import annotations

import datetime
import os
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn

from .config import ConfigError
from .cuda_graphs import GraphedModel

TIMEOUT = datetime.timedelta(minutes=60)  # a full-split evaluation on one rank may keep the others waiting


def requested_world_size() -> int:
    """The number of processes torchrun started (WORLD_SIZE), 1 when not launched by torchrun."""
    value = os.environ.get("WORLD_SIZE", "1")
    try:
        size = int(value)
    except ValueError:
        raise ValueError(f"WORLD_SIZE must be a positive integer, got {value!r}") from None
    if size < 1:
        raise ValueError(f"WORLD_SIZE must be a positive integer, got {value!r}")
    return size


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world() -> tuple[int, int]:
    """(rank, world_size) of this process; (0, 1) when not distributed."""
    if not is_distributed():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def is_main() -> bool:
    """Whether this process writes files and prints (rank 0, or the only process)."""
    return world()[0] == 0


@contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """Initialise torch.distributed for torchrun's WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA); destroy it on exit."""
    if requested_world_size() == 1 or is_distributed():  # single process, or the caller owns the group
        yield
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend, timeout=TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def local_device(device: torch.device) -> torch.device:
    """The device of this rank: cuda:LOCAL_RANK under DDP on GPUs, else `device` unchanged."""
    if device.type == "cuda" and is_distributed():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` in DistributedDataParallel when distributed, else `model` itself.

    `find_unused_parameters` is on because a step may leave some parameters without a
    gradient (e.g. an adaptive-softmax cluster that no target of this step falls in).
    """
    if not is_distributed():
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel or `cuda_graphs.GraphedModel` wrapper (or `model` itself)."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, GraphedModel)) else model


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def sync_step(loss: torch.Tensor, stop: bool, elapsed: float) -> tuple[float, bool, float]:
    """One small all-reduce per step: the loss averaged over ranks, whether any rank was asked
    to stop, and the mean elapsed time (so every rank ends a time budget at the same step)."""
    if not is_distributed():
        return loss.item(), stop, elapsed
    packed = torch.tensor([loss.item(), float(stop), elapsed], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        packed = packed.cuda()
    dist.all_reduce(packed)
    size = dist.get_world_size()
    return packed[0].item() / size, packed[1].item() > 0, packed[2].item() / size


def shard_rows(batch_size: int) -> slice:
    """The rows of a global batch of `batch_size` that this rank trains on: rank r of P takes
    rows r*b .. (r+1)*b - 1, b = batch_size / P (every row when not distributed).

    The global batch is fixed whatever P, so P must divide it: a ConfigError says so otherwise.
    """
    rank, size = world()
    if batch_size % size:
        raise ConfigError(f"the global batch_size {batch_size} does not divide by the {size} processes; choose a multiple of {size}")
    per = batch_size // size
    return slice(rank * per, (rank + 1) * per)


def sum_over_ranks(*counts: int) -> tuple[int, ...]:
    """Each of `counts` summed over every rank (one all-reduce), e.g. (correct, samples) of this
    rank's rows into the global batch's; `counts` unchanged when not distributed."""
    if not is_distributed():
        return counts
    packed = torch.tensor(counts, dtype=torch.int64)
    if dist.get_backend() == "nccl":
        packed = packed.cuda()
    dist.all_reduce(packed)
    return tuple(int(value) for value in packed.tolist())


def all_gather_cat(tensor: torch.Tensor, dim: int) -> torch.Tensor:
    """Every rank's `tensor` (equal shapes) concatenated along `dim` in rank order; `tensor` when not distributed."""
    if not is_distributed():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=dim)
