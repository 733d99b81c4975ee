"""Nearest-code search: our chunked matmul search against ``torch.cdist`` + ``argmin``.

For N inputs and K codes, ``cdist`` materialises the full (N, K) distance matrix (2 GiB in
fp32 for N = 65536, K = 8192); the chunked search holds (chunk_rows, K) at a time. Each
measurement runs in a fresh process so that peak memory is its own: peak RSS growth on CPU,
peak allocated memory on CUDA. Time is the median of ``--repeats`` runs after one warm-up.

    uv run python bench/quantizers.py                     # CPU, the two reference shapes
    uv run python bench/quantizers.py --device cuda --repeats 10
    uv run python bench/quantizers.py --against fc5df97   # our search here and in a revision

With ``--against REV`` only our chunked search is measured, in this tree and in REV's
(``bench/_against.py``: alternating fresh processes, medians), as ``<case> search s``.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from vq.tokenizers.quantizers import nearest_codes

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ when imported by path
import _against

# The codebooks the reference trains: VQ-KD (cosine, 32-d) and VQGAN (L2, 256-d).
CASES = {"cosine-32": ("cosine", 32), "l2-256": ("l2", 256)}


@dataclass
class Measurement:
    seconds: float
    peak_mib: float
    indices: bytes  # torch.save of the (N,) result, to compare methods


def current_rss_bytes() -> int:
    """Resident memory now (Linux); 0 elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:
        return 0


def search(method: str, x: torch.Tensor, codebook: torch.Tensor, distance: str, chunk: int):
    if method == "chunked":
        return nearest_codes(x, codebook, distance, chunk).indices  # type: ignore[arg-type]
    if distance == "cosine":  # on unit vectors, |x - e|^2 = 2 - 2 cos(x, e)
        x, codebook = F.normalize(x, dim=1), F.normalize(codebook, dim=1)
    return torch.cdist(x, codebook).argmin(1)


def measure(args: argparse.Namespace, case: str, method: str, queue: mp.SimpleQueue) -> None:
    """Runs in a fresh process: inputs, one run for peak memory, then timed repeats."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    distance, dim = CASES[case]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.rows, dim, generator=g).to(device)
    codebook = torch.randn(args.codes, dim, generator=g).to(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    search(method, x[:64], codebook[:64], distance, args.chunk_rows)  # load kernels, pools
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = current_rss_bytes()
    indices = search(method, x, codebook, distance, args.chunk_rows)  # warm-up
    sync()
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - base
    else:
        peak = _against.peak_rss_bytes() - base

    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        search(method, x, codebook, distance, args.chunk_rows)
        sync()
        times.append(time.perf_counter() - start)
    buffer = io.BytesIO()
    torch.save(indices.cpu(), buffer)
    queue.put(Measurement(statistics.median(times), peak / 2**20, buffer.getvalue()))


def run_isolated(args: argparse.Namespace, case: str, method: str) -> Measurement:
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    process = ctx.Process(target=measure, args=(args, case, method, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def against_metrics(args: argparse.Namespace) -> _against.Metrics:
    """Seconds of our chunked search per case (what ``--against`` compares)."""
    return {f"{case} search s": run_isolated(args, case, "chunked").seconds for case in args.cases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default: cpu)")
    parser.add_argument("--rows", type=int, default=65536, help="N inputs (default: 65536)")
    parser.add_argument("--codes", type=int, default=8192, help="K codes (default: 8192)")
    parser.add_argument("--chunk-rows", type=int, default=4096, help="rows per search chunk")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after a warm-up")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    _against.add_arguments(parser)
    args = parser.parse_args()
    if args.against is not None or args.worker_json is not None:
        _against.main(args, __file__, against_metrics, lambda metrics: None)
        return

    print(
        f"N={args.rows} K={args.codes} device={args.device} chunk_rows={args.chunk_rows} "
        f"threads={args.threads or torch.get_num_threads()} repeats={args.repeats}"
    )
    header = f"{'case':<10} {'method':<14} {'time (s)':>9} {'peak (MiB)':>11}"
    print(header)
    print("-" * len(header))
    summary = []
    for case in args.cases:
        results = {}
        for method in ("chunked", "cdist+argmin"):
            results[method] = run_isolated(args, case, method)
            r = results[method]
            print(f"{case:<10} {method:<14} {r.seconds:>9.3f} {r.peak_mib:>11.1f}")
        ours, brute = results["chunked"], results["cdist+argmin"]
        a = torch.load(io.BytesIO(ours.indices), weights_only=True)
        b = torch.load(io.BytesIO(brute.indices), weights_only=True)
        time_ratio = brute.seconds / ours.seconds
        memory_ratio = brute.peak_mib / max(ours.peak_mib, 1e-3)
        summary.append((case, time_ratio, memory_ratio, (a == b).float().mean().item()))
    print()
    print(f"{'case':<10} {'time cdist/ours':>16} {'memory cdist/ours':>18} {'same index':>11}")
    for case, time_ratio, memory_ratio, agreement in summary:
        print(f"{case:<10} {time_ratio:>16.2f} {memory_ratio:>18.1f} {agreement:>11.4%}")


if __name__ == "__main__":
    main()
