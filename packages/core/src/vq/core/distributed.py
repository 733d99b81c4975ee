"""Process-group helpers that also work without a process group.

Every function here is a no-op (or the identity) in a single process, so model and
quantizer code can call ``all_reduce_`` or ``all_gather_cat`` unconditionally and behave
the same on a laptop and on many nodes.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on the rank that writes logs and files (rank 0)."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce (``sum``, ``mean``, ``max`` or ``min``); returns ``tensor``."""
    if not is_distributed():
        return tensor
    if op == "mean":
        dist.all_reduce(tensor, dist.ReduceOp.SUM)
        tensor.div_(world_size())
        return tensor
    ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
    dist.all_reduce(tensor, ops[op])
    return tensor


def broadcast_(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """In-place broadcast from ``src``; returns ``tensor``."""
    if is_distributed():
        dist.broadcast(tensor, src)
    return tensor


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` of every rank along dim 0, in rank order.

    Ranks may hold different numbers of rows (the last batch of an epoch, a variable
    number of features): rows are padded to the longest rank and trimmed after gathering.
    """
    if not is_distributed():
        return tensor
    n = torch.tensor([tensor.shape[0]], device=tensor.device, dtype=torch.long)
    sizes = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(sizes, n)
    counts = [int(s.item()) for s in sizes]
    longest = max(counts)
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    gathered = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(gathered, padded.contiguous())
    return torch.cat([g[:c] for g, c in zip(gathered, counts)], dim=0)


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's picklable ``obj``, in rank order (a one-element list without a group)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src)
    return box[0]
