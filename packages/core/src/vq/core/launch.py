"""Starting processes and joining the process group.

Outside torchrun, ``train`` re-launches itself under ``torch.distributed.run`` with one
process per visible GPU (``--nproc N`` forces N; gloo on CPU) on a free port, which is what
the reference's ``auto_torchrun`` does. Under torchrun (one node or many) it joins the
existing group: nccl on CUDA, gloo on CPU.
"""

from __future__ import annotations

import datetime
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import NoReturn

import torch
import torch.distributed as dist

from vq.core.errors import UserError
from vq.core.host_memory import keep_freed_host_memory
from vq.core.testing import free_port


class RendezvousError(UserError):
    """The processes of a run could not find each other."""


_joined_group = False  # whether this process ever created a process group


def under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or (
        "RANK" in os.environ and "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ
    )


def default_nproc() -> int:
    """One process per visible GPU, one on CPU."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 1


def without_nproc(argv: list[str]) -> list[str]:
    """``argv`` less its ``--nproc N`` / ``--nproc=N`` (the processes it starts are told by
    torchrun how many they are)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def relaunch(nproc: int, module: str, argv: list[str]) -> int:
    """Run ``python -m module argv`` (without ``--nproc``) under torchrun with ``nproc``
    local processes."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={nproc}",
        f"--master-port={free_port()}",
        "--master-addr=127.0.0.1",
        "-m",
        module,
        *without_nproc(argv),
    ]
    env = dict(os.environ)
    if not torch.cuda.is_available():
        # torchrun sets OMP_NUM_THREADS=1 per rank; on CPU share the cores instead
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.call(command, env=env)


def run_or_relaunch(
    nproc: int | None,
    module: str,
    argv: list[str],
    run: Callable[[], int],
    validate: Callable[[], int],
) -> int:
    """``run()`` in this process, or, outside torchrun with ``nproc`` (default: one per GPU)
    above one, ``python -m module argv`` under torchrun once ``validate()`` returned 0: a
    mistake then fails once, fast, instead of in every process."""
    if not under_torchrun():
        nproc = nproc or default_nproc()
        if nproc > 1:
            code = validate()
            return code if code else relaunch(nproc, module, argv)
    return run_here(run)


def run_here(run: Callable[[], int]) -> int:
    """``run()`` in this process, which from now on keeps the host memory it frees for
    reuse (:func:`vq.core.host_memory.keep_freed_host_memory`): every command's work
    starts here, torchrun's ranks included."""
    keep_freed_host_memory()
    return run()


def die_with_launcher(poll_s: float = 1.0) -> threading.Thread:
    """Exit this worker when the process that started it (torchrun's agent) is gone.

    torchrun starts each worker in a new POSIX session, so ``kill -9`` of the launcher's
    process group does not reach them: they would go on training and publishing
    checkpoints into the run a resume then writes to. A daemon thread watches the parent
    pid and ends the process as soon as it changes (re-parented to init or a subreaper).
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)  # no cleanup: the launcher that would coordinate it is gone

    thread = threading.Thread(target=watch, name="vq-die-with-launcher", daemon=True)
    thread.start()
    return thread


def init_process_group(timeout_s: float = 600) -> torch.device:
    """Join the torchrun process group, or alone create a group of one; return the device.

    A group of one needs no rendezvous (an in-memory store) and leaves the environment
    untouched, so a later call in the same process still sees that it is not under torchrun.
    """
    alone = not under_torchrun()
    cuda = torch.cuda.is_available()
    local = 0 if alone else int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        device = torch.device("cuda", local % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if dist.is_initialized():
        return device
    global _joined_group
    _joined_group = True
    backend = "nccl" if cuda else "gloo"
    timeout = datetime.timedelta(seconds=timeout_s)
    if alone:
        dist.init_process_group(
            backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout
        )
        return device
    die_with_launcher()
    try:
        dist.init_process_group(backend, timeout=timeout, device_id=device if cuda else None)
    except (RuntimeError, ValueError, TimeoutError) as e:
        where = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
        raise RendezvousError(
            f"rank {os.environ.get('RANK')} of {os.environ.get('WORLD_SIZE')} could not join the "
            f"{backend} process group at {where}: {str(e).splitlines()[0]} (check that every node "
            "uses the same --master-addr/--master-port and that the port is reachable)"
        ) from None
    return device


def destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def exit_command(code: int) -> NoReturn:
    """End a command's process with exit status ``code``: console scripts and ``python -m``
    entry points call this once the command returned, never library code.

    A process that joined a process group ends without interpreter finalization, after
    flushing its logs and streams. The rank of a two-node run that leaves right after the
    final checkpoint's broadcast aborted now and then after all of its work was done
    ("terminate called without an active exception", SIGABRT; about one run in 30 on a
    loaded 2-core machine), which torchrun reports as a failed worker. The likely cause,
    inferred from the message and the timing: gloo's worker threads outlive
    ``destroy_process_group`` and may drop a finished collective's tensor while the
    interpreter finalizes; the thread must take the GIL, CPython ends it with
    ``pthread_exit``, and the unwinding meets a ``noexcept`` destructor. Everything a
    command writes is closed before it returns (checkpoints and metrics atomically,
    TensorBoard writers by their owners), so skipping finalization loses nothing.
    """
    if not _joined_group:
        sys.exit(code)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
