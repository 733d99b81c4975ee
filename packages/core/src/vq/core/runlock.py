"""One launch per run: a lock file in the work dir names the process that trains it.

Two launches of the same run would both write checkpoints into ``checkpoints/`` and move
``latest``; a resume could then continue from the other one's state. ``train`` takes
``work_dirs/NAME/.lock`` (host and pid of rank 0) once every other check has passed and
removes it when it ends. A launch that finds the lock held by a live process refuses; a
lock whose process is gone (killed, crashed) is stale and taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from vq.core.errors import UserError

LOCK_FILE = ".lock"


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs on this host (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (not Linux): trust kill(0)
    return state not in ("Z", "X")


def _holder(lock: Path) -> dict | None:
    """The live holder recorded in ``lock``; None when there is none or it is stale."""
    try:
        holder = json.loads(lock.read_text())
        pid, host = int(holder["pid"]), str(holder["host"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable: a crash while writing it; stale
    if host == socket.gethostname() and not _alive(pid):
        return None
    return {"pid": pid, "host": host}


def check_free(work_dir: Path) -> None:
    """UserError when a live process holds the run of ``work_dir``."""
    lock = work_dir / LOCK_FILE
    holder = _holder(lock)
    if holder is not None:
        raise UserError(
            f"run {work_dir} is in use by process {holder['pid']} on {holder['host']}; "
            f"wait for it or stop it (if it is gone, remove {lock})"
        )


@contextlib.contextmanager
def hold(work_dir: Path) -> Iterator[Path]:
    """Hold the lock of ``work_dir`` (created if needed) for the duration of the block."""
    lock = work_dir / LOCK_FILE
    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            check_free(work_dir)
            lock.unlink(missing_ok=True)  # stale: its process is gone
    else:
        check_free(work_dir)
        raise UserError(f"cannot take the lock {lock}: another launch took it at the same time")
    with os.fdopen(fd, "w") as f:
        f.write(record)
    try:
        yield lock
    finally:
        with contextlib.suppress(OSError):
            if lock.read_text() == record:
                lock.unlink()
