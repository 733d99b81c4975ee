"""Helpers for tests that need several processes talking over gloo.

``run_distributed(fn, world_size, *args)`` starts ``world_size`` CPU processes, initialises
a gloo process group on a free loopback port in each, calls ``fn(*args)`` and returns what
every rank returned (in rank order). An exception in any rank fails the call with that
rank's traceback. ``fn`` must be a module-level function; functions of test modules that are not importable
by name (pytest's importlib mode) are loaded from their file in the children. A rank that
dies without reporting (a crash, an import error) fails the call instead of hanging it.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import io
import os
import socket
import sys
import time
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


def _resolve(module: str, file: str, qualname: str) -> Callable[..., Any]:
    try:
        namespace: Any = importlib.import_module(module)
    except ImportError:
        spec = importlib.util.spec_from_file_location(module, file)
        assert spec is not None and spec.loader is not None
        namespace = importlib.util.module_from_spec(spec)
        sys.modules[module] = namespace
        spec.loader.exec_module(namespace)
    for part in qualname.split("."):
        namespace = getattr(namespace, part)
    return namespace


def _worker(
    local: int,
    world: int,
    port: int,
    target: tuple[str, str, str],
    args: tuple[Any, ...],
    queue: Any,
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
        fn = _resolve(*target)
        dist.init_process_group("gloo", rank=local, world_size=world)
        result = fn(*args)
        # tensors through a multiprocessing queue live in shared memory that dies with this
        # process; send plain bytes instead
        buffer = io.BytesIO()
        torch.save(result, buffer)
        queue.put((local, True, buffer.getvalue()))
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
    target = (fn.__module__, inspect.getfile(fn), fn.__qualname__)
    procs = [
        ctx.Process(target=_worker, args=(r, world_size, port, target, args, queue))
        for r in range(world_size)
    ]
    for p in procs:
        p.start()
    results: dict[int, Any] = {}
    failures: list[str] = []
    silent: dict[int, float] = {}
    while len(results) + len(failures) < world_size:
        if not queue.empty():
            r, ok, value = queue.get()
            if ok:
                results[r] = torch.load(io.BytesIO(value), weights_only=True)
            else:
                failures.append(f"rank {r} failed:\n{value}")
            continue
        now = time.monotonic()
        for r, p in enumerate(procs):
            reported = r in results or any(f.startswith(f"rank {r} ") for f in failures)
            # a dead rank gets a moment for a result written just before it exited to arrive
            if p.exitcode is not None and not reported and now - silent.setdefault(r, now) > 5:
                failures.append(f"rank {r} exited with code {p.exitcode} without a result")
        time.sleep(0.02)
    for p in procs:
        p.join()
    if failures:
        raise RuntimeError("\n".join(failures))
    return [results[r] for r in range(world_size)]
