"""Entry-point registry: discovery, laziness, caching and clear failures."""

from __future__ import annotations

import pytest

from vq.core.registry import Registry, UnknownComponentError


def test_empty_group_says_none_installed() -> None:
    with pytest.raises(UnknownComponentError, match="installed: none"):
        Registry("vq.no_such_group", "widget").get("x")


def test_module_path_names_import_directly() -> None:
    assert Registry("vq.no_such_group").get("collections:OrderedDict").__name__ == "OrderedDict"
    with pytest.raises(UnknownComponentError, match="cannot import"):
        Registry("vq.no_such_group").get("collections:NoSuchThing")
