"""Count the places where Python reads a tensor's values back to the host.

Every such read (``t.item()``, ``float(t)``, ``if t:``, ``t.tolist()``, ...) of a tensor on
an accelerator waits until the device has run everything queued before it. A hot loop
should do this once per log interval, not once per value::

    with count_host_reads() as reads:
        train(run, trainer)
    print(len(reads), reads.sites())  # how many, and from which lines

Only reads made from Python are seen: a C++ operator that syncs internally (e.g.
``torch.bincount`` or a boolean mask index on CUDA) needs
``torch.cuda.set_sync_debug_mode("warn")`` on a GPU instead. On CPU the counter counts
every read, since all tensors live on the host there.
"""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import torch

# Tensor methods that hand values to Python.
READS = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__", "__complex__")
# Methods that copy to the host only when the tensor is elsewhere.
MOVES = ("cpu",)


class HostReads:
    """The reads seen so far: ``(method, "file:line")`` of each, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self._depth = 0  # reads made by a read (e.g. __format__ -> item) count once
        self._paused = 0

    def __len__(self) -> int:
        return len(self.calls)

    def sites(self) -> Counter[str]:
        """How often each ``method@file:line`` read."""
        return Counter(f"{method}@{site}" for method, site in self.calls)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Reads inside this block are not counted (e.g. writing a checkpoint)."""
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    def _wrap(self, name: str, original: Callable[..., Any], only_off_host: bool) -> Any:
        def counted(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if self._depth or self._paused or (only_off_host and tensor.device.type == "cpu"):
                return original(tensor, *args, **kwargs)
            caller = sys._getframe(1)
            self.calls.append((name, f"{caller.f_code.co_filename}:{caller.f_lineno}"))
            self._depth += 1
            try:
                return original(tensor, *args, **kwargs)
            finally:
                self._depth -= 1

        return counted


@contextlib.contextmanager
def count_host_reads() -> Iterator[HostReads]:
    """Count the host reads of every tensor while the block runs (not thread-safe)."""
    reads = HostReads()
    names = READS + MOVES
    originals = {name: getattr(torch.Tensor, name) for name in names}
    own = {name for name in names if name in vars(torch.Tensor)}  # the rest is inherited
    try:
        for name, original in originals.items():
            setattr(torch.Tensor, name, reads._wrap(name, original, name in MOVES))
        yield reads
    finally:
        for name, original in originals.items():
            if name in own:
                setattr(torch.Tensor, name, original)
            else:
                delattr(torch.Tensor, name)
