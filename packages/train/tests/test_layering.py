"""The workspace's import rules (docs: DESIGN.md, "Packages"), read from the source itself.

Every ``.py`` under ``packages/*/src`` is parsed (never imported) and each ``import`` /
``from ... import`` is resolved to an absolute module, relative ones included, imports
inside functions included. The rules:

* layering: ``vq.core`` imports no other ``vq`` package, ``vq.tokenizers`` only
  ``vq.core``, ``vq.decoders`` only tokenizers and core, ``vq.generators`` only core,
  ``vq.train`` anything; no trainer module of ``vq.train.trainers`` imports another;
* ``import vq.tokenizers`` (any of its modules, and what they import from ``vq.core`` when
  they are imported) imports no torch-fidelity and no TensorBoard;
* each package's ``pyproject.toml`` declares exactly the ``vq-*`` packages it imports.

A violation is reported as ``file:line: what``; the tests at the end feed the scanner a
synthetic tree with one wrong arrow of each kind and check that it names them.
"""

from __future__ import annotations

import ast
import tomllib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

ALLOWED: dict[str, set[str] | None] = {  # package -> the vq packages it may import (None: any)
    "core": set(),
    "tokenizers": {"core"},
    "decoders": {"tokenizers", "core"},
    "generators": {"core"},
    "train": None,
}
TRAINERS = "vq.train.trainers"
# What ``import vq.tokenizers`` must not import (DESIGN.md: no torch-fidelity, no TensorBoard).
TRAINING_ONLY = ("torch_fidelity", "tensorboard", "tensorboardX", "torch.utils.tensorboard")


@dataclass(frozen=True)
class Import:
    file: Path
    line: int
    importer: str  # dotted name of the importing module
    module: str  # the imported module, absolute
    at_import_time: bool  # False inside a function body or an ``if TYPE_CHECKING:`` block

    def where(self, root: Path) -> str:
        return f"{self.file.relative_to(root)}:{self.line}"


def module_name(src: Path, file: Path) -> str:
    parts = file.relative_to(src).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Collector(ast.NodeVisitor):
    """The imports of one file, each with the module it names resolved."""

    def __init__(self, file: Path, importer: str, modules: set[str]) -> None:
        self.file, self.importer, self.modules = file, importer, modules
        # The package a relative import starts from: the module's own for ``__init__.py``.
        self.package = importer if file.name == "__init__.py" else importer.rpartition(".")[0]
        self.deferred = 0  # depth of function bodies and TYPE_CHECKING blocks
        self.found: list[Import] = []

    def add(self, node: ast.stmt, module: str) -> None:
        self.found.append(Import(self.file, node.lineno, self.importer, module, not self.deferred))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.add(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            anchor = self.package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, *([node.module] if node.module else [])])
        for alias in node.names:
            candidate = f"{base}.{alias.name}"  # ``from pkg import submodule``
            self.add(node, candidate if candidate in self.modules else base)

    def _deferred(self, node: ast.AST) -> None:
        self.deferred += 1
        self.generic_visit(node)
        self.deferred -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _deferred

    def visit_If(self, node: ast.If) -> None:
        if not is_type_checking(node.test):
            self.generic_visit(node)
            return
        self.deferred += 1
        for child in node.body:
            self.visit(child)
        self.deferred -= 1
        for child in node.orelse:
            self.visit(child)


def scan(root: Path) -> tuple[dict[str, Path], list[Import]]:
    """Every module under ``root/packages/*/src`` (name -> file) and every import in them."""
    files = {
        module_name(src, file): file
        for src in sorted(root.glob("packages/*/src"))
        for file in sorted(src.rglob("*.py"))
    }
    imports: list[Import] = []
    for name, file in files.items():
        collector = _Collector(file, name, set(files))
        collector.visit(ast.parse(file.read_text(), filename=str(file)))
        imports += collector.found
    return files, imports


def package_of(module: str) -> str | None:
    """``vq.tokenizers.api`` -> ``tokenizers``; None outside the ``vq`` namespace."""
    parts = module.split(".")
    return parts[1] if parts[0] == "vq" and len(parts) > 1 else None


