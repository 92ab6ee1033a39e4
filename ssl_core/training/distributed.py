"""Data-parallel training when started by torchrun; a no-op otherwise.

    torchrun --nproc_per_node 4 -m ssl_core.cli train --method simclr --dataset cifar10 ...

Every process holds the whole in-memory dataset on its own device and takes a disjoint slice
of each global batch (`--batch-size` is the global batch), so one run with N processes takes
the same steps, epochs and learning-rate schedule as a single-process run. Gradients are
averaged by DistributedDataParallel; rank 0 alone writes the run folder (status, metrics,
checkpoints) and runs the post-training steps. Losses are computed per process: a contrastive
method sees its own slice's negatives, as in MoCo's and BYOL's reference DDP code without
SyncBN or a gather.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device_name: str = "auto") -> Context:
    """Join the process group torchrun describes (NCCL on GPUs, gloo on CPUs); once per process."""
    if not launched_by_torchrun():
        return Context()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        elif os.environ.get("LOCAL_WORLD_SIZE") == os.environ.get("WORLD_SIZE"):
            # One machine: gloo over loopback. Left to itself gloo resolves the host name, which
            # on a machine without DNS took minutes (measured: 17 s for a whole tiny run with
            # loopback, over 10 min without).
            os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Context(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank)


def context() -> Context:
    """The current process's place in the group (rank 0 of 1 when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return Context()
    return Context(rank=dist.get_rank(), world_size=dist.get_world_size(),
                   local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def broadcast_text(text: str | None) -> str:
    """Rank 0's string on every rank (the new run's id, say)."""
    if not context().active:
        return text or ""
    box = [text]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when `flag` is true on any: so that all ranks stop at the same step."""
    if not context().active:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def barrier() -> None:
    if context().active:
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
