"""The import graph of the code outside tests/: no cycles, and nothing imports ``tests``.

The graph is read with :mod:`ast`, without importing anything. Its nodes are the modules of
services/ and client/ (source roots, as installed) and of the top-level packages scripts/,
benchmarks/ and devtools/ (when present). An import names a module when that module is in the
graph (``from a.b import c`` names ``a.b.c`` when that is a module, else ``a.b``); imports of
anything else are left out, except ``tests``, which is what the second rule looks for.

Every import statement counts, wherever it stands: at module level, inside a function or
under ``if TYPE_CHECKING``. The rule needs that: the chat store's cycle of issue 9 went through a
function-level import (``open_store`` importing the PostgreSQL backend, which imported the
store module back) and the client's through a ``TYPE_CHECKING`` one, and neither is visible
at module level. Such an import only hides a cycle from Python's import machinery until the
function runs; the two modules still cannot be read, changed or tested apart. Importing a
submodule runs its package's ``__init__`` first, but that is not an edge: it closes a cycle
only when the submodule imports the package back, which is an edge of its own.
"""

from __future__ import annotations

import ast
import graphlib
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE_ROOTS = (ROOT / "services", ROOT / "client")
TOP_LEVEL_PACKAGES = ("scripts", "benchmarks", "devtools")

Graph = dict[str, set[str]]


def module_files(roots: tuple[Path, ...], packages: tuple[str, ...], base: Path) -> dict[str, Path]:
    """Every module name with its file: those under ``roots`` named from the root, and those
    of the ``packages`` folders of ``base`` named from ``base``."""
    found: dict[str, Path] = {}
    folders = [(root, root) for root in roots]
    folders += [(base / name, base) for name in packages if (base / name).is_dir()]
    for folder, root in folders:
        for path in folder.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _imported_names(module: str, path: Path, known: Collection[str]) -> Iterator[str]:
    """The absolute dotted names of what the module's import statements import: for
    ``from a import b`` that is ``a.b`` when it is one of the ``known`` modules, else ``a``."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                anchor = parts[: len(parts) - node.level + 1]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield submodule if submodule in known else base


def import_graph(files: dict[str, Path]) -> tuple[Graph, dict[str, set[str]]]:
    """The edges among ``files``' modules (each module to those it imports), and the names
    under ``tests`` that each module imports."""
    graph: Graph = {module: set() for module in files}
    of_tests: dict[str, set[str]] = {}
    for module, path in files.items():
        for name in _imported_names(module, path, files):
            if name in files:
                graph[module].add(name)
            if name == "tests" or name.startswith("tests."):
                of_tests.setdefault(module, set()).add(name)
    return graph, of_tests


def find_cycle(graph: Graph) -> list[str] | None:
    """One cycle of ``graph`` as a path whose last module is its first, or None."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        cycle: list[str] = error.args[1]
        # graphlib lists it along the edges reversed (a node, then what it is imported by).
        return cycle[::-1]
    return None


@pytest.fixture(scope="module")
def graph_and_tests_imports() -> tuple[Graph, dict[str, set[str]]]:
    return import_graph(module_files(SOURCE_ROOTS, TOP_LEVEL_PACKAGES, ROOT))


def test_the_graph_is_read(graph_and_tests_imports: tuple[Graph, dict[str, set[str]]]) -> None:
    graph, _ = graph_and_tests_imports
    assert "meshchat_chat.store.sqlite" in graph["meshchat_chat.store"]
    assert "meshchat_chat.store" in graph["meshchat_chat.fanout.hub"]
    assert "meshchat_cli.app" in graph
    assert "scripts.mesh" in graph


def test_no_module_outside_tests_is_part_of_an_import_cycle(
    graph_and_tests_imports: tuple[Graph, dict[str, set[str]]],
) -> None:
    graph, _ = graph_and_tests_imports
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_module_outside_tests_imports_tests(
    graph_and_tests_imports: tuple[Graph, dict[str, set[str]]],
) -> None:
    _, of_tests = graph_and_tests_imports
    offenders = {module: sorted(names) for module, names in sorted(of_tests.items())}
    assert not offenders, f"modules outside tests/ import the test tree: {offenders}"


def test_a_cycle_is_found_and_a_lazy_import_counts(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("def later() -> None:\n    from . import c\n")
    (package / "c.py").write_text("import pkg.a\nimport tests.support\n")
    graph, of_tests = import_graph(module_files((tmp_path,), (), tmp_path))
    assert find_cycle(graph) in (
        ["pkg.a", "pkg.b", "pkg.c", "pkg.a"],
        ["pkg.b", "pkg.c", "pkg.a", "pkg.b"],
        ["pkg.c", "pkg.a", "pkg.b", "pkg.c"],
    )
    assert of_tests == {"pkg.c": {"tests.support"}}
