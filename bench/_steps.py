"""What the training-iteration benches (``train_step.py``, ``vqkd_step.py``) share: their
common arguments, the ``Run`` flags of a mode, a batch on the device, the timing of a step
(which ``precision.py`` uses too) and the speed-ups over fp32 within one tree."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch

from vq.core.loop import Run, to_device
from vq.train.data import collate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1])
    parser.add_argument("--steps", type=int, default=2, help="timed repeats after a warm-up")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--compile", action="store_true", help="also time --compile")


def set_threads(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)


def can_compile() -> bool:
    """Whether the measured tree's ``Run`` has ``--compile`` (REV's may not)."""
    return "compile_enabled" in Run.__dataclass_fields__


def run_flags(**mode: bool) -> dict[str, bool]:
    """The ``Run`` keyword arguments of a mode (``autocast``, ``compile``)."""
    flags = {"autocast_enabled": mode.get("autocast", False)}
    if mode.get("compile"):
        flags["compile_enabled"] = True
    return flags


def device_batch(dataset: Any, size: int, device: torch.device) -> dict[str, Any]:
    """The first ``size`` samples of ``dataset`` (repeated if it is smaller), collated."""
    return to_device(collate([dataset[i % len(dataset)] for i in range(size)]), device)


def seconds(function: Callable[[], object], device: torch.device) -> float:
    """Wall time of one call, the device's queue drained before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def median_seconds(function: Callable[[], object], repeats: int, device: torch.device) -> float:
    function()  # warm-up (and compilation)
    return statistics.median(seconds(function, device) for _ in range(repeats))


def report_over_fp32(metrics: dict[str, float], variants: Iterable[str]) -> None:
    """For each ``... fp32 s/iter`` metric, the speed-up of each ``variant`` measured."""
    variants = tuple(variants)
    print(f"\nthis tree: {', '.join(variants)} over fp32 (speed-up)")
    for key, value in metrics.items():
        if key.endswith(" fp32 s/iter"):
            base = key.removesuffix(" fp32 s/iter")
            for variant in variants:
                if f"{base} {variant} s/iter" in metrics:
                    print(f"  {base} {variant}: {value / metrics[f'{base} {variant} s/iter']:.2f}x")
