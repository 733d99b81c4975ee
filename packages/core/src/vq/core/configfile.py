"""Config files, ``--config-options``, ``--override`` and the resolved-config dump.

A config file is a Python file that defines ``config(**options) -> Config``. Its keyword
parameters are the options ``--config-options`` may set; anything else is an error::

    # configs/vqgan/8192_dd2_aglwg075_imagenet_ddp.py
    from functools import partial

    from configs.vqgan._recipe import vqgan_recipe

    config = partial(vqgan_recipe, "vqgan", "patchgan_depth_2", 0.75, num_codes=8192)

``config`` is a plain function or, as here, a recipe function of ``configs/<family>/_recipe.py``
with the file's architecture bound: the keyword parameters left free (``num_codes``, ``lr``,
``iters``, ...) are its options.

Values on the command line are parsed with ``ast`` and a small whitelist of node types
(literals, ``dict(a=1)``-style calls of ``dict``/``list``/``tuple``/``set``, unary minus,
arithmetic on numbers); nothing is ever evaluated. ``k::v`` keeps ``v`` as a raw string.
Arithmetic stays (``lr:4.5e-4*8``, ``iters:250*1000``) but is bounded: an integer result
that would exceed ``MAX_INT_BITS`` bits is refused *before* it is computed (so nested powers
cannot hang the command), and a division by zero, an overflow or a non-finite float result
is the same one-line error as any other bad value.

``--override .a.b[-1].c:v`` sets one field of the built config by path (attributes, list
indices including negative ones, dict keys) and validates the whole config again.

``dump_config`` writes the resolved config as a Python file that defines ``config()``
again, so a run's ``config.py`` is itself a valid CONFIG for ``train``.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import json
import math
import operator
import pprint
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pydantic

from vq.core.config import Config
from vq.core.errors import UserError

# ------------------------------------------------------------------ values ----------

_CALLABLE_LITERALS: dict[str, Callable[..., Any]] = {
    "dict": dict,
    "list": list,
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
}
_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_NUMBER = (int, float, complex)
MAX_INT_BITS = 4096
"""Largest integer a value may compute (any config number fits in 64 bits)."""


def _predicted_bits(op: ast.operator, left: Any, right: Any) -> int:
    """An upper bound of the bits of ``left op right`` for integers (0: not growing)."""
    if not (isinstance(left, int) and isinstance(right, int)):
        return 0
    bits = max(left.bit_length(), 1), max(right.bit_length(), 1)
    if isinstance(op, ast.Pow):
        return bits[0] * right if right > 0 else 0
    if isinstance(op, ast.Mult):
        return bits[0] + bits[1]
    return max(bits) + 1


def _arithmetic(op: ast.operator, left: Any, right: Any, text: str) -> Any:
    """``left op right`` on numbers, refused before it is computed when it would be huge."""
    if _predicted_bits(op, left, right) > MAX_INT_BITS:
        raise UserError(f"cannot parse value {text!r}: the number is too large")
    try:
        result = _BINARY[type(op)](left, right)
    except (ArithmeticError, ValueError) as error:  # ZeroDivisionError, OverflowError
        raise UserError(f"cannot parse value {text!r}: {error}") from None
    parts = (result.real, result.imag) if isinstance(result, complex) else (result,)
    if any(isinstance(p, float) and not math.isfinite(p) for p in parts):
        raise UserError(f"cannot parse value {text!r}: the result is not a finite number")
    return result


def _literal(node: ast.AST, text: str) -> Any:
    """Interpret one whitelisted AST node; anything else is a ``UserError``."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Tuple):
        return tuple(_literal(e, text) for e in node.elts)
    if isinstance(node, ast.List):
        return [_literal(e, text) for e in node.elts]
    if isinstance(node, ast.Set):
        return {_literal(e, text) for e in node.elts}
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise UserError(f"cannot parse value {text!r}: '**' is not allowed")
        return {_literal(k, text): _literal(v, text) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _literal(node.operand, text)
        if isinstance(value, _NUMBER) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _literal(node.left, text), _literal(node.right, text)
        if all(isinstance(v, _NUMBER) and not isinstance(v, bool) for v in (left, right)):
            return _arithmetic(node.op, left, right, text)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _CALLABLE_LITERALS
    ):
        args = [_literal(a, text) for a in node.args]
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise UserError(f"cannot parse value {text!r}: '**' is not allowed")
            kwargs[kw.arg] = _literal(kw.value, text)
        return _CALLABLE_LITERALS[node.func.id](*args, **kwargs)
    snippet = ast.get_source_segment(text, node) or type(node).__name__
    raise UserError(
        f"cannot parse value {text!r}: {snippet!r} is not a literal "
        "(use k::v for a raw string; numbers, strings, tuples, lists, dicts, None, "
        "True/False and dict(...)-style calls are allowed)"
    )


