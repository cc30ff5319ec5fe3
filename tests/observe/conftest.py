"""The mesh of `make mesh` for tests/observe, started once (tests.support.meshes), with
tracing to a test OTLP receiver: every request sampled."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.mesh import Mesh
from tests.observe.otlp import OtlpReceiver
from tests.support.meshes import start_mesh


@pytest.fixture(scope="package")
def otlp() -> Iterator[OtlpReceiver]:
    """The receiver the mesh's Envoys and apps export their spans to."""
    receiver = OtlpReceiver()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="package")
def mesh(tmp_path_factory: pytest.TempPathFactory, otlp: OtlpReceiver) -> Iterator[Mesh]:
    """The mesh, tracing every request to ``otlp``; each test makes the traffic it observes."""
    tracing = {"collector": {"address": "127.0.0.1", "port": otlp.port}, "samplingRatio": 1.0}
    yield from start_mesh(tmp_path_factory.mktemp("mesh"), {"tracing": tracing})
