"""The import structure of the package: the layer contract and the ban on cycles (pyproject.toml, checked
by lint-imports) hold, and an import that goes upward or closes a cycle breaks them; no module of the
package imports another in a cycle, counting every import statement (inside functions and under
TYPE_CHECKING too), and none imports another inside a function."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "shortcut_models"
LINT = Path(sys.executable).with_name("lint-imports")

needs_lint = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (pip install -e '.[dev]')")


def lint(package_parent: Path, cwd: Path) -> subprocess.CompletedProcess:
    """lint-imports with the project's contract on the ``shortcut_models`` found in ``package_parent``."""
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run(
        [str(LINT), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def package_copy(tmp_path: Path, module: str, planted: str) -> Path:
    """A copy of the package under ``tmp_path/pkg`` with ``planted`` appended to ``module``; its path."""
    copy = tmp_path / "pkg" / "shortcut_models"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text(target.read_text() + f"\n{planted}\n")
    return copy


@needs_lint
def test_the_package_keeps_its_layers(tmp_path):
    result = lint(ROOT / "src", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "KEPT" in result.stdout


@needs_lint
@pytest.mark.parametrize(
    "module, upward",
    [
        ("models/mlp.py", "from ..training import trainer"),  # the bottom layer reaching the top
        ("objectives/base.py", "from .. import checkpoints"),  # maths reaching the run files
        ("data/sources.py", "from .. import inference"),  # data reaching the sampler
        ("training/ema.py", "from .. import evaluation"),  # two siblings of one layer
    ],
)
def test_an_upward_import_breaks_the_contract(tmp_path, module, upward):
    package_copy(tmp_path, module, f"{upward}  # noqa: E402,F401")
    result = lint(tmp_path / "pkg", tmp_path)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout
    importer = "shortcut_models." + module.removesuffix(".py").replace("/", ".")
    assert importer in result.stdout, result.stdout


# A cycle between two modules of one package, seen only by a type checker (the one the DiT had: dit.py
# imported its JVP module, which imported dit.py's classes for its type hints).
TYPE_CHECKING_CYCLE = ("models/primitives.py", "import typing\n\nif typing.TYPE_CHECKING:\n    from .dit import DiT")


@needs_lint
def test_a_cycle_breaks_the_contract(tmp_path):
    package_copy(tmp_path, *TYPE_CHECKING_CYCLE)
    result = lint(tmp_path / "pkg", tmp_path)
    assert result.returncode != 0, result.stdout
    assert "No cycles are allowed in shortcut_models.models" in result.stdout, result.stdout


class Import(NamedTuple):
    importer: str  # module names, e.g. shortcut_models.models.dit
    imported: str
    line: int
    in_function: bool


def module_names(package: Path) -> dict[str, Path]:
    """Every module of the package (a package by its __init__.py) by its dotted name."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def import_statements(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement of a module, wherever it stands, and whether it is inside a function."""

    def visit(node: ast.AST, in_function: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, in_function
            yield from visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    yield from visit(tree, False)


def imported_modules(node: ast.Import | ast.ImportFrom, importer: str, path: Path, modules: dict) -> list[str]:
    """The package's modules that one import statement of ``importer`` (at ``path``) imports."""
    root = importer.split(".")[0]

    def module_of(name: str) -> str:  # the longest prefix of a dotted name that is a module
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        return name

    if isinstance(node, ast.Import):
        return [module_of(a.name) for a in node.names if a.name.split(".")[0] == root]
    if node.level:
        base = importer.split(".")[: None if path.name == "__init__.py" else -1]
        base = base[: len(base) - node.level + 1]
        source = ".".join([*base, node.module] if node.module else base)
    else:
        source = node.module or ""
    if source.split(".")[0] != root:
        return []
    return [
        module_of(f"{source}.{a.name}") if f"{source}.{a.name}" in modules else module_of(source) for a in node.names
    ]


def internal_imports(package: Path) -> list[Import]:
    """Every import of one of the package's modules by another, from every statement of every module."""
    modules = module_names(package)
    found = []
    for importer, path in modules.items():
        for node, in_function in import_statements(ast.parse(path.read_text(), str(path))):
            for imported in imported_modules(node, importer, path, modules):
                found.append(Import(importer, imported, node.lineno, in_function))
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of a directed graph as [a, b, ..., a] (a module importing itself is [a, a]), or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in done and (cycle := visit(nxt)):
                return cycle
        path.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        if node not in done and (cycle := visit(node)):
            return cycle
    return None


def import_graph(imports: list[Import]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for i in imports:
        graph.setdefault(i.importer, set()).add(i.imported)
    return graph


@pytest.mark.parametrize(
    "graph, cycle",
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b", "c"}, "b": {"c"}, "c": set(), "d": {"a"}}, None),  # two paths to c: no cycle
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"b"}, "b": {"c"}, "c": {"b"}, "d": {"a"}}, ["b", "c", "b"]),
        ({"a": {"a"}}, ["a", "a"]),
    ],
)
def test_the_cycle_finder_on_small_graphs(graph, cycle):
    assert find_cycle(graph) == cycle


def test_the_package_has_no_import_cycle():
    imports = internal_imports(PACKAGE)
    graph = import_graph(imports)
    assert len(imports) > 600  # every module's imports were read (about 900 names)
    assert "shortcut_models.models.primitives" in graph["shortcut_models.models.dit"]
    assert find_cycle(graph) is None


# The boundary of the optional diffusers integration (docs/architecture.md): the classes that subclass
# diffusers' types are imported when an export starts, so the `shortcut` command never imports diffusers.
DIFFUSERS_BOUNDARY = {
    ("shortcut_models.diffusers.export", f"shortcut_models.diffusers.{name}")
    for name in ("network", "pipeline", "scheduler")
}


def test_no_internal_import_inside_a_function():
    """docs/architecture.md: lazy imports are kept for heavy optional packages only (and the diffusers boundary)."""
    local = {(i.importer, i.imported) for i in internal_imports(PACKAGE) if i.in_function}
    assert local == DIFFUSERS_BOUNDARY


@pytest.mark.parametrize(
    "module, planted, in_function",
    [
        (*TYPE_CHECKING_CYCLE, False),
        ("models/primitives.py", "def planted():\n    from . import dit", True),
        ("models/primitives.py", "def planted():\n    from .dit import DiT", True),
        ("guidance.py", "import shortcut_models.models.embeddings", False),  # embeddings imports guidance
        ("models/primitives.py", "from .. import models", False),  # the package imports dit, dit primitives
    ],
)
def test_a_planted_cycle_is_found(tmp_path, module, planted, in_function):
    copy = package_copy(tmp_path, module, planted)
    imports = internal_imports(copy)
    importer = "shortcut_models." + module.removesuffix(".py").replace("/", ".")
    before = internal_imports(PACKAGE)
    new = [i for i in imports if i.importer == importer and i not in before]
    assert len(new) == 1 and new[0].in_function == in_function, new
    cycle = find_cycle(import_graph(imports))
    assert cycle is not None and importer in cycle and new[0].imported in cycle, cycle
