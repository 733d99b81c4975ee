"""The library members of the workspace (``packages/*``) and the policy of their ranges.

Compatibility policy (docs/releasing.md): versions are ``MAJOR.MINOR.PATCH``. While a
member is ``0.x``, a new MINOR is a breaking release and a new PATCH a compatible one; from
``1.0`` on, a new MAJOR is breaking and MINOR/PATCH are compatible. A member that imports
another declares the compatible range of the version it is developed against:
``vq-core>=0.1,<0.2`` while vq-core is 0.1.x, ``vq-core>=1.2,<2`` while it is 1.2.x. A user
who pins one member therefore always gets the others in the series it was tested with.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

PACKAGES = "packages"
"""Every folder of ``packages/`` with a ``pyproject.toml`` is a library member."""


class WorkspaceError(Exception):
    """The workspace is not as the tools expect (a user mistake: one ``error:`` line)."""


@dataclass(frozen=True)
class Member:
    name: str  # the distribution, canonical: "vq-core"
    directory: Path  # packages/core
    version: Version
    requirements: tuple[Requirement, ...]  # [project] dependencies
    extras: dict[str, tuple[Requirement, ...]] = field(default_factory=dict)

    @property
    def short(self) -> str:
        """``core``: the folder under ``packages/`` and the ``vq.core`` subpackage."""
        return self.directory.name

    @property
    def pyproject(self) -> Path:
        return self.directory / "pyproject.toml"

    @property
    def changelog(self) -> Path:
        return self.directory / "CHANGELOG.md"

    def tag(self, version: Version | str) -> str:
        """The git tag of a release: ``vq-tokenizers-v0.2.0``."""
        return f"{self.name}-v{version}"


def read_member(pyproject: Path) -> Member:
    project = tomllib.loads(pyproject.read_text())["project"]
    return Member(
        name=canonicalize_name(project["name"]),
        directory=pyproject.parent,
        version=Version(project["version"]),
        requirements=tuple(Requirement(r) for r in project.get("dependencies", [])),
        extras={
            extra: tuple(Requirement(r) for r in requirements)
            for extra, requirements in project.get("optional-dependencies", {}).items()
        },
    )


def members(root: Path) -> dict[str, Member]:
    """The library members by distribution name, in folder order."""
    found = [read_member(p) for p in sorted((root / PACKAGES).glob("*/pyproject.toml"))]
    return {m.name: m for m in found}


def find_root(start: Path) -> Path:
    """The workspace root at or above ``start`` (the ``pyproject.toml`` with
    ``[tool.uv.workspace]``)."""
    for directory in (start.resolve(), *start.resolve().parents):
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file() and "workspace" in tomllib.loads(pyproject.read_text()).get(
            "tool", {}
        ).get("uv", {}):
            return directory
    raise WorkspaceError(f"{start} is not inside a uv workspace (no [tool.uv.workspace] above it)")


def member_requirements(member: Member, all_members: dict[str, Member]) -> list[Requirement]:
    """The requirements of ``member`` on other members."""
    return [r for r in member.requirements if canonicalize_name(r.name) in all_members]


def needed(name: str, all_members: dict[str, Member]) -> list[str]:
    """The members ``name`` needs, directly or not, dependencies first (``name`` excluded)."""
    order: list[str] = []

    def visit(current: str) -> None:
        for requirement in member_requirements(all_members[current], all_members):
            dependency = canonicalize_name(requirement.name)
            if dependency not in order:
                visit(dependency)
                order.append(dependency)

    visit(name)
    return [n for n in order if n != name]


def dependents(names: Iterable[str], all_members: dict[str, Member]) -> set[str]:
    """``names`` and every member that needs one of them, directly or not."""
    names = set(names)
    return names | {m for m in all_members if names & set(needed(m, all_members))}


def breaking_successor(version: Version) -> Version:
    """The first version that may break users of ``version``: 0.1.3 -> 0.2, 1.4.0 -> 2."""
    major, minor = version.major, version.minor
    return Version(f"0.{minor + 1}") if major == 0 else Version(f"{major + 1}")


def compatible_range(version: Version) -> str:
    """The range a dependent declares on a member at ``version``: 0.1.0 -> ``>=0.1,<0.2``."""
    return f">={version.major}.{version.minor},<{breaking_successor(version)}"


def is_breaking(old: Version, new: Version) -> bool:
    return new >= breaking_successor(old)


VERSION_LINE = re.compile(r'^(version\s*=\s*")([^"]+)(")', re.MULTILINE)


def with_version(pyproject_text: str, version: Version) -> str:
    """The text of a ``pyproject.toml`` with its ``[project] version`` set (the first
    ``version = "..."`` line, which is that of ``[project]`` in every member)."""
    text, count = VERSION_LINE.subn(rf"\g<1>{version}\g<3>", pyproject_text, count=1)
    if count != 1:
        raise WorkspaceError("no version line in pyproject.toml")
    return text


def with_range(pyproject_text: str, dependency: str, specifier: str) -> str:
    """The text of a ``pyproject.toml`` whose requirement on ``dependency`` (extras and
    markers kept) has the range ``specifier``."""
    quoted = re.compile(
        rf'"({re.escape(dependency)}(\[[^\]]*\])?)(?=[\s<>=!~;"])([^";]*)(;[^"]*)?"'
    )
    text, count = quoted.subn(
        lambda m: f'"{m.group(1)}{specifier}{m.group(4) or ""}"', pyproject_text
    )
    if count == 0:
        raise WorkspaceError(f"no requirement on {dependency} in pyproject.toml")
    return text
