"""Components found through ``importlib.metadata`` entry points.

Each member declares what it provides in its own ``pyproject.toml``::

    [project.entry-points."vq.trainers"]
    vqgan = "vq.train.trainers.vqgan:VQGANTrainer"

``Registry("vq.trainers").get("vqgan")`` imports the object on first use only, caches it,
and fails with the list of installed names when a config asks for one that is missing.
A name of the form ``package.module:Object`` imports that object directly, so a project can
use its own trainer without packaging it.
"""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from vq.core.errors import UserError


class UnknownComponentError(UserError):
    """A config names a component that no installed package provides."""


@functools.cache
def _entry_points(group: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=group)}


class Registry:
    """Lazy, cached view of one entry-point group."""

    def __init__(self, group: str, kind: str | None = None) -> None:
        self.group = group
        self.kind = kind or group.rsplit(".", 1)[-1].rstrip("s")

    def names(self) -> list[str]:
        return sorted(_entry_points(self.group))

    def __contains__(self, name: object) -> bool:
        return name in _entry_points(self.group)

    def get(self, name: str) -> Any:
        return _load(self.group, self.kind, name)


@functools.cache
def _load(group: str, kind: str, name: str) -> Any:
    points = _entry_points(group)
    if name not in points and ":" in name:
        module_name, _, attribute = name.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as e:
            raise UnknownComponentError(f"cannot import {kind} {name!r}: {e}") from None
    if name not in points:
        choices = ", ".join(sorted(points)) or "none"
        raise UnknownComponentError(
            f"unknown {kind} {name!r} (entry-point group {group!r}); installed: {choices}"
        )
    return points[name].load()


TRAINERS = Registry("vq.trainers", "trainer")
