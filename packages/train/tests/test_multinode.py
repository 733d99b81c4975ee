"""Two nodes on one host: two torchrun agents (c10d rendezvous, one gloo process each) train,
checkpoint, are killed, resume with --auto-resume, and end bit-identical to one node
running the same two processes through vq's own launcher."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_resume import _assert_identical, _command

ITERS = 10
KILL_AT = 4  # mid-epoch: 37 samples, global batch 8, epochs of 4 iterations
OPTIONS = ["--config-options", f"iters:{ITERS}", "checkpoint_interval:2"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def torchrun_nodes(name: str, work: Path, *extra: str) -> list[list[str]]:
    """The command of each of two agents meeting at a fresh localhost endpoint."""
    port = free_port()
    return [
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes",
            "2",
            "--node-rank",
            str(node),
            "--nproc-per-node",
            "1",
            "--rdzv-backend",
            "c10d",
            "--rdzv-endpoint",
            f"localhost:{port}",
            "--rdzv-id",
            name,
            "--rdzv-conf",
            f"is_host={int(node == 0)}",  # node 0 serves the rendezvous store
            *_command(name, work, *extra)[1:],  # "-m vq.train NAME CONFIG ..."
        ]
        for node in (0, 1)
    ]


def start(commands: list[list[str]], logs: Path) -> list[subprocess.Popen]:
    """Start each agent with its stderr in ``logs/node{i}.err`` (a file, not a pipe: an
    agent polled rather than drained must never block on a full pipe)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    logs.mkdir(parents=True, exist_ok=True)
    agents = []
    for node, command in enumerate(commands):
        with open(logs / f"node{node}.err", "w") as err:
            agents.append(
                subprocess.Popen(
                    command,
                    start_new_session=True,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    env=env,
                )
            )
    return agents


def finish(agents: list[subprocess.Popen], logs: Path, timeout: float = 240) -> list[str]:
    """Wait for both agents; when one fails, stop the other at once and show the failure
    (a surviving agent would otherwise wait in torchrun's exit barrier for minutes)."""
    deadline = time.monotonic() + timeout
    while any(agent.poll() is None for agent in agents):
        if any(agent.poll() not in (None, 0) for agent in agents):
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    stopped = [agent.poll() is None for agent in agents]
    for agent, stop in zip(agents, stopped):
        if stop:
            os.killpg(agent.pid, signal.SIGKILL)
            agent.wait()
    errors = [(logs / f"node{node}.err").read_text() for node in range(len(agents))]
    # the agents that failed on their own first: a stopped one only shows the consequence
    for node in sorted(range(len(agents)), key=lambda n: stopped[n]):
        code = agents[node].returncode
        why = "stopped by the test" if stopped[node] else f"exit {code}"
        assert code == 0, f"node {node} ({why}): {errors[node][-3000:]}"
    return errors


def kill_when_complete(agents: list[subprocess.Popen], checkpoint: Path) -> None:
    deadline = time.monotonic() + 240
    while not (checkpoint / "meta.json").is_file():
        assert all(a.poll() is None for a in agents), "the run ended before it could be killed"
        assert time.monotonic() < deadline, f"no {checkpoint} in time"
        time.sleep(0.02)
    for agent in agents:
        os.killpg(agent.pid, signal.SIGKILL)
        agent.wait()


@pytest.mark.slow
@pytest.mark.distributed
def test_two_torchrun_nodes_resume_bit_identically_to_one_node(tmp_path: Path) -> None:
    one_node = subprocess.run(
        _command("one_node", tmp_path, *OPTIONS, "--nproc", "2"),
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert one_node.returncode == 0, one_node.stderr[-3000:]

    slow = [*OPTIONS, "sleep:0.2"]  # so the kill lands before the run ends
    agents = start(torchrun_nodes("two_nodes", tmp_path, *slow), tmp_path / "first")
    kill_when_complete(agents, tmp_path / "two_nodes" / "checkpoints" / f"iter_{KILL_AT}")
    resumed_logs = tmp_path / "resumed"
    resumed = finish(
        start(torchrun_nodes("two_nodes", tmp_path, *slow, "--auto-resume"), resumed_logs),
        resumed_logs,
    )
    assert any("resumed from" in error for error in resumed)
    assert any("2 process(es)" in error for error in resumed)
    _assert_identical(
        tmp_path / "one_node" / "checkpoints" / f"iter_{ITERS}",
        tmp_path / "two_nodes" / "checkpoints" / f"iter_{ITERS}",
    )
