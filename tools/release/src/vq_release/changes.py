"""``uv run changed-packages [--base REF]``: the members whose tests CI runs first.

Prints the folder names (``core tokenizers train``, dependencies first) of the members
changed since the base, plus every member that depends on one of them (vq-train depends
on all). The base is ``--base``, else the merge base of HEAD with ``origin/main`` or
``main``; when that is HEAD itself (on main) and nothing is uncommitted, it is ``HEAD~1``,
so the last commit is the change; without any (a fresh clone with one commit, no main, no
git) every member is printed. Changes are those of the working
tree against the base, untracked files included.

Where a file outside ``packages/<name>/`` is tested: ``configs/``, ``docs/`` and the root
README by vq-train's tests (test_docs, the config tests); ``tools/`` and ``bench/`` by no
member; anything else at the root (``pyproject.toml``, ``uv.lock``, ``.ci/``) may change
every member.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

from vq_release.git import GitError, git, uncommitted
from vq_release.workspace import (
    PACKAGES,
    Member,
    WorkspaceError,
    dependents,
    find_root,
    members,
    needed,
)

TESTED_BY_TRAIN = ("configs/", "docs/", "README.md")
TESTED_BY_NONE = ("tools/", "bench/")


def affected(paths: Iterable[str], all_members: dict[str, Member]) -> set[str]:
    """The members (distribution names) whose tests a change of ``paths`` concerns,
    before adding their dependents."""
    by_folder = {m.short: name for name, m in all_members.items()}
    found: set[str] = set()
    for path in paths:
        parts = path.split("/")
        if parts[0] == PACKAGES and len(parts) > 2 and parts[1] in by_folder:
            found.add(by_folder[parts[1]])
        elif path.startswith(TESTED_BY_TRAIN) and "vq-train" in all_members:
            found.add("vq-train")
        elif not path.startswith(TESTED_BY_NONE):
            return set(all_members)
    return found


def base_of(root: Path) -> str | None:
    """The commit to compare with (see the module docstring), or None."""
    for main in ("origin/main", "main"):
        try:
            base = git(root, "merge-base", "HEAD", main).strip()
        except GitError:
            continue
        if base != git(root, "rev-parse", "HEAD").strip() or uncommitted(root):
            return base
        try:
            return git(root, "rev-parse", "--verify", "--quiet", "HEAD~1").strip()
        except GitError:
            return None
    return None


def changed_paths(root: Path, base: str) -> list[str]:
    tracked = git(root, "diff", "--name-only", base, "--").splitlines()
    untracked = git(root, "ls-files", "--others", "--exclude-standard").splitlines()
    return sorted(set(tracked) | set(untracked))


def selected(root: Path, base: str | None) -> list[str]:
    """The folder names of the members to test first, dependencies first."""
    all_members = members(root)
    try:
        base = base or base_of(root)
        names = (
            set(all_members)
            if base is None
            else dependents(affected(changed_paths(root, base), all_members), all_members)
        )
    except GitError:
        names = set(all_members)
    order = sorted(all_members, key=lambda n: (len(needed(n, all_members)), n))
    return [all_members[n].short for n in order if n in names]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="changed-packages",
        description="The members changed since the merge base with main, and their dependents.",
    )
    parser.add_argument("--base", help="compare with this commit instead of the merge base")
    args = parser.parse_args(argv)
    try:
        root = find_root(Path.cwd())
    except WorkspaceError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    if args.base is not None:
        try:
            git(root, "rev-parse", "--verify", "--quiet", args.base + "^{commit}")
        except GitError:
            print(f"error: --base {args.base!r} is not a commit", file=sys.stderr)
            sys.exit(2)
    print(" ".join(selected(root, args.base)))
