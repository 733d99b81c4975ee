"""vq-core's public API (README, "Public API") against the checked-in public_api.json, and
the snapshot check itself: it names every added, removed and changed name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vq.core.api_snapshot import UPDATE, check_api_snapshot, public_api

MODULES = (
    "vq.core.config",
    "vq.core.errors",
    "vq.core.configfile",
    "vq.core.registry",
    "vq.core.checkpoint",
    "vq.core.tensorfiles",
    "vq.core.api_snapshot",
)


def test_the_public_api_matches_its_snapshot() -> None:
    api = public_api(MODULES)
    assert "load_config" in api["vq.core.configfile"] and "FORMAT" in api["vq.core.checkpoint"]
    check_api_snapshot(api, Path(__file__).with_name("public_api.json"), "vq-core")


def test_a_changed_api_fails_with_what_changed_and_how_to_accept_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(UPDATE, raising=False)
    snapshot = tmp_path / "public_api.json"
    old = {"m": {"kept": "def(x)", "gone": "def()", "f": {"class": "(a: 'int' = 1)"}}}
    snapshot.write_text(json.dumps(old))
    new = {"m": {"kept": "def(x)", "f": {"class": "(a: 'int' = 2)"}, "new": 3}}
    with pytest.raises(AssertionError) as failure:
        check_api_snapshot(new, snapshot, "vq-x")
    lines = str(failure.value).splitlines()
    assert lines[:4] == [
        "the public API of vq-x differs from public_api.json:",
        "  ~ m.f.class: \"(a: 'int' = 1)\" -> \"(a: 'int' = 2)\"",
        "  - m.gone (removed)",
        "  + m.new (added)",
    ]
    assert f"{UPDATE}=1 uv run pytest" in lines[4] and "CHANGELOG.md" in lines[4]
    check_api_snapshot(old, snapshot, "vq-x")  # the same API passes

    monkeypatch.setenv(UPDATE, "1")  # a deliberate change rewrites the snapshot
    check_api_snapshot(new, snapshot, "vq-x")
    monkeypatch.delenv(UPDATE)
    check_api_snapshot(new, snapshot, "vq-x")
    assert json.loads(snapshot.read_text()) == new
