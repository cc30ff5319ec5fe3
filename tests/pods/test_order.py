"""The pods start as the kubelet starts them: PostgreSQL's StatefulSet first, and in each pod
the native sidecar before the app container, which devtools.pods starts only once the sidecar's
startup probe has passed (the app's own probes ask the sidecar's health listener)."""

from __future__ import annotations

from datetime import datetime

import pytest

from devtools.pods import PodMesh

pytestmark = pytest.mark.pods


# Go's layout for an ISO 8601 time with microseconds.
ISO_LAYOUT = "2006-01-02T15:04:05.000000Z07:00"


def created_at(pods: PodMesh, component: str, container: str) -> datetime:
    """When a container was created and started (`podman run`; a restart keeps the time)."""
    name = pods.pod(component).container(container)
    result = pods.engine.run("inspect", "--format", f'{{{{.Created.Format "{ISO_LAYOUT}"}}}}', name)
    return datetime.fromisoformat(result.stdout.strip())


@pytest.mark.parametrize("component", ["auth", "chat"])
def test_the_sidecar_starts_before_its_app(pods: PodMesh, component: str) -> None:
    assert created_at(pods, component, "envoy") < created_at(pods, component, component)


def test_postgresql_starts_before_the_services(pods: PodMesh) -> None:
    database = created_at(pods, "postgresql", "postgresql")
    assert all(database < created_at(pods, c, "envoy") for c in ("auth", "chat", "edge"))
