"""Snapshots of a package's public API, so that a test fails on an accidental break.

``public_api(modules)`` describes the public names of each module: ``__all__`` where the
module has one, else what the module itself defines without a leading underscore (its
classes, functions and UPPER_CASE constants). A function is described by its signature, a
class by its constructor's signature and the signatures of its public methods and
properties (pydantic configs: their fields, types and defaults), a constant by its value.

``check_api_snapshot(api, snapshot, package)`` compares such a description with the JSON
file checked in beside a package's tests. On a difference it fails with every added,
removed and changed name and with how to accept the change deliberately: set
``VQ_UPDATE_API_SNAPSHOT=1`` and run the test again, which rewrites the file, then record
the change in the package's CHANGELOG.md (a removed name or a changed signature breaks
users: the next release is breaking, docs/releasing.md).
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["UPDATE", "check_api_snapshot", "public_api"]

UPDATE = "VQ_UPDATE_API_SNAPSHOT"
ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")  # reprs of objects differ from run to run


def _stable(text: str) -> str:
    return ADDRESS.sub("", text)


def signature(obj: Any) -> str:
    try:
        return _stable(str(inspect.signature(obj)))
    except (TypeError, ValueError):  # builtins without a signature
        return "(...)"


def _methods(cls: type) -> dict[str, str]:
    """Public methods and properties of ``cls`` and of its bases from the same project."""
    project = cls.__module__.split(".")[0]
    found: dict[str, str] = {}
    for base in reversed(cls.__mro__):
        if base.__module__.split(".")[0] != project:
            continue
        for name, member in vars(base).items():
            if name.startswith("_"):
                continue
            if isinstance(member, property):
                found[name] = "property"
            elif isinstance(member, classmethod | staticmethod):
                found[name] = signature(member.__func__)
            elif inspect.isfunction(member):
                found[name] = signature(member)
    return dict(sorted(found.items()))


def describe(obj: Any) -> Any:
    """A JSON-able description of one public object."""
    if inspect.isclass(obj):
        described: dict[str, Any] = {"class": signature(obj)}
        methods = _methods(obj)
        if methods:
            described["methods"] = methods
        return described
    if inspect.isroutine(obj):
        return f"def{signature(obj)}"
    if isinstance(obj, str | int | float | bool | type(None)):
        return obj
    if isinstance(obj, tuple | list | frozenset | set) and all(
        isinstance(v, str | int | float | bool) for v in obj
    ):
        return sorted(obj) if isinstance(obj, frozenset | set) else list(obj)
    if isinstance(obj, dict) and all(isinstance(k, str) for k in obj):
        return {k: type(v).__name__ for k, v in sorted(obj.items())}
    return f"instance of {type(obj).__name__}"


def public_names(module: Any) -> list[str]:
    if hasattr(module, "__all__"):
        return sorted(module.__all__)
    own = []
    for name, obj in vars(module).items():
        if name.startswith("_") or inspect.ismodule(obj):
            continue
        defined_here = getattr(obj, "__module__", None) == module.__name__
        constant = name.isupper() and not (inspect.isclass(obj) or inspect.isroutine(obj))
        if (defined_here and (inspect.isclass(obj) or inspect.isroutine(obj))) or constant:
            own.append(name)
    return sorted(own)


def public_api(modules: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{module: {name: description}}`` for each of ``modules`` (dotted names)."""
    api = {}
    for name in modules:
        module = importlib.import_module(name)
        api[name] = {n: describe(getattr(module, n)) for n in public_names(module)}
    return api


def _differences(old: Any, new: Any, path: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        lines = []
        for key in sorted(old.keys() | new.keys()):
            where = f"{path}.{key}" if path else key
            if key not in new:
                lines.append(f"  - {where} (removed)")
            elif key not in old:
                lines.append(f"  + {where} (added)")
            else:
                lines += _differences(old[key], new[key], where)
        return lines
    if old != new:
        return [f"  ~ {path}: {json.dumps(old)} -> {json.dumps(new)}"]
    return []


def check_api_snapshot(api: dict[str, Any], snapshot: Path, package: str) -> None:
    """Fail (AssertionError) when ``api`` differs from the JSON file ``snapshot``; with
    ``VQ_UPDATE_API_SNAPSHOT=1`` write ``api`` there instead."""
    text = json.dumps(api, indent=2, sort_keys=True) + "\n"
    if os.environ.get(UPDATE) == "1":
        snapshot.write_text(text)
        return
    old = json.loads(snapshot.read_text()) if snapshot.is_file() else {}
    lines = _differences(old, json.loads(text), "")
    if lines:
        raise AssertionError(
            f"the public API of {package} differs from {snapshot.name}:\n"
            + "\n".join(lines)
            + f"\nIf this is deliberate, run `{UPDATE}=1 uv run pytest "
            f"{snapshot.with_name('test_public_api.py')}` "
            f"(it rewrites {snapshot.name}), commit the file and describe the change in "
            f"{package}'s CHANGELOG.md; a removal or a changed signature makes the next "
            "release a breaking one (docs/releasing.md)."
        )
