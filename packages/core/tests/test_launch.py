"""What the re-launch forwards to the processes it starts, and a failed rendezvous."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from vq.core.launch import without_nproc


def test_nproc_is_not_forwarded() -> None:
    argv = ["name", "cfg.py", "--nproc", "2", "--config-options", "a:1", "--nproc=4", "--autocast"]
    assert without_nproc(argv) == ["name", "cfg.py", "--config-options", "a:1", "--autocast"]


def _rendezvous_error(rank: int, port: int) -> str:
    """What ``init_process_group`` raises for rank ``rank`` of 2 at ``127.0.0.1:port``
    (in a fresh interpreter: a failed join must not leave this one half-initialised)."""
    code = (
        "from vq.core import launch\n"
        "try:\n"
        "    launch.init_process_group(timeout_s=2)\n"
        "except launch.RendezvousError as e:\n"
        "    print(e)\n"
    )
    env = {
        **os.environ,
        "RANK": str(rank),
        "WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_a_failed_rendezvous_names_the_rank_and_the_address() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # rank 0 cannot serve the store on a port that is in use
        busy = _rendezvous_error(0, port)
    assert busy.startswith(f"rank 0 of 2 could not join the gloo process group at 127.0.0.1:{port}")
    assert "--master-addr/--master-port" in busy
    # rank 1 finds nobody at a port nothing listens on (the socket above is closed)
    alone = _rendezvous_error(1, port)
    assert alone.startswith(
        f"rank 1 of 2 could not join the gloo process group at 127.0.0.1:{port}"
    )


def _exit_command(join_group: bool, tmp_path) -> subprocess.CompletedProcess:
    """A command that logs to a file, prints, registers an atexit hook and ends with
    ``exit_command(3)``, in a fresh interpreter."""
    log = tmp_path / "run.log"
    code = (
        "import atexit, logging\n"
        "from vq.core import launch\n"
        f"logging.basicConfig(filename={str(log)!r}, level=logging.INFO)\n"
        "atexit.register(lambda: print('finalized'))\n"
        + ("launch.init_process_group()\nlaunch.destroy_process_group()\n" if join_group else "")
        + "logging.getLogger('vq').info('done')\n"
        "print('result', end='')\n"  # unflushed: no newline, stdout is a pipe
        "launch.exit_command(3)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_a_process_that_joined_a_group_exits_without_finalizing(tmp_path) -> None:
    # gloo's threads outlive destroy_process_group; a thread that drops a tensor while the
    # interpreter finalizes aborts the process, so such a process skips finalization
    done = _exit_command(True, tmp_path)
    assert done.returncode == 3, done.stderr[-2000:]
    assert done.stdout == "result"  # flushed, and no atexit hook ran
    assert "INFO:vq:done" in (tmp_path / "run.log").read_text()


def test_a_process_without_a_group_exits_normally(tmp_path) -> None:
    done = _exit_command(False, tmp_path)
    assert done.returncode == 3, done.stderr[-2000:]
    assert done.stdout == "resultfinalized\n"
    assert "INFO:vq:done" in (tmp_path / "run.log").read_text()
