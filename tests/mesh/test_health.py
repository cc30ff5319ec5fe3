"""The sidecars' health listener follows the app's gRPC health: PostgreSQL, which both apps
need, is stopped (the apps turn NOT_SERVING, /healthz answers 503 while the liveness path
/livez/app stays 200) and started again (SERVING, 200). This module has a mesh of its own, so
the outage touches no other test."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest
from grpc_health.v1 import health_pb2

from devtools.mesh import COMPONENTS, Mesh, http_get, wait_until
from devtools.processes import health_status
from tests.support.meshes import start_mesh

pytestmark = pytest.mark.mesh

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# Envoy checks every 5 s and needs 2 failures (mesh.envoy.healthCheck): well within this.
DEADLINE = 45.0


@pytest.fixture(scope="module")
def own_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """A mesh whose PostgreSQL this module stops."""
    yield from start_mesh(tmp_path_factory.mktemp("health-mesh"))


def healthz(mesh: Mesh, component: str) -> int:
    """The status of a sidecar's /healthz."""
    return http_get(mesh.ports.component(component)["health"], "/healthz")[0]


def all_healthz(mesh: Mesh, status: int) -> bool:
    """Whether both sidecars' /healthz answer ``status``."""
    return all(healthz(mesh, component) == status for component in COMPONENTS)


def apps_not_serving(mesh: Mesh) -> bool:
    """Whether both apps report NOT_SERVING themselves."""
    return all(
        health_status(f"127.0.0.1:{mesh.ports.component(c)['app']}") == NOT_SERVING
        for c in COMPONENTS
    )


def test_health_listener_is_unhealthy_while_the_app_is_not_serving(own_mesh: Mesh) -> None:
    mesh = own_mesh
    assert mesh.postgres is not None
    assert all_healthz(mesh, 200)
    mesh.postgres.stop()
    try:
        wait_until(functools.partial(apps_not_serving, mesh), "the apps to turn NOT_SERVING", 30)
        wait_until(functools.partial(all_healthz, mesh, 503), "/healthz to answer 503", DEADLINE)
        # Envoy itself is live, the app too (its liveness does not follow the database), and
        # the mesh does not route to an app that is not serving.
        for component in COMPONENTS:
            assert http_get(mesh.ports.component(component)["health"], "/livez")[0] == 200
            assert http_get(mesh.ports.component(component)["health"], "/livez/app")[0] == 200
            assert health_status(f"127.0.0.1:{mesh.ports.component(component)['app']}") == (
                NOT_SERVING
            )
    finally:
        mesh.postgres.start_again()
    wait_until(functools.partial(all_healthz, mesh, 200), "/healthz to answer 200", DEADLINE)
    for component in COMPONENTS:
        assert mesh.serving_through_edge(component)
