"""vq-train's public API (README, "Public API"): its commands with their arguments (the
usage line of each command's --help) and its trainers, against public_api.json."""

from __future__ import annotations

import re
import sys
from importlib.metadata import distribution
from pathlib import Path

import pytest

from vq.core.api_snapshot import check_api_snapshot


def usage(entry_point, monkeypatch: pytest.MonkeyPatch, capsys) -> str:
    """The usage line of a command, on one line whatever the terminal."""
    monkeypatch.setenv("COLUMNS", "100000")
    monkeypatch.setattr(sys, "argv", [entry_point.name, "--help"])
    with pytest.raises(SystemExit) as done:
        entry_point.load()()
    assert done.value.code == 0
    text = capsys.readouterr().out
    return re.sub(r"\s+", " ", text.split("\n\n")[0]).strip()


def test_the_commands_and_trainers_match_their_snapshot(monkeypatch, capsys) -> None:
    points = distribution("vq-train").entry_points
    commands = sorted((p for p in points if p.group == "console_scripts"), key=lambda p: p.name)
    api = {
        "commands": {p.name: usage(p, monkeypatch, capsys) for p in commands},
        "vq.trainers": {p.name: p.value for p in points if p.group == "vq.trainers"},
    }
    assert {"train", "val", "test", "sample", "export"} <= set(api["commands"])
    assert api["commands"]["train"].startswith("usage: train ")
    check_api_snapshot(api, Path(__file__).with_name("public_api.json"), "vq-train")
