"""Host memory: keep what a training step frees for the next step instead of returning it.

glibc's ``malloc`` serves each block above its mmap threshold (which adapts, but never past
32 MiB on 64-bit systems) with a fresh ``mmap`` and unmaps it again on ``free``. A conv
autoencoder at 256 px has many activations of at least that size (one (1, 128, 256, 256)
fp32 map is exactly 32 MiB, plus the allocator's header), and autograd keeps them alive
until the backward: every iteration the kernel maps, zeroes and page-faults them anew, 8192
faults per 32 MiB. In the VQGAN 8192_dd2 iteration at 256 px on a 2-core CPU that made the
autoencoder's forward take twice as long with autograd as without (``bench/train_step.py``,
docs/performance.md).

:func:`keep_freed_host_memory` tells glibc to serve every block from its heap (no per-block
``mmap``) and never to trim the heap, so freed activations are reused by the next
iteration: the process keeps its peak memory instead of handing it back and forth. The
commands call it before they run; nothing changes where malloc is not glibc's, or where the
user tunes glibc's malloc themselves (``GLIBC_TUNABLES`` with ``glibc.malloc.*``, or the
``MALLOC_*_`` environment variables).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

from vq.core.logging import LOGGER

# mallopt(3) parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_USER_SETTINGS = (
    "MALLOC_MMAP_MAX_",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
)


def user_tunes_malloc(environ: dict[str, str] | None = None) -> bool:
    """Whether the environment already sets glibc's malloc parameters."""
    env = os.environ if environ is None else environ
    return "glibc.malloc." in env.get("GLIBC_TUNABLES", "") or any(
        name in env for name in _USER_SETTINGS
    )


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """This process's C library if it is glibc (``gnu_get_libc_version`` exists)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None
    return libc


def keep_freed_host_memory() -> bool:
    """Serve large host blocks from glibc's heap and never trim it (module docstring).

    Returns whether the setting was applied: False where malloc is not glibc's or the
    environment tunes it already. Safe to call more than once; affects this process and
    the processes it forks afterwards (DataLoader workers).
    """
    if user_tunes_malloc():
        return False
    libc = _glibc()
    if libc is None:
        return False
    # -1 = never trim (mallopt(3)); 0 = no block gets its own mmap
    applied = libc.mallopt(_M_TRIM_THRESHOLD, -1) == 1 and libc.mallopt(_M_MMAP_MAX, 0) == 1
    if not applied:
        LOGGER.debug("mallopt refused the host-memory settings")
    return applied