def trainer_of(module: str) -> str | None:
    """``vq.train.trainers.vqkd[.x]`` -> ``vqkd``; None outside the trainer modules."""
    rest = module.removeprefix(TRAINERS + ".")
    return rest.split(".")[0] if rest != module else None


def layering_violations(root: Path, imports: Iterable[Import]) -> list[str]:
    found = []
    for imp in imports:
        source, target = package_of(imp.importer), package_of(imp.module)
        allowed = ALLOWED.get(source or "")
        if target and target != source and allowed is not None and target not in allowed:
            may = ", ".join(f"vq.{p}" for p in sorted(allowed)) or "no other vq package"
            found.append(
                f"{imp.where(root)}: {imp.importer} imports {imp.module} (vq.{source} may import {may})"
            )
        mine, theirs = trainer_of(imp.importer), trainer_of(imp.module)
        if mine and theirs and mine != theirs:
            found.append(f"{imp.where(root)}: trainer {imp.importer} imports trainer {imp.module}")
    return found


def import_time_closure(imports: Iterable[Import], starts: Iterable[str]) -> dict[str, str]:
    """Every vq module that importing ``starts`` runs -> the module whose import ran it
    (``""`` for a start); breadth first, so following it back gives a shortest chain."""
    edges: dict[str, list[str]] = {}
    for imp in imports:
        if imp.at_import_time and package_of(imp.module):
            edges.setdefault(imp.importer, []).append(imp.module)
    ran_by: dict[str, str] = {}
    queue = deque((start, "") for start in starts)
    while queue:
        module, by = queue.popleft()
        parts = module.split(".")
        for name in (".".join(parts[:n]) for n in range(2, len(parts) + 1)):  # parents first
            if name not in ran_by:
                ran_by[name] = by
                queue.extend((target, name) for target in edges.get(name, ()))
    return ran_by


def chain(ran_by: dict[str, str], module: str) -> str:
    """``vq.tokenizers.x -> vq.core.y -> module``: how importing a start runs ``module``."""
    steps = [module]
    while ran_by[steps[-1]]:
        steps.append(ran_by[steps[-1]])
    return " -> ".join(reversed(steps))


def training_imports_of_tokenizers(
    root: Path, modules: Iterable[str], imports: list[Import]
) -> list[str]:
    ran_by = import_time_closure(imports, [m for m in modules if package_of(m) == "tokenizers"])
    return [
        f"{imp.where(root)}: {imp.module} is imported by import {chain(ran_by, imp.importer)}"
        for imp in imports
        if imp.at_import_time
        and imp.importer in ran_by
        and any(imp.module == bad or imp.module.startswith(bad + ".") for bad in TRAINING_ONLY)
    ]


def declared_workspace_packages(pyproject: Path) -> set[str]:
    """``vq-core[train]`` -> ``core``: the vq packages of ``[project] dependencies``."""
    requirements = tomllib.loads(pyproject.read_text())["project"].get("dependencies", [])
    names = (
        r.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0]
        for r in requirements
    )
    return {n.strip().removeprefix("vq-") for n in names if n.strip().startswith("vq-")}


def dependency_violations(root: Path, imports: list[Import]) -> list[str]:
    found = []
    for pyproject in sorted(root.glob("packages/*/pyproject.toml")):
        package = tomllib.loads(pyproject.read_text())["project"]["name"].removeprefix("vq-")
        declared = declared_workspace_packages(pyproject)
        first_use: dict[str, Import] = {}
        for imp in imports:
            target = package_of(imp.module)
            if package_of(imp.importer) == package and target and target != package:
                first_use.setdefault(target, imp)
        where = pyproject.relative_to(root)
        for target in sorted(first_use.keys() - declared):
            found.append(
                f"{first_use[target].where(root)}: vq.{package} imports vq.{target}, which {where} does not declare (vq-{target})"
            )
        for target in sorted(declared - first_use.keys()):
            found.append(f"{where}: declares vq-{target}, which no module of vq.{package} imports")
    return found


# ------------------------------------------------------------------ the workspace ------


