"""``release PACKAGE VERSION [--tag]``: each mistake is one ``error:`` line, exit status 2,
and a tree byte for byte as it was; ``--tag`` commits the bump and tags it; a dry run of
vq-core from a clean clone of this repository builds, installs and tests it (slow)."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.version import Version

from vq_release.release import Refused, dev_tools, plan_release, tag_release, with_all_extras
from vq_release.workspace import breaking_successor, members

REPO = Path(__file__).resolve().parents[3]
IDENTITY = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.org",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.org",
}

WORKSPACE = {
    "pyproject.toml": (
        '[tool.uv.workspace]\nmembers = ["packages/*"]\n'
        "[tool.uv.sources]\nvq-core = { workspace = true }\n"
        '[dependency-groups]\ndev = ["vq-core", "pytest>=8", "surely-not-installed>=1"]\n'
    ),
    ".gitignore": "/dist/\n",
    "uv.lock": "version = 1\n",
    "packages/core/pyproject.toml": (
        '[project]\nname = "vq-core"\nversion = "0.1.0"\ndependencies = ["torch>=2.5"]\n'
        '[project.optional-dependencies]\nx = ["pillow"]\n'
    ),
    "packages/core/CHANGELOG.md": "# vq-core\n\n## 0.2.0\n\n- Breaks.\n\n## 0.1.0\n\nFirst.\n",
    "packages/tokenizers/pyproject.toml": (
        '[project]\nname = "vq-tokenizers"\nversion = "0.1.0"\n'
        'dependencies = [\n    "vq-core[x]>=0.1,<0.2",\n    "torch>=2.5",\n]\n'
    ),
    "packages/tokenizers/CHANGELOG.md": "# vq-tokenizers\n\n## 0.1.0\n\nFirst.\n",
}


def git(root: Path, *args: str) -> str:
    env = {**os.environ, **IDENTITY}
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True, env=env
    ).stdout


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for name, text in WORKSPACE.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "workspace")
    return root


def state(root: Path) -> tuple[dict[str, bytes], str, str, str]:
    """Every file of the tree, byte for byte, with HEAD, the tags and git's status."""
    files = {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }
    return files, git(root, "rev-parse", "HEAD"), git(root, "tag"), git(root, "status", "-s")


