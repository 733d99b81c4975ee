"""Sampling speed of the proposal networks: AR (LLaMA, static KV cache) in fp32 / bf16 /
compiled against the memory-read bound, and NAR (MaskGIT, 12 parallel steps) against AR.

    uv run python bench/sampling.py                               # CPU, preset B, fp32 + bf16
    uv run python bench/sampling.py --against fc5df97 --rounds 3  # ratios against a revision
    uv run python bench/sampling.py --device cuda --batches 1 64 --compile --cached-tokens 256

Every row is about 16x16 grids (256 image tokens) of a 1000-class, 8192-code model with
classifier-free guidance 1.75, i.e. the network runs on 2 x batch rows. Whole grids are too
slow to time on a shared CPU, so each row times a part and extrapolates (names marked ``~``):

* AR: ``generate`` of the first ``--cached-tokens`` tokens of a grid. A cached step feeds
  one token, so it costs about the same at any position: the grid is 256/n x the time.
* NAR: one decoding step (a full forward over 2 x batch grids of 256 cells plus the
  draw and the reveal), times ``--nar-steps``: every step does the same work.

The bound is the time to stream the weights once per step at the memory bandwidth measured
in the same process with a large tensor copy (the token embedding is excluded: a step reads
only its rows). A decoder at batch 1 cannot beat it; larger batches amortise the weights
over more rows and become compute bound. ``images/s`` at the best batch is what the 50k-
image FID protocol needs.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

import vq.generators
from vq.generators.llama import Llama
from vq.generators.sampling import generate

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ when imported by path
import _against

NUM_CLASSES, CODEBOOK, GRID = 1000, 8192, 16
GRID_TOKENS = GRID * GRID
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn: Callable[[], object], device: torch.device, repeats: int = 1) -> float:
    """Best wall time of ``repeats`` calls after one warm-up call (compiles, if any)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def memory_bandwidth(device: torch.device, mib: int = 512) -> float:
    """Bytes/s of a large device-to-device copy (each byte is read once and written once)."""
    src = torch.empty(mib * 2**20, dtype=torch.uint8, device=device).random_()
    dst = torch.empty_like(src)
    return 2 * src.numel() / seconds(lambda: dst.copy_(src), device, repeats=5)


def can_compile_step() -> bool:
    """Whether this tree's ``generate`` has the compiled one-token step."""
    return "compile" in inspect.signature(generate).parameters


def ar_grid_seconds(
    model: Llama, batch: int, args: argparse.Namespace, compile: bool, device: torch.device
) -> float:
    """~Seconds to sample ``batch`` whole grids (timed on the first ``--cached-tokens``)."""
    classes = torch.arange(batch, device=device) % NUM_CLASSES
    generator = torch.Generator(device).manual_seed(0)
    flags = {"compile": True} if compile else {}
    n = args.cached_tokens
    timed = seconds(
        lambda: generate(
            model,
            classes,
            (1, n),
            CODEBOOK,
            NUM_CLASSES,  # one row of n: the grid's top
            guidance_scale=1.75,
            generator=generator,
            **flags,
        ),
        device,
        args.repeats,
    )
    return timed * GRID_TOKENS / n


def nar_grid_seconds(
    preset: str, dtype: torch.dtype, batch: int, args: argparse.Namespace, device: torch.device
) -> float | None:
    """~Seconds for ``batch`` NAR grids: one timed decoding step x ``--nar-steps``; None
    where the tree has no NAR network."""
    if not hasattr(vq.generators, "MaskGIT"):
        return None
    from vq.generators.parallel_decoding import parallel_decode

    torch.manual_seed(0)
    model = vq.generators.MaskGIT.from_preset(
        preset, codebook_size=CODEBOOK, num_classes=NUM_CLASSES, grid=(GRID, GRID)
    )
    model = model.to(device=device, dtype=dtype).eval()
    classes = torch.arange(batch, device=device) % NUM_CLASSES
    generator = torch.Generator(device).manual_seed(0)
    one_step = seconds(
        lambda: parallel_decode(
            model, classes, num_steps=1, guidance_scale=1.75, generator=generator
        ),
        device,
        args.repeats,
    )
    return one_step * args.nar_steps