def test_the_packages_import_only_downwards() -> None:
    modules, imports = scan(REPO)
    # The scan sees every package, lazy imports and the arrows that must exist.
    assert {package_of(m) for m in modules} == set(ALLOWED)
    assert any(not imp.at_import_time for imp in imports)
    arrows = {(package_of(i.importer), package_of(i.module)) for i in imports}
    assert {("tokenizers", "core"), ("decoders", "tokenizers"), ("train", "generators")} <= arrows
    assert sum(trainer_of(m) is not None for m in modules) >= 5
    assert layering_violations(REPO, imports) == []


def test_import_vq_tokenizers_imports_no_training_library() -> None:
    modules, imports = scan(REPO)
    reached = import_time_closure(imports, [m for m in modules if package_of(m) == "tokenizers"])
    assert "vq.core.config" in reached  # the scan follows tokenizers into core
    assert training_imports_of_tokenizers(REPO, modules, imports) == []


def test_each_package_declares_the_vq_packages_it_imports() -> None:
    _, imports = scan(REPO)
    assert dependency_violations(REPO, imports) == []


# ------------------------------------------------------------------ the scanner fails ---

SYNTHETIC = {
    "core/pyproject.toml": '[project]\nname = "vq-core"\ndependencies = ["torch"]\n',
    "core/src/vq/core/__init__.py": "",
    "core/src/vq/core/config.py": "import torch\n",
    # Imported when vq.tokenizers is: a module-level TensorBoard import.
    "core/src/vq/core/board.py": "from torch.utils.tensorboard import SummaryWriter\n",
    # Lazily: fine for the import-time rule.
    "core/src/vq/core/log.py": "def f():\n    import tensorboard\n",
    "tokenizers/pyproject.toml": (
        '[project]\nname = "vq-tokenizers"\ndependencies = ["vq-core[x]>=0.1", "vq-decoders"]\n'
    ),
    "tokenizers/src/vq/tokenizers/__init__.py": "from vq.core import config\n",
    "tokenizers/src/vq/tokenizers/models/__init__.py": "from . import vqkd\n",
    # A relative import up into vq.train, inside a function.
    "tokenizers/src/vq/tokenizers/models/vqkd.py": (
        "from ...core import board\n\n\ndef f():\n    from ...train.cli import main\n"
    ),
    "decoders/pyproject.toml": '[project]\nname = "vq-decoders"\ndependencies = []\n',
    "decoders/src/vq/decoders/__init__.py": "",
    "train/pyproject.toml": '[project]\nname = "vq-train"\ndependencies = []\n',
    "train/src/vq/train/__init__.py": "",
    "train/src/vq/train/cli.py": "import vq.tokenizers\n",
    "train/src/vq/train/trainers/__init__.py": "",
    "train/src/vq/train/trainers/vqgan.py": "from vq.train import cli\n",
    "train/src/vq/train/trainers/vqkd.py": "from vq.train.trainers import vqgan\n",
}


def test_the_scanner_names_each_wrong_arrow(tmp_path: Path) -> None:
    for name, text in SYNTHETIC.items():
        (tmp_path / "packages" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "packages" / name).write_text(text)
    modules, imports = scan(tmp_path)
    base = "packages/tokenizers/src/vq/tokenizers/models/vqkd.py"
    assert layering_violations(tmp_path, imports) == [
        f"{base}:5: vq.tokenizers.models.vqkd imports vq.train.cli (vq.tokenizers may import vq.core)",
        "packages/train/src/vq/train/trainers/vqkd.py:1: trainer vq.train.trainers.vqkd imports "
        "trainer vq.train.trainers.vqgan",
    ]
    assert training_imports_of_tokenizers(tmp_path, modules, imports) == [
        "packages/core/src/vq/core/board.py:1: torch.utils.tensorboard is imported by import "
        "vq.tokenizers.models.vqkd -> vq.core.board"
    ]
    assert dependency_violations(tmp_path, imports) == [
        f"{base}:5: vq.tokenizers imports vq.train, which packages/tokenizers/pyproject.toml "
        "does not declare (vq-train)",
        "packages/tokenizers/pyproject.toml: declares vq-decoders, which no module of "
        "vq.tokenizers imports",
        "packages/train/src/vq/train/cli.py:1: vq.train imports vq.tokenizers, which "
        "packages/train/pyproject.toml does not declare (vq-tokenizers)",
    ]