def release(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    return subprocess.run(
        [sys.executable, "-m", "vq_release.release", *args],
        cwd=root,
        capture_output=True,
        text=True,
        env={**env, **IDENTITY},
    )


def dirty(root: Path) -> None:
    path = root / "packages/core/pyproject.toml"
    path.write_text(path.read_text() + "# edited\n")


def untracked(root: Path) -> None:
    (root / "packages/core/notes.txt").write_text("draft\n")


def tagged(root: Path) -> None:
    git(root, "tag", "vq-core-v0.2.0")


@pytest.mark.parametrize(
    ("args", "prepare", "message"),
    [
        (("vq-nope", "0.2.0"), None, "unknown package 'vq-nope' (choose one of vq-core, "
         "vq-tokenizers)"),
        (("core", "0.1.0"), None, "version 0.1.0 does not increase vq-core's version 0.1.0"),
        (("vq-core", "0.0.9"), None, "version 0.0.9 does not increase vq-core's version 0.1.0"),
        (("vq-core", "two"), None, "'two' is not a version (e.g. 0.2.0)"),
        (("tokenizers", "0.1.1"), None, "packages/tokenizers/CHANGELOG.md has no entry for "
         "0.1.1 (add a '## 0.1.1' section, e.g. by renaming '## Unreleased', and commit it)"),
        (("vq-core", "0.2.0"), dirty, "uncommitted changes (M packages/core/pyproject.toml): "
         "commit or remove them first"),
        (("vq-core", "0.2.0", "--tag"), untracked, "uncommitted changes (?? "
         "packages/core/notes.txt): commit or remove them first"),
        (("vq-core", "0.2.0", "--tag"), tagged, "tag vq-core-v0.2.0 exists already"),
    ],
)  # fmt: skip
def test_a_refused_release_is_one_line_exit_2_and_changes_nothing(
    workspace: Path, args, prepare, message: str
) -> None:
    if prepare is not None:
        prepare(workspace)
    before = state(workspace)
    result = release(workspace, *args)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", f"error: {message}\n")
    assert state(workspace) == before


def test_a_release_outside_a_workspace_is_refused(tmp_path: Path) -> None:
    result = release(tmp_path, "vq-core", "0.2.0")
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_tag_commits_the_bump_the_ranges_and_the_lock_then_tags(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in IDENTITY.items():
        monkeypatch.setenv(key, value)
    plan = plan_release(workspace, "core", "0.2.0")
    # A breaking release moves the dependents' ranges onto the new series.
    assert plan.tag == "vq-core-v0.2.0" and plan.ranges == {"vq-tokenizers": ">=0.2,<0.3"}
    rehearsed = tmp_path / "rehearsed"  # what rehearse() leaves: the locked copy, the files
    rehearsed.mkdir()
    (rehearsed / "uv.lock").write_text("version = 1\n# locked at vq-core 0.2.0\n")
    built = [rehearsed / "vq_core-0.2.0.tar.gz", rehearsed / "vq_core-0.2.0-py3-none-any.whl"]
    for file in built:
        file.write_bytes(b"built")
    tag_release(plan, rehearsed, built)

    assert git(workspace, "status", "--porcelain") == ""  # dist/ is ignored
    assert git(workspace, "log", "-1", "--format=%s") == "Release vq-core 0.2.0\n"
    assert git(workspace, "describe", "--tags", "--exact-match") == "vq-core-v0.2.0\n"
    assert git(workspace, "show", "--name-only", "--format=", "HEAD").split() == [
        "packages/core/pyproject.toml",
        "packages/tokenizers/pyproject.toml",
        "uv.lock",
    ]
    released = members(workspace)
    assert released["vq-core"].version == Version("0.2.0")
    assert [str(r) for r in released["vq-tokenizers"].requirements] == [
        "vq-core[x]<0.3,>=0.2",
        "torch>=2.5",
    ]
    assert sorted(p.name for p in (workspace / "dist").iterdir()) == sorted(f.name for f in built)
    # 0.2.0 is the version now: releasing it again is refused.
    with pytest.raises(Refused, match="does not increase"):
        plan_release(workspace, "core", "0.2.0")


def test_a_compatible_release_leaves_the_dependents_ranges_alone(workspace: Path) -> None:
    changelog = workspace / "packages/core/CHANGELOG.md"
    changelog.write_text(changelog.read_text().replace("## 0.2.0", "## 0.1.1"))
    git(workspace, "commit", "-q", "-am", "0.1.1")
    assert plan_release(workspace, "vq-core", "0.1.1").ranges == {}


def test_the_fresh_environment_gets_every_extra_and_the_pinned_test_tools(workspace: Path) -> None:
    wheel = workspace / "dist" / "vq_core-0.2.0-py3-none-any.whl"
    assert with_all_extras(wheel, members(workspace)) == f"vq-core[x] @ {wheel.as_uri()}"
    # Workspace members come as wheels; the other tools at this environment's versions.
    pytest_version = importlib.metadata.version("pytest")
    assert dev_tools(workspace) == [f"pytest=={pytest_version}", "surely-not-installed>=1"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not on PATH")
def test_a_dry_run_of_vq_core_from_a_clean_clone_passes(tmp_path: Path) -> None:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    core = members(clone)["vq-core"]
    version = breaking_successor(core.version)
    version = Version(f"{version}.0")
    changelog = clone / "packages/core/CHANGELOG.md"
    title, rest = changelog.read_text().split("\n", 1)
    changelog.write_text(f"{title}\n\n## {version}\n\n- Released by the test.\n{rest}")
    git(clone, "commit", "-q", "-am", f"vq-core {version} in the changelog")
    before = state(clone)

    result = release(clone, "vq-core", str(version))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == f"dry run passed: would tag vq-core-v{version} (run again with --tag)"
    assert " passed" in lines[-2] and "failed" not in lines[-2]
    wheel = f"vq_core-{version}-py3-none-any.whl"
    assert f"   built {wheel} vq_core-{version}.tar.gz" in lines  # nothing else
    assert f"== install {wheel} and the 0 member wheels it needs" in lines
    assert state(clone) == before  # the dry run worked on a copy