def measure(args: argparse.Namespace) -> _against.Metrics:
    device = torch.device(args.device)
    bandwidth = memory_bandwidth(device)
    out: _against.Metrics = {"bound memory GB/s": bandwidth / 1e9}
    for preset in args.presets:
        for name in args.dtypes:
            dtype = DTYPES[name]
            torch.manual_seed(0)
            model = Llama.from_preset(preset, vocab_size=NUM_CLASSES + 1 + CODEBOOK)
            model = model.to(device=device, dtype=dtype).eval()
            params = sum(p.numel() for p in model.parameters())
            streamed = (params - model.embed_tokens.weight.numel()) * dtype.itemsize
            out[f"bound {preset} {name} b1 ms/token"] = 1e3 * streamed / bandwidth
            variants = [False] + ([True] if args.compile and can_compile_step() else [])
            for compiled in variants:
                tag = f"{preset} {name}{'+compile' if compiled else ''}"
                for batch in args.batches:
                    grid = ar_grid_seconds(model, batch, args, compiled, device)
                    out[f"{tag} b{batch} ~ms/token"] = 1e3 * grid / GRID_TOKENS
                    out[f"{tag} b{batch} ~images/s"] = batch / grid
            del model
            if args.nar:
                for batch in args.nar_batches or args.batches:
                    nar = nar_grid_seconds(preset, dtype, batch, args, device)
                    if nar is not None:
                        out[f"{preset} {name} b{batch} NAR{args.nar_steps} ~images/s"] = batch / nar
    return out


def report(metrics: _against.Metrics) -> None:
    """This tree's derived numbers: x bound at batch 1, best batch, NAR over AR."""
    print("\nthis tree: batch-1 decode over the memory-read bound, best batch, NAR / AR")
    for key, bound in metrics.items():
        if not key.startswith("bound ") or not key.endswith("b1 ms/token"):
            continue
        preset, dtype = key.split()[1:3]
        for tag in (f"{preset} {dtype}", f"{preset} {dtype}+compile"):
            if f"{tag} b1 ~ms/token" in metrics:
                ms = metrics[f"{tag} b1 ~ms/token"]
                rates = {k: v for k, v in metrics.items() if k.startswith(tag + " b")}
                rates = {k: v for k, v in rates.items() if k.endswith("~images/s")}
                rates = {k: v for k, v in rates.items() if " NAR" not in k}
                best = max(rates, key=rates.__getitem__)
                print(
                    f"  {tag:<18} b1 {ms:8.1f} ms/token = {ms / bound:5.2f}x bound "
                    f"({bound:.1f} ms); best {best.split()[-2]}: {rates[best]:.3f} images/s"
                )
    for key, value in metrics.items():
        if " NAR" in key:
            ar = key.split(" NAR")[0] + " ~images/s"
            if ar in metrics:
                print(f"  {key}: {value:.3f} = {value / metrics[ar]:.1f}x AR's {metrics[ar]:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["fp32", "bf16"])
    parser.add_argument("--presets", nargs="+", default=["B"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--cached-tokens", type=int, default=8, help="AR tokens timed per grid")
    parser.add_argument("--compile", action="store_true", help="also time the compiled AR step")
    parser.add_argument("--nar", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--nar-steps", type=int, default=12, help="NAR decoding steps")
    parser.add_argument(
        "--nar-batches", nargs="+", type=int, help="batches of the NAR rows (default: --batches)"
    )
    parser.add_argument("--repeats", type=int, default=2, help="timed runs (best kept)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    _against.add_arguments(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device {args.device}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"grids {GRID}x{GRID}, vocab {NUM_CLASSES + 1 + CODEBOOK}, guidance 1.75 (2x rows)")
    _against.main(args, __file__, measure, report)


if __name__ == "__main__":
    main()
