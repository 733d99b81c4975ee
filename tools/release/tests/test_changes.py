"""``changed-packages``: the members changed since the merge base with main plus their
dependents, dependencies first; everything when there is nothing to compare with."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from vq_release.changes import selected

IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
REQUIRES = {  # the workspace's arrows
    "core": [],
    "tokenizers": ["core"],
    "decoders": ["tokenizers", "core"],
    "generators": ["core"],
    "train": ["core", "tokenizers", "decoders", "generators"],
}
EVERY = ["core", "generators", "tokenizers", "decoders", "train"]


def git(root: Path, *args: str) -> str:
    env = {**os.environ, **IDENTITY, "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True, env=env
    ).stdout


def write(root: Path, name: str, text: str = "x\n") -> None:
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(text)


def commit(root: Path, message: str) -> None:
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", message)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A workspace on main with one commit, and a branch ``work`` made from it."""
    write(tmp_path, "pyproject.toml", '[tool.uv.workspace]\nmembers = ["packages/*"]\n')
    for name, needs in REQUIRES.items():
        listed = ", ".join(f'"vq-{n}>=0.1,<0.2"' for n in needs)
        write(
            tmp_path,
            f"packages/{name}/pyproject.toml",
            f'[project]\nname = "vq-{name}"\nversion = "0.1.0"\ndependencies = [{listed}]\n',
        )
        write(tmp_path, f"packages/{name}/src/vq/{name}/__init__.py")
    for folder in ("docs", "tools/release", "configs/ar"):
        write(tmp_path, f"{folder}/a.txt")
    git(tmp_path, "init", "-q", "-b", "main")
    commit(tmp_path, "workspace")
    git(tmp_path, "checkout", "-q", "-b", "work")
    return tmp_path


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        (["packages/generators/src/vq/generators/x.py"], ["generators", "train"]),
        (["packages/tokenizers/README.md"], ["tokenizers", "decoders", "train"]),
        (["packages/core/src/vq/core/__init__.py"], EVERY),
        (["docs/a.txt", "configs/ar/a.txt"], ["train"]),
        (["tools/release/a.txt"], []),
        (["uv.lock"], EVERY),
        (["packages/decoders/src/vq/decoders/__init__.py", "tools/release/a.txt"],
         ["decoders", "train"]),
    ],
)  # fmt: skip
def test_a_branch_tests_what_it_changed_and_the_dependents(
    repo: Path, changed: list[str], expected: list[str]
) -> None:
    for name in changed:
        write(repo, name, "changed\n")
    assert selected(repo, None) == expected  # uncommitted changes count
    commit(repo, "change")
    assert selected(repo, None) == expected  # and committed ones


def test_an_untracked_file_is_a_change(repo: Path) -> None:
    write(repo, "packages/generators/tests/test_new.py")
    assert selected(repo, None) == ["generators", "train"]


def test_on_main_the_last_commit_is_the_change(repo: Path) -> None:
    git(repo, "checkout", "-q", "main")
    assert selected(repo, None) == EVERY  # one commit: nothing to compare with
    write(repo, "packages/tokenizers/src/vq/tokenizers/y.py")
    commit(repo, "tokenizers")
    assert selected(repo, None) == ["tokenizers", "decoders", "train"]
    assert selected(repo, "HEAD") == []  # --base names the commit to compare with


def test_without_main_every_member_is_tested(repo: Path) -> None:
    git(repo, "branch", "-q", "-m", "main", "trunk")
    assert selected(repo, None) == EVERY


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--package", "nope"], "error: unknown package 'nope' (choose one of: core decoders "
         "generators tokenizers train)"),
        (["--package"], "error: usage: .ci/run [--package NAME]"),
    ],
)  # fmt: skip
def test_ci_refuses_an_unknown_package_before_it_syncs(args: list[str], message: str) -> None:
    ci = Path(__file__).resolve().parents[3] / ".ci" / "run"
    result = subprocess.run([str(ci), *args], capture_output=True, text=True)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", message + "\n")