def parse_value(text: str) -> Any:
    """The Python literal written in ``text`` (without evaluating anything)."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
        return _literal(tree.body, text.strip())
    except SyntaxError as e:
        raise UserError(
            f"cannot parse value {text!r}: {e.msg} (use k::v for a raw string)"
        ) from None
    except (RecursionError, MemoryError):
        raise UserError(f"cannot parse value {text[:40]!r}...: nested too deeply") from None


def parse_assignment(item: str) -> tuple[str, Any]:
    """``k::v`` -> (k, 'v') raw string; ``k:v`` -> (k, literal v)."""
    key, sep, rest = item.partition(":")
    if not sep or not key:
        raise UserError(f"malformed option {item!r}: expected KEY:VALUE or KEY::STRING")
    if rest.startswith(":"):
        return key, rest[1:]
    return key, parse_value(rest)


def parse_assignments(items: Iterable[str]) -> dict[str, Any]:
    """Parse a list of ``k:v`` / ``k::v`` tokens, later ones winning."""
    return dict(parse_assignment(item) for item in items)


# ------------------------------------------------------------------ files -----------


def _import_file(path: Path) -> Any:
    """Import a config file as a module (``configs.*`` siblings importable)."""
    resolved = path.resolve()
    for parent in resolved.parents:
        if parent.name == "configs":
            root = str(parent.parent)
            if root not in sys.path:
                sys.path.insert(0, root)
            break
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:12]
    name = f"vq_config_{resolved.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise UserError(f"config file {path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        del sys.modules[name]
        raise UserError(
            f"config file {path}: syntax error at line {error.lineno}: {error.msg}"
        ) from None
    return module


def config_parameters(path: str | Path) -> dict[str, inspect.Parameter]:
    """The options a config file accepts (its ``config`` function's keyword parameters)."""
    return dict(inspect.signature(_config_function(Path(path))).parameters)


def _config_function(path: Path) -> Callable[..., Any]:
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    module = _import_file(path)
    function = getattr(module, "config", None)
    if not callable(function):
        raise UserError(f"config file {path} does not define a function config(**options)")
    return function


def load_config(path: str | Path, options: dict[str, Any] | None = None) -> Config:
    """Build the config of ``path`` with ``options`` as keyword arguments."""
    path = Path(path)
    options = options or {}
    function = _config_function(path)
    parameters = inspect.signature(function).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    accepted = [
        n
        for n, p in parameters.items()
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if not takes_any:
        for key in options:
            if key not in accepted:
                listed = ", ".join(accepted) or "none"
                raise UserError(f"config {path} does not take option {key!r}; it accepts: {listed}")
    try:
        config = function(**options)
    except pydantic.ValidationError as e:
        raise UserError(f"config {path}: {describe_validation_error(e)}") from None
    if not isinstance(config, Config):
        raise UserError(
            f"config() of {path} returned {type(config).__name__}, not a vq Config model"
        )
    return config


def describe_validation_error(error: pydantic.ValidationError) -> str:
    """One line naming every invalid field and why."""
    parts = []
    for e in error.errors():
        where = "".join(
            f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"] if p is not None
        )
        message = e["msg"]
        if e["type"] == "extra_forbidden":
            message = "unknown field (misspelt?)"
        parts.append(f"{where or '(root)'}: {message}")
    return "; ".join(parts)


# ------------------------------------------------------------------ overrides -------


def parse_path(path: str) -> list[str | int]:
    """``.a.b[-1]['k']`` -> ['a', 'b', -1, 'k'] (must start with '.' or '[')."""
    if not path or path[0] not in ".[":
        raise UserError(f"override path {path!r} must start with '.' or '[' (e.g. .trainer.iters)")
    try:
        node = ast.parse("_" + path, mode="eval").body
    except SyntaxError:
        raise UserError(f"malformed override path {path!r}") from None
    steps: list[str | int] = []
    while not (isinstance(node, ast.Name) and node.id == "_"):
        if isinstance(node, ast.Attribute):
            steps.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Subscript):
            key = _literal(node.slice, path)
            if not isinstance(key, int | str) or isinstance(key, bool):
                raise UserError(f"override path {path!r}: index {key!r} is not an int or str")
            steps.append(key)
            node = node.value
        else:
            raise UserError(f"malformed override path {path!r}")
    return steps[::-1]


def _set_path(tree: Any, steps: list[str | int], value: Any, path: str) -> None:
    node = tree
    for depth, step in enumerate(steps):
        last = depth == len(steps) - 1
        here = path_string(steps[: depth + 1])
        if isinstance(node, dict):
            if not isinstance(step, str) and step not in node:
                raise UserError(f"override {path}: {here} does not exist")
            if last:
                node[step] = value
            elif step not in node:
                raise UserError(f"override {path}: {here} does not exist")
            else:
                node = node[step]
        elif isinstance(node, list):
            if not isinstance(step, int) or not -len(node) <= step < len(node):
                raise UserError(
                    f"override {path}: {here} is out of range (length {len(node)})"
                    if isinstance(step, int)
                    else f"override {path}: {here}: a list needs an integer index"
                )
            if last:
                node[step] = value
            else:
                node = node[step]
        else:
            raise UserError(
                f"override {path}: {path_string(steps[:depth])} is a value, not a container"
            )


def path_string(steps: list[str | int]) -> str:
    return "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps) or "(root)"


def apply_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """Set each ``path: value`` on ``config`` and validate the result again."""
    if not overrides:
        return config
    tree = config.model_dump(mode="python", round_trip=True)
    for path, value in overrides.items():
        steps = parse_path(path)
        if not steps:
            raise UserError(f"override path {path!r} names no field")
        _set_path(tree, steps, value, path)
    try:
        return type(config).model_validate(tree)
    except pydantic.ValidationError as e:
        raise UserError(f"override: {describe_validation_error(e)}") from None


# ------------------------------------------------------------------ dump ------------


def config_data(config: Config) -> Any:
    """The config as plain JSON-compatible Python data (dicts, lists, str, numbers)."""
    return json.loads(config.model_dump_json(round_trip=True))


def fingerprint(config: Config) -> str:
    """A short hash of the resolved config (identifies the run a checkpoint belongs to)."""
    canonical = json.dumps(config_data(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def dump_config(config: Config, header: str = "") -> str:
    """Python source of a config file that rebuilds ``config`` exactly."""
    cls = type(config)
    data = pprint.pformat(config_data(config), indent=1, width=96, sort_dicts=False)
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    return (
        f'"""Resolved config, written by vq; `train NAME THIS_FILE` runs it again."""\n'
        f"{comment}\n"
        f"from {cls.__module__} import {cls.__qualname__}\n\n"
        f"DATA = {data}\n\n\n"
        f"def config():\n"
        f"    return {cls.__qualname__}.model_validate(DATA)\n"
    )
