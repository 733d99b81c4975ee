"""Helpers for tests that need several processes talking over gloo.

``run_distributed(fn, world_size, *args)`` starts ``world_size`` CPU processes, initialises
a gloo process group on a free loopback port in each, calls ``fn(*args)`` and returns what
every rank returned (in rank order). An exception in any rank fails the call with that
rank's traceback. ``fn`` must be importable (a module-level function).
"""

from __future__ import annotations

import os
import socket
import traceback
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(
    local: int, world: int, port: int, fn: Callable[..., Any], args: tuple[Any, ...], queue: Any
) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(local),
        LOCAL_RANK=str(local),
        WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    try:
        dist.init_process_group("gloo", rank=local, world_size=world)
        result = fn(*args)
        queue.put((local, True, result))
    except BaseException:
        queue.put((local, False, traceback.format_exc()))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_distributed(fn: Callable[..., Any], world_size: int, *args: Any) -> list[Any]:
    """Run ``fn(*args)`` on ``world_size`` gloo ranks; return the per-rank results."""
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    port = free_port()
    procs = [
        ctx.Process(target=_worker, args=(r, world_size, port, fn, args, queue))
        for r in range(world_size)
    ]
    for p in procs:
        p.start()
    results: dict[int, Any] = {}
    failures: list[str] = []
    for _ in procs:
        r, ok, value = queue.get()
        if ok:
            results[r] = value
        else:
            failures.append(f"rank {r} failed:\n{value}")
    for p in procs:
        p.join()
    if failures:
        raise RuntimeError("\n".join(failures))
    return [results[r] for r in range(world_size)]
