"""``--against REV`` for the bench scripts: the same measurement on this tree and on REV.

REV is checked out in a temporary ``git worktree`` (removed at exit, also on Ctrl-C). Each
measurement runs in a fresh subprocess of the calling script with ``--worker-json FILE``:
this tree's code as installed, REV's code through ``PYTHONPATH`` set to REV's
``packages/*/src`` (they come first on ``sys.path``, so ``vq.*`` resolves there; configs are
read from the tree named by ``$VQ_BENCH_TREE``). The two trees alternate, ABAB then BABA,
so drifting load on a shared machine hits both alike, and each value is the median of its
rounds.

A worker returns ``{metric: value}``; the unit at the end of a metric's name says which way
is better: ``.../s`` (images/s, tokens/s) is a rate, anything else (``s/iter``,
``ms/token``, ``s``, ``GiB``) a cost, lower being better. The printed ratio is above 1
where this tree is better: faster, or using less memory. A metric REV's code cannot
measure (a feature it lacks) is left out of its dict and shows as ``n/a``. Metrics named ``bound ...`` are the machine's
(memory-read bound of the run): printed, not compared.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TREE_ENV = "VQ_BENCH_TREE"
Metrics = dict[str, float]


def tree() -> Path:
    """The source tree whose configs a worker reads (REV's in an ``--against`` worker)."""
    return Path(os.environ.get(TREE_ENV, REPO))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--against",
        metavar="REV",
        help="also measure git revision REV (temporary worktree) and print the ratios",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="--against: alternating rounds per tree (median)"
    )
    parser.add_argument("--worker-json", type=Path, help=argparse.SUPPRESS)


def is_rate(metric: str) -> bool:
    return metric.endswith("/s")


def speedup(metric: str, ours: float, theirs: float) -> float:
    """How many times better this tree is (> 1: faster, or less memory)."""
    return ours / theirs if is_rate(metric) else theirs / ours


@contextlib.contextmanager
def worktree(rev: str) -> Iterator[Path]:
    """REV checked out (detached) in a temporary directory, removed afterwards."""
    # a terminated run (kill PID) unwinds through the finally below like Ctrl-C does
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    folder = Path(tempfile.mkdtemp(prefix="vq-bench-"))
    path = folder / "tree"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(path), rev],
        check=True,
    )
    try:
        yield path
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], check=False
        )
        subprocess.run(["git", "-C", str(REPO), "worktree", "prune"], check=False)
        with contextlib.suppress(OSError):
            folder.rmdir()


def run_worker(script: Path, argv: list[str], source: Path | None) -> Metrics:
    """One measurement in a fresh process; ``source``: another tree's checkout (None: this)."""
    env = dict(os.environ)
    if source is not None:
        src = [str(p) for p in sorted((source / "packages").glob("*/src"))]
        env["PYTHONPATH"] = os.pathsep.join([*src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env[TREE_ENV] = str(source)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "metrics.json"
        command = [sys.executable, str(script), *argv, "--worker-json", str(out)]
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())


def strip_against(argv: list[str]) -> list[str]:
    """``argv`` without ``--against REV`` / ``--rounds N`` (the workers measure one tree)."""
    out, skip = [], 0
    for arg in argv:
        if skip:
            skip -= 1
        elif arg in ("--against", "--rounds"):
            skip = 1
        elif not arg.startswith(("--against=", "--rounds=")):
            out.append(arg)
    return out


def compare(script: Path, rev: str, rounds: int, argv: list[str]) -> tuple[Metrics, Metrics]:
    """Medians of ``rounds`` alternating measurements: (this tree, REV)."""
    argv = strip_against(argv)
    runs: dict[str, list[Metrics]] = {"this": [], rev: []}
    with worktree(rev) as other:
        sources = {"this": None, rev: other}
        for r in range(rounds):
            order = ["this", rev] if r % 2 == 0 else [rev, "this"]
            for label in order:
                print(f"round {r + 1}/{rounds}: {label}", file=sys.stderr, flush=True)
                runs[label].append(run_worker(script, argv, sources[label]))
    return median_metrics(runs["this"]), median_metrics(runs[rev])


def median_metrics(runs: list[Metrics]) -> Metrics:
    names = {name for run in runs for name in run}
    return {n: statistics.median(run[n] for run in runs if n in run) for n in sorted(names)}


def print_comparison(ours: Metrics, theirs: Metrics, rev: str, order: list[str]) -> None:
    """Both trees' medians and how many times better this tree is, one metric per line."""
    names = [n for n in order if n in ours or n in theirs]
    names += sorted((ours.keys() | theirs.keys()) - set(names))
    width = max(len(n) for n in names)
    head = f"{'metric':<{width}} {'this':>10} {rev[:10]:>10} {'ratio':>9}"
    print(head)
    print("-" * len(head))
    for n in names:
        a, b = ours.get(n), theirs.get(n)
        ratio = (
            "" if n.startswith("bound") or a is None or b is None else f"{speedup(n, a, b):.2f}x"
        )
        shown = [f"{v:>10.4g}" if v is not None else f"{'n/a':>10}" for v in (a, b)]
        print(f"{n:<{width}} {shown[0]} {shown[1]} {ratio:>9}")


def print_metrics(metrics: Metrics) -> None:
    """One tree's metrics, one per line (no ``--against``)."""
    width = max(len(n) for n in metrics)
    for name, value in metrics.items():
        print(f"{name:<{width}} {value:>10.4g}")


def peak_rss_bytes() -> int:
    """The most resident memory this process has held so far, in bytes."""
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def run_as_commands_do() -> None:
    """Set up this process the way the measured tree's commands set up theirs: since
    ``vq.core.host_memory`` exists, they keep the host memory they free; a tree older
    than it (no such module on ``PYTHONPATH``) runs with glibc's defaults, as its
    commands did."""
    try:
        from vq.core.host_memory import keep_freed_host_memory
    except ImportError:
        return
    keep_freed_host_memory()


def main(
    args: argparse.Namespace,
    script: str,
    measure: Callable[[argparse.Namespace], Metrics],
    report: Callable[[Metrics], None],
) -> None:
    """Measure and print: this tree alone, both trees (``--against``), or as a worker
    (``--worker-json``, nothing printed)."""
    if args.against is None:
        run_as_commands_do()
    if args.worker_json is not None:
        args.worker_json.write_text(json.dumps(measure(args)))
        return
    if args.against is None:
        metrics = measure(args)
        print_metrics(metrics)
        report(metrics)
        return True
    ours, theirs = compare(Path(script).resolve(), args.against, args.rounds, sys.argv[1:])
    print(f"medians of {args.rounds} alternating rounds per tree; this = {REPO}")
    print_comparison(ours, theirs, args.against, list(ours))
    report(ours)
