"""The chart's pods as podman pods (devtools.pods, the code behind `make mesh-pods`), started once
for tests/pods. Without podman the tests are skipped with the reason; in CI (CI=true) that fails."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.pods import PodMesh, PodsUnavailable, run_pod_mesh
from devtools.tools import ToolMissing
from tests.deploy.deploy_support import missing_tool


@pytest.fixture(scope="package")
def pods(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodMesh]:
    """The pods, shared by every test here (each test leaves them as it found them)."""
    try:
        context = run_pod_mesh(tmp_path_factory.mktemp("pods"))
        mesh = context.__enter__()
    except (PodsUnavailable, ToolMissing) as exc:
        missing_tool(str(exc))
        raise AssertionError("unreachable") from exc
    try:
        yield mesh
    finally:
        context.__exit__(None, None, None)
