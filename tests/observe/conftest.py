"""The mesh of `make mesh` for tests/observe, started once (tests/mesh's fixture code)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.mesh import Mesh
from tests.mesh.conftest import start_mesh


@pytest.fixture(scope="package")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """The mesh, with traffic to observe made by each test."""
    yield from start_mesh(tmp_path_factory.mktemp("mesh"))
