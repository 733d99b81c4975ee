"""One launch per run, and worker ranks that die with their launcher."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vq.core.runlock import LOCK_FILE
from vq.train.cli import train_main

CONFIG = Path(__file__).parent / "configs" / "toy.py"


def argv(work: Path, *options: str) -> list[str]:
    return ["run", str(CONFIG), "--work-dirs", str(work), "--config-options", "iters:2", *options]


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_live_holder_refuses_the_launch_and_a_stale_lock_is_taken_over(
    tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    lock = run / LOCK_FILE
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    assert train_main(argv(tmp_path)) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"error: run {run} is in use by process {os.getpid()}")
    assert sorted(p.name for p in run.iterdir()) == [LOCK_FILE]  # nothing else written

    lock.write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname()}))
    assert train_main(argv(tmp_path)) == 0
    assert not lock.exists()  # released when the run ended
    assert (run / "checkpoints" / "latest").exists()


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().split()[2]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_killing_the_launcher_group_ends_every_rank(tmp_path: Path) -> None:
    work = tmp_path / "work"
    command = [sys.executable, "-m", "vq.train", *argv(work, "iters:10000", "sleep:0.05")]
    launcher = subprocess.Popen(
        [*command, "--nproc", "2"],
        start_new_session=True,  # its own process group, as a shell job would have
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while len(processes_mentioning(str(work))) < 4:  # launcher, agent, two ranks
            assert time.monotonic() < deadline, "the ranks did not start"
            assert launcher.poll() is None, "the launcher ended early"
            time.sleep(0.5)
        while not (work / "run" / LOCK_FILE).exists():
            assert time.monotonic() < deadline, "rank 0 never took the lock"
            time.sleep(0.5)
        os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait()
        deadline = time.monotonic() + 30
        while processes_mentioning(str(work)):
            assert time.monotonic() < deadline, f"orphans: {processes_mentioning(str(work))}"
            time.sleep(0.5)
    finally:
        for pid in processes_mentioning(str(work)):
            os.kill(pid, signal.SIGKILL)
    assert (work / "run" / LOCK_FILE).exists()  # left by the killed rank 0: stale now
    assert train_main(argv(work, "sleep:0.05", "--auto-resume")) == 0
