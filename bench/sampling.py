"""Sampling speed of the LLaMA proposal network: KV cache vs full-prefix recomputation.

    uv run python bench/sampling.py                         # CPU, fp32, presets B and medium
    uv run python bench/sampling.py --device cuda --dtype bf16 --cached-tokens 256

Every row is about 16x16 grids (256 image tokens) of a 1000-class, 8192-code model (vocab
9193) with classifier-free guidance 1.75, i.e. the network runs on 2 x batch rows. Whole
grids are too slow to time on a shared CPU, so each row times a part and extrapolates to
256 tokens (columns marked ``~``):

* cached ("gen n tok"): ``generate`` of the first n tokens of a grid. A step feeds one
  token, so it costs about the same at any position: the grid is 256/n x the time.
* uncached ("fwd 1,L"): step t re-runs the whole prefix of t tokens. One forward pass is
  timed at prefix 1 (weight bound) and at prefix L, where rows x L reaches --probe-tokens
  (compute bound); the step cost is taken as linear in t through the two points and summed
  over t = 1..256 (sampling itself, a few element-wise ops per step, is left out).

The bound is the time to stream the weights once per step at the memory bandwidth measured
here with a large tensor copy (the token embedding is excluded: a step reads only its rows);
"+KV" adds reading the cache of an average step (128 positions). A decoder at batch 1 can
not beat it; larger batches amortise the weights over more rows and become compute bound.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from vq.generators.llama import Llama
from vq.generators.sampling import generate

NUM_CLASSES, CODEBOOK, GRID = 1000, 8192, 16
GRID_TOKENS = GRID * GRID
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn: Callable[[], object], device: torch.device, repeats: int = 1) -> float:
    """Best wall time of ``repeats`` calls after one warm-up call."""
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


def grid_seconds(
    model: Llama, batch: int, tokens: int, use_cache: bool, device: torch.device, repeats: int
) -> float:
    """Best wall time of sampling the first ``tokens`` image tokens of ``batch`` grids."""
    classes = torch.arange(batch, device=device) % NUM_CLASSES
    generator = torch.Generator(device).manual_seed(0)
    return seconds(
        lambda: generate(
            model,
            classes,
            (1, tokens),  # one row of `tokens`: the same steps as the top of a 16x16 grid
            CODEBOOK,
            NUM_CLASSES,
            guidance_scale=1.75,
            generator=generator,
            use_cache=use_cache,
        ),
        device,
        repeats,
    )


def forward_seconds(
    model: Llama, rows: int, length: int, device: torch.device, repeats: int
) -> float:
    """Best wall time of one uncached forward pass over ``rows`` prefixes of ``length``."""
    tokens = torch.randint(0, model.vocab_size, (rows, length), device=device)
    with torch.no_grad():
        return seconds(lambda: model(tokens), device, repeats)


def uncached_grid_seconds(
    model: Llama, rows: int, device: torch.device, repeats: int, probe_tokens: int
) -> tuple[float, int]:
    """~Seconds for a whole grid without a cache, and the longest prefix actually timed.

    Step t re-runs a prefix of t tokens. Its cost is timed at t = 1 (weight bound) and at
    the t where ``rows * t`` reaches ``probe_tokens`` (compute bound), and taken as linear
    in t through those two points: the sum of a + c t over t = 1..256 is the grid.
    """
    long = min(max(probe_tokens // rows, 2), GRID_TOKENS)
    short_s = forward_seconds(model, rows, 1, device, repeats)
    long_s = forward_seconds(model, rows, long, device, repeats)
    c = max(long_s - short_s, 0.0) / (long - 1)
    a = short_s - c
    return a * GRID_TOKENS + c * GRID_TOKENS * (GRID_TOKENS + 1) / 2, long


def bench(args: argparse.Namespace) -> None:
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    bandwidth = memory_bandwidth(device)
    print(
        f"device {device}, {args.dtype}, {torch.get_num_threads()} threads, best of {args.repeats}"
    )
    print(f"memory bandwidth (copy of 512 MiB): {bandwidth / 1e9:.1f} GB/s")
    print(f"grids {GRID}x{GRID}, vocab {NUM_CLASSES + 1 + CODEBOOK}, guidance 1.75 (2x rows)")
    print("~ = extrapolated to a whole 16x16 grid from the timed part (see the docstring)\n")
    header = (
        f"{'preset':>6} {'params':>7} {'batch':>5} {'cache':>5} {'timed':>12} "
        f"{'~ms/token':>10} {'~images/s':>10} "
        f"{'bound ms':>9} {'+KV ms':>7} {'~x bound':>9}"
    )
    print(header)
    print("-" * len(header))
    summary = []
    for preset in args.presets:
        torch.manual_seed(0)
        model = Llama.from_preset(preset, vocab_size=NUM_CLASSES + 1 + CODEBOOK)
        model = model.to(device=device, dtype=dtype).eval()
        cfg, size = model.cfg, torch.finfo(dtype).bits // 8
        params = sum(p.numel() for p in model.parameters())
        streamed = (params - model.embed_tokens.weight.numel()) * size  # bytes read per step
        for batch in args.batches:
            rows = 2 * batch  # guidance doubles the batch
            kv = 2 * rows * (GRID_TOKENS // 2) * cfg.width * cfg.depth * size  # avg step
            bound_ms, bound_kv_ms = 1e3 * streamed / bandwidth, 1e3 * (streamed + kv) / bandwidth
            per_grid = {}
            for use_cache in (True, False):
                if use_cache:
                    n = args.cached_tokens
                    full = grid_seconds(model, batch, n, True, device, args.repeats)
                    full *= GRID_TOKENS / n
                    timed = f"gen {n} tok"
                else:
                    full, longest = uncached_grid_seconds(
                        model, rows, device, args.repeats, args.probe_tokens
                    )
                    timed = f"fwd 1,{longest}"
                per_grid[use_cache] = full
                ms_token = 1e3 * full / GRID_TOKENS
                print(
                    f"{preset:>6} {params / 1e6:>6.0f}M {batch:>5} {'yes' if use_cache else 'no':>5}"
                    f" {timed:>12} {ms_token:>10.1f} {batch / full:>10.3f}"
                    f" {bound_ms:>9.1f} {bound_kv_ms:>7.1f} {ms_token / bound_ms:>9.1f}"
                )
            summary.append((preset, batch, per_grid[False] / per_grid[True]))
    print("\nKV cache speed-up over full-prefix recomputation (whole 16x16 grid, ~):")
    for preset, batch, speedup in summary:
        print(f"  {preset:>6} batch {batch:>2}: {speedup:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--presets", nargs="+", default=["B", "medium"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--cached-tokens", type=int, default=8, help="tokens timed with cache")
    parser.add_argument(
        "--probe-tokens", type=int, default=512, help="rows x prefix of the long uncached probe"
    )
    parser.add_argument("--repeats", type=int, default=2, help="timed runs (best kept)")
    bench(parser.parse_args())


if __name__ == "__main__":
    main()
