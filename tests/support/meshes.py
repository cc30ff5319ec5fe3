"""Starting a mesh of devtools.mesh (the code behind `make mesh`) for a fixture. In CI
(CI=true) a missing tool fails the tests, never skips them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from devtools.mesh import Mesh, run_mesh
from devtools.tools import Doc, ToolMissing
from tests.deploy.deploy_support import missing_tool

__all__ = ["start_mesh"]


def start_mesh(workdir: Path, values: Doc | None = None) -> Iterator[Mesh]:
    """Run a mesh for a fixture (the chart rendered with ``values`` laid over the host's): skip
    (or, in CI, fail) when a tool is missing."""
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
