"""``uv run release PACKAGE VERSION [--tag]``: release one library member (docs/releasing.md).

Every check of what the user asked for comes first, and a refusal is one ``error:`` line,
exit status 2, with every file as it was: an unknown package, a version that is not one or
does not increase, no ``## VERSION`` heading in the member's CHANGELOG.md, uncommitted
changes, a tag that exists already.

Then, always on a copy of the committed tree (``git archive HEAD``) in a temporary folder:
set the version (and, for a breaking release, the ranges of the members that depend on it),
lock, build the member's sdist and wheel and the wheels of the members it needs, install
them into a fresh virtual environment of this interpreter (``uv venv`` + ``uv pip
install``, from the uv cache where it can; every extra, and the root's test tools), and run
the member's own fast tests (``-m "not slow"``) against the installed copy: from the copy,
whose sources are on no import path, so ``vq.*`` comes from the environment.

A dry run stops there and prints the tag it would make. With ``--tag`` the same edits are
written into the tree, committed, and tagged ``<distribution>-v<version>``; the built files
are copied to ``dist/`` for ``uv publish``, which stays the user's step.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from vq_release.git import GitError, git, has_tag, uncommitted
from vq_release.workspace import (
    Member,
    WorkspaceError,
    compatible_range,
    find_root,
    is_breaking,
    member_requirements,
    members,
    needed,
    with_range,
    with_version,
)


class Refused(Exception):
    """A mistake in what was asked: one ``error:`` line, exit status 2, nothing changed."""


class StepFailed(Exception):
    """A build, install or test step failed: exit status 1, nothing changed."""


@dataclass(frozen=True)
class Plan:
    root: Path
    member: Member
    version: Version
    all_members: dict[str, Member]
    ranges: dict[str, str]  # dependent -> its new range on the member (breaking releases)

    @property
    def tag(self) -> str:
        return self.member.tag(self.version)

    def edited(self, tree: Path) -> dict[Path, str]:
        """The new text of each ``pyproject.toml`` (relative to the root) the release edits."""
        own = self.member.pyproject.relative_to(self.root)
        texts = {own: with_version((tree / own).read_text(), self.version)}
        for dependent, specifier in self.ranges.items():
            path = self.all_members[dependent].pyproject.relative_to(self.root)
            texts[path] = with_range((tree / path).read_text(), self.member.name, specifier)
        return texts


def has_changelog_entry(changelog: Path, version: Version) -> bool:
    """Whether ``changelog`` has a heading ``## 0.2.0`` (or ``## [0.2.0]``, maybe dated)."""
    if not changelog.is_file():
        return False
    heading = re.compile(rf"^##\s+\[?v?{re.escape(str(version))}\]?(\s|$)", re.MULTILINE)
    return heading.search(changelog.read_text()) is not None


def plan_release(start: Path, package: str, version_text: str) -> Plan:
    """What the release of ``package`` at ``version_text`` does; Refused for a mistake."""
    try:
        root = find_root(start)
    except WorkspaceError as error:
        raise Refused(str(error)) from None
    all_members = members(root)
    short = {m.short: name for name, m in all_members.items()}
    name = short.get(package, canonicalize_name(package))
    if name not in all_members:
        raise Refused(f"unknown package {package!r} (choose one of {', '.join(all_members)})")
    member = all_members[name]
    try:
        version = Version(version_text)
    except InvalidVersion:
        raise Refused(f"{version_text!r} is not a version (e.g. 0.2.0)") from None
    if version <= member.version:
        raise Refused(
            f"version {version} does not increase {member.name}'s version {member.version}"
        )
    changelog = member.changelog.relative_to(root)
    if not has_changelog_entry(member.changelog, version):
        raise Refused(
            f"{changelog} has no entry for {version} (add a '## {version}' section, "
            "e.g. by renaming '## Unreleased', and commit it)"
        )
    try:
        dirty = uncommitted(root)
        if dirty:
            shown = ", ".join(line.strip() for line in dirty[:3])
            more = f" and {len(dirty) - 3} more" if len(dirty) > 3 else ""
            raise Refused(f"uncommitted changes ({shown}{more}): commit or remove them first")
        if has_tag(root, member.tag(version)):
            raise Refused(f"tag {member.tag(version)} exists already")
    except GitError as error:
        raise Refused(str(error)) from None
    ranges = {}
    if is_breaking(member.version, version):
        for other in all_members.values():
            if any(
                canonicalize_name(r.name) == name and not r.specifier.contains(version, True)
                for r in member_requirements(other, all_members)
            ):
                ranges[other.name] = compatible_range(version)
    return Plan(root, member, version, all_members, ranges)


def clean_env() -> dict[str, str]:
    """The environment for uv and the test run: no workspace venv, no interpreter download."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return {**env, "UV_PYTHON_DOWNLOADS": "never"}


def step(what: str, command: list[str], cwd: Path) -> str:
    """Run ``command``; StepFailed with its output's tail when it fails."""
    print(f"== {what}", flush=True)
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=clean_env())
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-30:])
        raise StepFailed(f"{what} failed ({' '.join(command)}):\n{tail}")
    return result.stdout


