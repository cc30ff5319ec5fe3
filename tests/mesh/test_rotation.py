"""Certificate rotation through file-based SDS: new files in the mounted directory, published as
the kubelet publishes a changed Secret, are used by new connections; Envoy is not restarted."""

from __future__ import annotations

import functools

import pytest

from devtools.mesh import Mesh, wait_until
from tests.mesh.clients import inbound_port, served_certificate

pytestmark = pytest.mark.mesh


def sds_updates(mesh: Mesh, stat: str) -> int:
    """An SDS update counter of the auth sidecar."""
    return mesh.envoy_stats("auth")[stat]


def test_a_rotated_certificate_is_served_without_restarting_envoy(mesh: Mesh) -> None:
    client = mesh.ca.issue(mesh.identity("edge"), [mesh.identity("edge")])
    envoy = mesh.children["auth-envoy"]
    pid = envoy.process.pid
    uptime = mesh.envoy_stats("auth")["server.uptime"]
    stat = (
        f"listener.127.0.0.1_{inbound_port(mesh, 'auth')}"
        ".server_ssl_socket_factory.ssl_context_update_by_sds"
    )
    before = sds_updates(mesh, stat)
    old = served_certificate(mesh, "auth", client)

    rotated = mesh.rotate_certificate("auth")
    wait_until(lambda: sds_updates(mesh, stat) > before, "the SDS update of the auth sidecar", 30)

    new = served_certificate(mesh, "auth", client)
    assert new.serial_number == rotated.certificate.serial_number
    assert new.serial_number != old.serial_number
    # The same Envoy process, still running, its uptime counting on.
    assert envoy.alive
    assert envoy.process.pid == pid
    assert mesh.envoy_stats("auth")["server.uptime"] >= uptime
    # Its peers accept the new certificate: the edge reaches auth through it.
    wait_until(functools.partial(mesh.serving_through_edge, "auth"), "auth through the edge", 30)
