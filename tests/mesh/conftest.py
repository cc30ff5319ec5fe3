"""The mesh of devtools.mesh (the code behind `make mesh`), started once for tests/mesh."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.mesh import Mesh
from tests.support.meshes import start_mesh


@pytest.fixture(scope="package")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """The mesh shared by the tests that do not disturb it (stopped after the last of them)."""
    yield from start_mesh(tmp_path_factory.mktemp("mesh"))
