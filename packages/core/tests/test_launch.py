"""What the re-launch forwards to the processes it starts."""

from __future__ import annotations

from vq.core.launch import without_nproc


def test_nproc_is_not_forwarded() -> None:
    argv = ["name", "cfg.py", "--nproc", "2", "--config-options", "a:1", "--nproc=4", "--autocast"]
    assert without_nproc(argv) == ["name", "cfg.py", "--config-options", "a:1", "--autocast"]
