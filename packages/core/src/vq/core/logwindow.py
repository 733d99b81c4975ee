"""The logged values of a training loop between two log lines, kept on the device.

Reading a tensor to the host (``.item()``, ``float(t)``, ``if t``) waits for every kernel
queued before it, so a loop that reads its losses every iteration keeps the GPU idle while
Python catches up. ``LogWindow`` sums each logged tensor on the device and tracks there
the first iteration that logged a NaN or Inf; the loop reads both once per log interval
(and once before a checkpoint that falls between two log lines).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class _Iteration:
    """What one iteration logged, kept until the window is read (for the NaN report)."""

    number: int
    keys: list[str]  # in the order the micro-batches reported them
    host: dict[str, float]  # mean of the Python floats, over the micro-batches reporting the key
    device: torch.Tensor  # (S,) mean of the tensors per slot, on the device


class LogWindow:
    """The logged values of the iterations since the last log line, without host reads.

    A key's window total is the sum over iterations of its mean over the micro-batches that
    reported it. Tensors are summed on the device, in one slot per key of ``totals`` (fp64,
    fp32 on MPS); Python floats (e.g. lr) on the host. ``read`` fetches the totals and the
    first iteration with a non-finite value in one transfer, ``first_bad`` the latter alone.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.dtype = torch.float32 if device.type == "mps" else torch.float64
        self.slots: dict[str, int] = {}
        self.totals = torch.zeros(0, dtype=self.dtype, device=device)  # (S,)
        self.bad_on_device = torch.zeros((), dtype=torch.long, device=device)  # 0: none yet
        self.bad_on_host = 0
        self._indices: dict[tuple[str, ...], torch.Tensor] = {}
        self._counts: dict[tuple[int, ...], torch.Tensor] = {}
        self._pending: list[tuple[tuple[str, ...], torch.Tensor]] = []
        self._host: dict[str, float] = {}
        self._reported: dict[str, int] = {}
        self.reset()

    def reset(self) -> None:
        self.totals.zero_()
        self.host_totals: dict[str, float] = {}
        self.keys: dict[str, None] = {}  # reported in the window, in order of first report
        self.iterations: list[_Iteration] = []

    def add(self, logs: dict[str, torch.Tensor | float]) -> None:
        """The values one micro-batch reported; its tensors are detached and stacked now,
        so no autograd graph outlives the micro-batch."""
        tensors = {k: v for k, v in logs.items() if isinstance(v, torch.Tensor)}
        for k, v in logs.items():
            self._reported[k] = self._reported.get(k, 0) + 1
            if not isinstance(v, torch.Tensor):
                self._host[k] = self._host.get(k, 0.0) + float(v)
        if tensors:
            values = [v.detach().reshape(()).to(self.device) for v in tensors.values()]
            # fp32 first, as values were always logged at fp32 precision
            self._pending.append((tuple(tensors), torch.stack(values).float().to(self.dtype)))

    def end_iteration(self, number: int) -> None:
        """Fold the micro-batches of iteration ``number`` into the window."""
        reported, host, pending = self._reported, self._host, self._pending
        self._reported, self._host, self._pending = {}, {}, []
        for keys, _ in pending:
            for k in keys:
                self.slots.setdefault(k, len(self.slots))
        if len(self.slots) > self.totals.numel():
            grow = len(self.slots) - self.totals.numel()
            self.totals = torch.cat([self.totals, self.totals.new_zeros(grow)])
        if len(pending) == 1 and pending[0][0] == tuple(self.slots):
            sums = pending[0][1]  # (S,) every slot reported once, in slot order
        else:
            sums = self.totals.new_zeros(len(self.slots))  # (S,)
            for keys, values in pending:
                sums.index_add_(0, self._index(keys), values)
        counts = tuple(reported.get(k, 1) for k in self.slots)
        step = sums if all(c == 1 for c in counts) else sums / self._count(counts)  # (S,)
        self.totals += step
        newly_bad = (self.bad_on_device == 0) & ~torch.isfinite(step).all()
        self.bad_on_device = torch.where(newly_bad, number, self.bad_on_device)
        host_means = {k: v / reported[k] for k, v in host.items()}
        if not self.bad_on_host and not all(map(math.isfinite, host_means.values())):
            self.bad_on_host = number
        for k, v in host_means.items():
            self.host_totals[k] = self.host_totals.get(k, 0.0) + v
        self.keys.update(dict.fromkeys(reported))
        self.iterations.append(_Iteration(number, list(reported), host_means, step))

    def _index(self, keys: tuple[str, ...]) -> torch.Tensor:
        if keys not in self._indices:  # one host-to-device copy per set of keys
            slots = [self.slots[k] for k in keys]
            self._indices[keys] = torch.tensor(slots, dtype=torch.long, device=self.device)
        return self._indices[keys]

    def _count(self, counts: tuple[int, ...]) -> torch.Tensor:
        if counts not in self._counts:
            self._counts[counts] = torch.tensor(counts, dtype=self.dtype, device=self.device)
        return self._counts[counts]

    def read(self) -> tuple[dict[str, float], int]:
        """The window mean of every key reported in the window, and ``first_bad``."""
        *totals, bad = torch.cat([self.totals, self.bad_on_device.reshape(1)]).tolist()
        n = len(self.iterations)
        means = {
            k: ((totals[self.slots[k]] if k in self.slots else 0.0) + self.host_totals.get(k, 0.0))
            / n
            for k in self.keys
        }
        return means, self._first(int(bad))

    def first_bad(self) -> int:
        """The first iteration that logged a NaN or Inf (0: none); one host read."""
        return self._first(int(self.bad_on_device.item()))

    def _first(self, bad_on_device: int) -> int:
        return min((b for b in (bad_on_device, self.bad_on_host) if b), default=0)

    def logged_at(self, number: int) -> dict[str, float]:
        """The values iteration ``number`` (of this window) logged; reads the device."""
        (it,) = [it for it in self.iterations if it.number == number]
        device = it.device.tolist()
        return {
            k: (device[self.slots[k]] if k in self.slots and self.slots[k] < len(device) else 0.0)
            + it.host.get(k, 0.0)
            for k in it.keys
        }
