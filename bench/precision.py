"""What each compute dtype costs on this machine: the ops that bound our models, per dtype.

A linear layer at a few row counts (decoding reads one row per image and guidance branch;
training and FID-batch sampling many) and a 3x3 convolution at the size of the VQGAN's
middle stages, each with weights and inputs in fp32, bf16 and fp16, timed in one process
with the dtypes alternating (median of ``--repeats``). The ratio to fp32 is what ``sample
--dtype``, ``--tokenizer-dtype`` and ``--autocast`` gain or lose here. It also prints what
``vq.core.amp.cpu_has_kernels`` answers, the check behind the warning a run logs when a CPU
has no kernels for the dtype it asks for.

    uv run python bench/precision.py --threads 2
    ONEDNN_MAX_CPU_ISA=AVX2 uv run python bench/precision.py --threads 2   # an AVX2-only CPU
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from vq.core import amp

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ when imported by path
from _steps import seconds

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cases(
    device: torch.device, rows: list[int], dtypes: list[str]
) -> dict[str, dict[str, Callable[[], object]]]:
    """Op name -> dtype -> one call of the op on inputs and weights in that dtype."""
    shapes: dict[str, tuple[Callable[..., object], tuple, tuple, dict]] = {
        # (m, 768) @ (768, 2048): a LLaMA-B gate projection
        f"linear {m}x768 @ 768x2048": (F.linear, (m, 768), (2048, 768), {})
        for m in rows
    }
    shapes["conv3x3 128ch 64x64"] = (F.conv2d, (1, 128, 64, 64), (128, 128, 3, 3), {"padding": 1})
    g = torch.Generator().manual_seed(0)
    out: dict[str, dict[str, Callable[[], object]]] = {}
    for name, (op, x_shape, w_shape, options) in shapes.items():
        x, w = torch.randn(x_shape, generator=g), torch.randn(w_shape, generator=g) * 0.02
        out[name] = {
            d: functools.partial(op, x.to(device, DTYPES[d]), w.to(device, DTYPES[d]), **options)
            for d in dtypes
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--rows", type=int, nargs="+", default=[2, 16, 64])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=list(DTYPES))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    if device.type == "cpu":
        print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}; fast kernels: ", end="")
        print(", ".join(f"{n} {amp.cpu_has_kernels(DTYPES[n])}" for n in args.dtypes))

    ops = cases(device, args.rows, args.dtypes)
    times: dict[tuple[str, str], list[float]] = {}
    for name, calls in ops.items():
        for call in calls.values():
            call()  # warm-up
        for _ in range(args.repeats):  # the dtypes alternate within each repeat
            for dtype, call in calls.items():
                times.setdefault((name, dtype), []).append(seconds(call, device))

    width = max(map(len, ops))
    print(f"\n{'op':<{width}} " + " ".join(f"{d + ' ms':>10} {'x fp32':>7}" for d in args.dtypes))
    for name in ops:
        ms = {d: statistics.median(times[name, d]) * 1e3 for d in args.dtypes}
        base = ms.get("fp32")
        cells = [f"{ms[d]:>10.3f} {ms[d] / base if base else float('nan'):>7.2f}" for d in ms]
        print(f"{name:<{width}} " + " ".join(cells))
    print("\nx fp32: time relative to fp32 (below 1 is faster)")


if __name__ == "__main__":
    main()
