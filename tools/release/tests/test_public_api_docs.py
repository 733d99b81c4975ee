"""Each package README's "Public API" section names everything its API snapshot
(``packages/<name>/tests/public_api.json``) holds, so the docs list what the tests guard."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PACKAGES = ("core", "tokenizers", "decoders", "generators", "train")


def snapshot_names(package: str) -> set[str]:
    """The public names of the snapshot: those of its ``vq.*`` modules, or for vq-train
    its commands and trainers."""
    snapshot = json.loads((REPO / "packages" / package / "tests" / "public_api.json").read_text())
    return {name for section, names in snapshot.items() if section != "pretrained directory"
            for name in names}  # fmt: skip


@pytest.mark.parametrize("package", PACKAGES)
def test_the_readme_lists_the_public_api_its_snapshot_guards(package: str) -> None:
    readme = (REPO / "packages" / package / "README.md").read_text()
    assert "\n## Public API\n" in readme, f"packages/{package}/README.md has no Public API section"
    section = readme.split("\n## Public API\n", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`([\w.-]+)`", section))
    names = snapshot_names(package)
    assert len(names) >= 5
    assert sorted(names - listed) == [], f"packages/{package}/README.md, Public API"
