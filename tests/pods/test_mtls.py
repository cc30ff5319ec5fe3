"""Each pod has its own network namespace: the apps' loopback ports cannot be reached from
outside their pod (which shared-host `make mesh` cannot show), and the sidecars' mTLS listeners,
bound on every address of their pod as rendered, refuse every caller but the allowed ones."""

from __future__ import annotations

import socket

import grpc
import pytest

from devtools.certs import CertificateAuthority
from devtools.mesh.values import chart_values
from devtools.pods import PodMesh
from tests.pods.clients import sidecar_health

pytestmark = pytest.mark.pods

COMPONENTS = ("auth", "chat")


def connects(host: str, port: int) -> bool:
    """Whether a TCP connection to host:port is accepted."""
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("component", COMPONENTS)
def test_the_app_is_reachable_only_inside_its_pod(pods: PodMesh, component: str) -> None:
    values = chart_values()[component]
    host, inbound = pods.sidecar_address(component, "inbound")
    # As rendered: the app on 127.0.0.1 of its pod, the sidecar on every address of it.
    assert values["listen"]["address"] == "127.0.0.1"
    assert connects(host, inbound)
    assert not connects(host, int(values["listen"]["port"]))
    assert not connects(host, int(values["metricsListen"]["port"]))


@pytest.mark.parametrize("component", COMPONENTS)
def test_the_edge_identity_gets_through(pods: PodMesh, component: str) -> None:
    edge = pods.ca.issue(pods.identity("edge"), [pods.identity("edge")])
    assert sidecar_health(pods, component, edge) == grpc.StatusCode.OK


@pytest.mark.parametrize("component", COMPONENTS)
def test_no_client_certificate_is_refused(pods: PodMesh, component: str) -> None:
    assert sidecar_health(pods, component, None) == grpc.StatusCode.UNAVAILABLE


def test_a_certificate_from_another_ca_is_refused(pods: PodMesh) -> None:
    other = CertificateAuthority("another CA").issue(pods.identity("edge"), [pods.identity("edge")])
    assert sidecar_health(pods, "auth", other) == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("component", "caller"),
    [
        ("auth", "meshchat-intruder.meshchat.mesh.internal"),
        # chat's own identity: auth allows it, chat's listener does not.
        ("chat", "meshchat-chat.meshchat.mesh.internal"),
    ],
)
def test_a_mesh_certificate_of_a_caller_not_allowed_is_refused(
    pods: PodMesh, component: str, caller: str
) -> None:
    client = pods.ca.issue(caller, [caller])
    assert sidecar_health(pods, component, client) == grpc.StatusCode.UNAVAILABLE
    if caller == pods.identity("chat"):
        assert sidecar_health(pods, "auth", client) == grpc.StatusCode.OK
