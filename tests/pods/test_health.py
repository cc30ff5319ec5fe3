"""The sidecars' health listener follows the app's gRPC health in the pods too: the PostgreSQL
container is stopped (both apps turn NOT_SERVING, /healthz answers 503 at the pods' addresses
while /livez/app stays 200) and started again (SERVING through the edge, 200)."""

from __future__ import annotations

import functools
import http.client

import pytest

from devtools.mesh import wait_until
from devtools.pods import PodMesh

pytestmark = pytest.mark.pods

COMPONENTS = ("auth", "chat")
# Envoy checks the app every 5 s and needs 2 failures (mesh.envoy.healthCheck); the database
# stops and starts in seconds.
DEADLINE = 45.0


def status(pods: PodMesh, component: str, path: str) -> int:
    """The status of a sidecar health listener's path, at its pod's address."""
    host, port = pods.sidecar_address(component, "health")
    connection = http.client.HTTPConnection(host, port, timeout=3)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


def all_healthz(pods: PodMesh, expected: int) -> bool:
    """Whether both sidecars' /healthz answer ``expected``."""
    return all(status(pods, component, "/healthz") == expected for component in COMPONENTS)


def test_healthz_follows_the_apps_through_a_database_outage(pods: PodMesh) -> None:
    assert all_healthz(pods, 200)
    pods.stop_container("postgresql", "postgresql")
    try:
        wait_until(functools.partial(all_healthz, pods, 503), "/healthz to answer 503", DEADLINE)
        for component in COMPONENTS:
            assert status(pods, component, "/livez") == 200
            assert status(pods, component, "/livez/app") == 200, "liveness ignores the database"
            assert not pods.serving_through_edge(component)
    finally:
        pods.start_container("postgresql", "postgresql")
    wait_until(functools.partial(all_healthz, pods, 200), "/healthz to answer 200", DEADLINE)
    for component in COMPONENTS:
        wait_until(
            functools.partial(pods.serving_through_edge, component),
            f"{component} SERVING through the edge",
            DEADLINE,
        )