def dev_tools(root: Path) -> list[str]:
    """The third-party requirements of the root's ``dev`` group (pytest and the packages some
    tests use), pinned to the versions of this environment, so that the fresh environment
    tests with the tools the workspace tests with."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    ours = {
        canonicalize_name(n) for n in pyproject.get("tool", {}).get("uv", {}).get("sources", {})
    }
    pinned = []
    for text in pyproject.get("dependency-groups", {}).get("dev", []):
        requirement = Requirement(text)
        if canonicalize_name(requirement.name) in ours:
            continue
        try:
            pinned.append(f"{requirement.name}=={importlib.metadata.version(requirement.name)}")
        except importlib.metadata.PackageNotFoundError:
            pinned.append(text)
    return pinned


def with_all_extras(wheel: Path, all_members: dict[str, Member]) -> str:
    """``vq-tokenizers[teachers] @ file:///...whl``: a member's wheel with every extra, so
    that its tests and its dependents' find what they use."""
    member = all_members[canonicalize_name(wheel.name.split("-")[0])]
    extras = f"[{','.join(member.extras)}]" if member.extras else ""
    return f"{member.name}{extras} @ {wheel.as_uri()}"


def built_files(dist: Path) -> list[Path]:
    """The sdists and wheels in ``dist``."""
    return sorted(p for p in dist.iterdir() if p.name.endswith((".tar.gz", ".whl")))


def rehearse(plan: Plan, work: Path) -> tuple[Path, list[Path]]:
    """Bump, lock, build, install and test a copy of HEAD under ``work``; returns the
    copy and the member's built sdist and wheel."""
    uv = shutil.which("uv")
    if uv is None:
        raise StepFailed("uv is not on PATH")
    tree, dist, venv = work / "tree", work / "dist", work / "venv"
    archive = subprocess.run(
        ["git", "-C", str(plan.root), "archive", "--format=tar", "HEAD"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    member = plan.member
    print(f"== {member.name} {member.version} -> {plan.version} (in a copy of HEAD)")
    for path, text in plan.edited(tree).items():
        (tree / path).write_text(text)
    for dependent, specifier in plan.ranges.items():
        print(f"   {dependent} now requires {member.name}{specifier}: release it next")
    if (tree / "uv.lock").is_file():
        step("lock", [uv, "lock", "--quiet"], tree)
    build = [uv, "build", "-q", "--out-dir", str(dist), "--package"]
    step(f"build {member.name} (sdist, wheel)", [*build, member.name], tree)
    own = built_files(dist)  # uv also writes a .gitignore there
    print(f"   built {' '.join(p.name for p in own)}")
    wheels = []
    for name in needed(member.name, plan.all_members):
        before = built_files(dist)
        step(f"build {name} (wheel)", [*build, name, "--wheel"], tree)
        wheels += [p for p in built_files(dist) if p not in before]
    wheel = next(p for p in own if p.suffix == ".whl")
    step(
        "fresh virtual environment", [uv, "venv", "-q", str(venv), "--python", sys.executable], work
    )
    python = str(venv / "bin" / "python")
    targets = [with_all_extras(w, plan.all_members) for w in (wheel, *wheels)]
    install = [uv, "pip", "install", "-q", "--python", python, *targets, *dev_tools(plan.root)]
    step(f"install {wheel.name} and the {len(wheels)} member wheels it needs", install, work)
    module = f"vq.{member.short}"
    show = [python, "-c", f"import {module}; print(*{module}.__path__)"]
    where = step(f"import {module} from the environment", show, work).strip()
    if not Path(where).resolve().is_relative_to(venv.resolve()):
        raise StepFailed(f"{module} was imported from {where}, not from the fresh environment")
    # In the copy, whose packages/*/src are on no path: vq.* comes from the environment,
    # while tests that read the repository's files (configs/, docs/) find them.
    tests = str(member.directory.relative_to(plan.root) / "tests")
    run_tests = [python, "-m", "pytest", tests, "-q", "-m", "not slow", "-p", "no:cacheprovider"]
    out = step(f"the fast tests of {member.name} against the installed copy", run_tests, tree)
    print("   " + (out.strip().splitlines() or ["no output"])[-1])
    return tree, own


def tag_release(plan: Plan, tree: Path, built: list[Path]) -> None:
    """Write the rehearsed edits into the tree, commit them, tag, copy the files to dist/."""
    edited = plan.edited(plan.root)
    for path, text in edited.items():
        (plan.root / path).write_text(text)
    changed = [str(p) for p in edited]
    if (tree / "uv.lock").is_file():
        shutil.copyfile(tree / "uv.lock", plan.root / "uv.lock")
        changed.append("uv.lock")
    git(plan.root, "add", "--", *changed)
    message = f"Release {plan.member.name} {plan.version}"
    git(plan.root, "commit", "-q", "-m", message, "--", *changed)
    git(plan.root, "tag", "-a", plan.tag, "-m", message)
    (plan.root / "dist").mkdir(exist_ok=True)
    for file in built:
        shutil.copy2(file, plan.root / "dist" / file.name)
    print(f"committed and tagged {plan.tag}; publish with:")
    print(f"   uv publish {' '.join('dist/' + f.name for f in built)}")
    print(f"   git push origin HEAD {plan.tag}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="release",
        description="Release one vq member: check, bump, build, install and test a copy, "
        "and with --tag commit the bump and tag it (dry run without).",
    )
    parser.add_argument("package", help="distribution or folder: vq-tokenizers or tokenizers")
    parser.add_argument("version", help="the new version, e.g. 0.2.0")
    parser.add_argument("--tag", action="store_true", help="commit the bump and create the tag")
    args = parser.parse_args(argv)
    try:
        plan = plan_release(Path.cwd(), args.package, args.version)
    except Refused as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    try:
        with tempfile.TemporaryDirectory(prefix="vq-release-") as work:
            tree, built = rehearse(plan, Path(work))
            if args.tag:
                tag_release(plan, tree, built)
            else:
                print(f"dry run passed: would tag {plan.tag} (run again with --tag)")
    except (StepFailed, GitError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
