"""The mesh of devtools.mesh (the code behind `make mesh`), started once for tests/mesh. In CI
(CI=true) a missing tool fails the tests, never skips them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.mesh import Mesh, run_mesh
from devtools.tools import Doc, ToolMissing
from tests.deploy.deploy_support import missing_tool


def start_mesh(workdir: Path, values: Doc | None = None) -> Iterator[Mesh]:
    """Run a mesh for a fixture (with chart ``values`` over those for one host): skip (or, in
    CI, fail) when a tool is missing."""
    try:
        context = run_mesh(workdir, values=values)
        mesh = context.__enter__()
    except ToolMissing as exc:
        missing_tool(str(exc))
        raise AssertionError("unreachable") from exc
    try:
        yield mesh
    finally:
        context.__exit__(None, None, None)


@pytest.fixture(scope="package")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """The mesh shared by the tests that do not disturb it (stopped after the last of them)."""
    yield from start_mesh(tmp_path_factory.mktemp("mesh"))
