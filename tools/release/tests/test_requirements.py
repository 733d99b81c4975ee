"""Each library member declares a compatible range of the members it imports and every
distribution it imports, and no member it never imports (vq_release.requirements)."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.version import Version

from vq_release.requirements import imported_modules, workspace_problems
from vq_release.workspace import (
    breaking_successor,
    compatible_range,
    dependents,
    members,
    needed,
    with_range,
    with_version,
)

REPO = Path(__file__).resolve().parents[3]


def test_the_workspace_members_declare_what_they_import_in_compatible_ranges() -> None:
    found = members(REPO)
    assert set(found) == {"vq-core", "vq-tokenizers", "vq-decoders", "vq-generators", "vq-train"}
    assert workspace_problems(REPO) == []


def test_dependencies_point_one_way() -> None:
    found = members(REPO)
    assert needed("vq-core", found) == []
    assert needed("vq-decoders", found) == ["vq-core", "vq-tokenizers"]
    assert set(needed("vq-train", found)) == set(found) - {"vq-train"}
    assert dependents(["vq-generators"], found) == {"vq-generators", "vq-train"}
    assert dependents(["vq-core"], found) == set(found)


@pytest.mark.parametrize(
    ("version", "successor", "declared"),
    [("0.1.0", "0.2", ">=0.1,<0.2"), ("0.3.7", "0.4", ">=0.3,<0.4"), ("1.4.2", "2", ">=1.4,<2")],
)
def test_the_compatibility_policy(version: str, successor: str, declared: str) -> None:
    assert breaking_successor(Version(version)) == Version(successor)
    assert compatible_range(Version(version)) == declared


def test_rewriting_a_range_keeps_extras_markers_and_other_names() -> None:
    text = 'version = "0.1.0"\ndependencies = ["vq-core[train]>=0.1,<0.2", "vq-core-extra"]\n'
    rewritten = with_range(with_version(text, Version("0.1.1")), "vq-core", ">=0.2,<0.3")
    assert rewritten == (
        'version = "0.1.1"\ndependencies = ["vq-core[train]>=0.2,<0.3", "vq-core-extra"]\n'
    )


def write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def pyproject(name: str, version: str, dependencies: list[str], extras: str = "") -> str:
    listed = ", ".join(f'"{d}"' for d in dependencies)
    return f'[project]\nname = "{name}"\nversion = "{version}"\ndependencies = [{listed}]\n{extras}'


def test_relative_imports_resolve_against_the_importing_package(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "src/vq/a/__init__.py": "from . import b\n",
            "src/vq/a/sub/c.py": "from ..b import x\nfrom ...core import y\n",
        },
    )
    uses = imported_modules(tmp_path / "src", tmp_path)
    assert [(u.where, u.module) for u in uses] == [
        ("src/vq/a/__init__.py:1", "vq.a"),
        ("src/vq/a/sub/c.py:1", "vq.a.b"),
        ("src/vq/a/sub/c.py:2", "vq.core"),
    ]


def test_the_check_names_each_wrong_requirement(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "packages/core/pyproject.toml": pyproject("vq-core", "0.2.1", ["numpy"]),
            "packages/core/src/vq/core/x.py": "import numpy\nimport json\n",
            # A range that excludes core 0.2.1, an open range, an undeclared third-party
            # import inside a function, a member declared and never imported; yaml is
            # declared by an extra, tensorboard is needed by torch.utils.tensorboard.
            "packages/tokenizers/pyproject.toml": pyproject(
                "vq-tokenizers",
                "0.1.0",
                ["vq-core>=0.1,<0.2", "vq-generators>=0.1", "torch"],
                '[project.optional-dependencies]\nfiles = ["pyyaml"]\n',
            ),
            "packages/tokenizers/src/vq/tokenizers/__init__.py": (
                "from vq.core import x\nimport yaml\n\n\ndef f():\n    import PIL.Image\n"
                "    from torch.utils.tensorboard import SummaryWriter\n"
            ),
            "packages/generators/pyproject.toml": pyproject("vq-generators", "0.1.0", []),
            "packages/generators/src/vq/generators/__init__.py": "from vq.tokenizers import a\n",
        },
    )
    installed = {"numpy": ["numpy"], "yaml": ["PyYAML"], "PIL": ["Pillow"], "torch": ["torch"]}
    tokenizers = "packages/tokenizers/src/vq/tokenizers/__init__.py"
    assert workspace_problems(tmp_path, installed) == [
        "packages/generators/src/vq/generators/__init__.py:1: vq-generators imports "
        "vq.tokenizers, but packages/generators/pyproject.toml declares no vq-tokenizers",
        "packages/tokenizers/pyproject.toml: vq-core<0.2,>=0.1 excludes the workspace's "
        "vq-core 0.2.1 (declare vq-core>=0.2,<0.3)",
        "packages/tokenizers/pyproject.toml: vq-generators>=0.1 admits vq-generators 0.2, a "
        "breaking release (declare vq-generators>=0.1,<0.2)",
        f"{tokenizers}:6: vq-tokenizers imports PIL.Image, but "
        "packages/tokenizers/pyproject.toml declares no pillow",
        f"{tokenizers}:7: vq-tokenizers imports torch.utils.tensorboard, but "
        "packages/tokenizers/pyproject.toml declares no tensorboard",
        "packages/tokenizers/pyproject.toml: declares vq-generators, which no module of "
        "vq-tokenizers imports",
    ]
