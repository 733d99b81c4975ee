"""What each library member imports, read from its source with ``ast``, against what its
``pyproject.toml`` declares.

A member is wrong when

* its range on another member excludes that member's workspace version, or has no upper
  bound at that version's next breaking release (the policy of ``vq_release.workspace``);
* it imports a distribution (another member or a third-party one) that neither its
  dependencies nor one of its extras declare;
* it declares a member that none of its modules imports.

Imports are collected from every module under ``src/`` (function bodies and
``TYPE_CHECKING`` blocks included: the code runs there too). A module is mapped to its
distribution through the installed metadata (``PIL`` -> ``pillow``), members through their
folder (``vq.tokenizers`` -> ``vq-tokenizers``); the standard library and the member's own
package are skipped.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.utils import canonicalize_name

from vq_release.workspace import Member, breaking_successor, compatible_range, members

INDIRECT = {
    # torch.utils.tensorboard (module torch) needs the tensorboard distribution.
    "torch.utils.tensorboard": "tensorboard",
}
"""Modules of one distribution that need another one installed."""


@dataclass(frozen=True)
class Use:
    where: str  # packages/core/src/vq/core/loop.py:12
    module: str  # the imported module, absolute: vq.core.config, torch.nn


def imported_modules(src: Path, root: Path) -> list[Use]:
    """Every import under ``src`` with the absolute module it names (relative imports
    resolved against the importing module's package)."""
    uses = []
    for file in sorted(src.rglob("*.py")):
        parts = file.relative_to(src).with_suffix("").parts
        package = list(parts[:-1])  # a relative import starts from the module's package
        where = file.relative_to(root)
        for node in ast.walk(ast.parse(file.read_text(), filename=str(file))):
            if isinstance(node, ast.Import):
                uses += [Use(f"{where}:{node.lineno}", a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                module = ".".join([*base, *([node.module] if node.module else [])])
                uses.append(Use(f"{where}:{node.lineno}", module))
    return uses


def distribution_of(module: str, all_members: Mapping[str, Member], installed) -> str | None:
    """The distribution that provides ``module``; None for the standard library. Raises
    KeyError for a module no installed distribution provides."""
    for prefix, distribution in INDIRECT.items():
        if module == prefix or module.startswith(prefix + "."):
            return distribution
    top, _, rest = module.partition(".")
    if top in sys.stdlib_module_names or top == "__future__":
        return None
    if top == "vq":
        name = canonicalize_name(f"vq-{rest.split('.')[0]}")
        if name not in all_members:
            raise KeyError(module)
        return name
    return canonicalize_name(installed[top][0])


def problems_of(
    member: Member, all_members: Mapping[str, Member], root: Path, installed=None
) -> list[str]:
    """What is wrong with ``member``'s requirements, one line each."""
    installed = packages_distributions() if installed is None else installed
    where = member.pyproject.relative_to(root)
    found = []
    declared = {canonicalize_name(r.name): r for r in member.requirements}
    in_extras = {canonicalize_name(r.name) for rs in member.extras.values() for r in rs}
    for name, requirement in declared.items():
        if name not in all_members:
            continue
        version = all_members[name].version
        if not requirement.specifier.contains(version, prereleases=True):
            found.append(
                f"{where}: {requirement} excludes the workspace's {name} {version} "
                f"(declare {name}{compatible_range(version)})"
            )
        elif requirement.specifier.contains(breaking_successor(version), prereleases=True):
            found.append(
                f"{where}: {requirement} admits {name} {breaking_successor(version)}, a "
                f"breaking release (declare {name}{compatible_range(version)})"
            )
    first_use: dict[str, Use] = {}
    for use in imported_modules(member.directory / "src", root):
        try:
            distribution = distribution_of(use.module, all_members, installed)
        except KeyError:
            found.append(f"{use.where}: imports {use.module}, which no distribution provides")
            continue
        if distribution is not None and distribution != member.name:
            first_use.setdefault(distribution, use)
    for distribution, use in sorted(first_use.items()):
        if distribution not in declared and distribution not in in_extras:
            found.append(
                f"{use.where}: {member.name} imports {use.module}, but {where} declares no "
                f"{distribution}"
            )
    for name in sorted(set(declared) & set(all_members) - set(first_use)):
        found.append(f"{where}: declares {name}, which no module of {member.name} imports")
    return found


def workspace_problems(root: Path, installed=None) -> list[str]:
    """The problems of every library member of the workspace at ``root``."""
    all_members = members(root)
    return [
        line for m in all_members.values() for line in problems_of(m, all_members, root, installed)
    ]
