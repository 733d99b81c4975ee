"""The few git queries the release command and the CI selection make."""

from __future__ import annotations

import subprocess
from pathlib import Path


class GitError(Exception):
    """git failed or the directory is not in a repository; the message says which."""


def git(root: Path, *args: str) -> str:
    """The stdout of ``git -C root ARGS``; GitError with git's message when it fails."""
    try:
        result = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise GitError("git is not installed") from None
    if result.returncode != 0:
        message = (result.stderr.strip() or result.stdout.strip()).splitlines()
        raise GitError(f"git {' '.join(args)}: {message[0] if message else 'failed'}")
    return result.stdout


def uncommitted(root: Path) -> list[str]:
    """``git status --porcelain`` lines: modified, staged, deleted and untracked files
    (ignored ones excepted)."""
    return [line for line in git(root, "status", "--porcelain").splitlines() if line]


def has_tag(root: Path, tag: str) -> bool:
    return bool(git(root, "tag", "--list", tag).strip())
