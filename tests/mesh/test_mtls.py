"""mTLS holds at the sidecars' inbound listeners, and the apps are behind their sidecars.

Shared-host mode (see docs/mesh.md, "Shared host, not network namespaces"): every process
shares this host's loopback interface, so nothing here can show that another process on the
host is unable to reach an app's port; what is shown is that the apps bind loopback only, on
ports that are not the sidecars', and that the only way in that the mesh configures is through
a sidecar's mTLS listener."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import grpc
import pytest
import yaml

from devtools.certs import CertificateAuthority
from devtools.mesh import COMPONENTS, Mesh
from tests.mesh.clients import inbound_port, sidecar_health

pytestmark = pytest.mark.mesh


def listener_stat(mesh: Mesh, component: str, name: str) -> int:
    """An SSL statistic of a sidecar's inbound listener."""
    stats = mesh.envoy_stats(component)
    return stats[f"listener.127.0.0.1_{inbound_port(mesh, component)}.ssl.{name}"]


@pytest.mark.parametrize("component", COMPONENTS)
def test_an_allowed_caller_with_a_mesh_certificate_gets_through(mesh: Mesh, component: str) -> None:
    ingress = mesh.ca.issue(mesh.identity("edge"), [mesh.identity("edge")])
    assert sidecar_health(mesh, component, ingress) == grpc.StatusCode.OK


@pytest.mark.parametrize("component", COMPONENTS)
def test_plaintext_to_an_inbound_listener_fails(mesh: Mesh, component: str) -> None:
    ingress = mesh.ca.issue(mesh.identity("edge"), [mesh.identity("edge")])
    assert sidecar_health(mesh, component, ingress, tls=False) == grpc.StatusCode.UNAVAILABLE


def test_a_client_certificate_from_another_ca_fails_the_handshake(mesh: Mesh) -> None:
    # The allowed caller's identity, but signed by a CA the mesh does not trust.
    other = CertificateAuthority("another CA").issue(mesh.identity("edge"), [mesh.identity("edge")])
    before = listener_stat(mesh, "auth", "fail_verify_error")
    assert sidecar_health(mesh, "auth", other) == grpc.StatusCode.UNAVAILABLE
    assert listener_stat(mesh, "auth", "fail_verify_error") > before


def test_no_client_certificate_fails_the_handshake(mesh: Mesh) -> None:
    before = listener_stat(mesh, "chat", "fail_verify_no_cert")
    assert sidecar_health(mesh, "chat", None) == grpc.StatusCode.UNAVAILABLE
    assert listener_stat(mesh, "chat", "fail_verify_no_cert") > before


@pytest.mark.parametrize(
    ("component", "caller"),
    [
        # A valid mesh certificate with a name no allow-list has.
        ("auth", "meshchat-intruder.meshchat.mesh.internal"),
        # The chat service's own identity: auth accepts it, chat's own listener does not.
        ("chat", "meshchat-chat.meshchat.mesh.internal"),
    ],
)
def test_a_mesh_certificate_of_a_caller_not_allowed_is_rejected(
    mesh: Mesh, component: str, caller: str
) -> None:
    client = mesh.ca.issue(caller, [caller])
    before = listener_stat(mesh, component, "fail_verify_san")
    assert sidecar_health(mesh, component, client) == grpc.StatusCode.UNAVAILABLE
    assert listener_stat(mesh, component, "fail_verify_san") > before
    # The same certificate where its identity is allowed: chat may call auth.
    if caller == mesh.identity("chat"):
        assert sidecar_health(mesh, "auth", client) == grpc.StatusCode.OK


def listening_sockets(pid: int) -> set[tuple[str, int]]:
    """The TCP addresses (IPv4 and IPv6) on which a process listens, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = fd.readlink() if fd.is_symlink() else Path()
        if str(target).startswith("socket:["):
            inodes.add(str(target)[len("socket:[") : -1])
    found = set()
    for table in ("tcp", "tcp6"):
        for row in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                address, port = local.split(":")
                found.add((_address(address), int(port, 16)))
    return found


def _address(hex_address: str) -> str:
    """An address of /proc/net/tcp{,6}: 32-bit words in host (little-endian) order. An
    IPv4-mapped IPv6 address is given as its IPv4 address."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if len(words) == 4:
        return str(ipaddress.IPv4Address(words))
    address = ipaddress.IPv6Address(words)
    return str(address.ipv4_mapped or address)


@pytest.mark.parametrize("component", COMPONENTS)
def test_the_apps_listen_on_loopback_only_and_the_mesh_reaches_them_only_via_sidecars(
    mesh: Mesh, component: str
) -> None:
    ports = mesh.ports.component(component)
    app = mesh.children[component].process.pid
    assert listening_sockets(app) == {
        ("127.0.0.1", ports["app"]),
        ("127.0.0.1", ports["app_metrics"]),
    }
    sidecar = {ports[name] for name in ("inbound", "health", "metrics", "admin")}
    assert {ports["app"], ports["app_metrics"]}.isdisjoint(sidecar)
    envoy = mesh.children[f"{component}-envoy"].process.pid
    assert {port for _, port in listening_sockets(envoy)} >= sidecar
    # The edge sends to the sidecars' mTLS listeners, never to an app's port.
    edge = yaml.safe_load((mesh.workdir / "edge" / "envoy-config" / "envoy.yaml").read_text())
    upstream_ports = {
        endpoint["endpoint"]["address"]["socket_address"]["port_value"]
        for cluster in edge["static_resources"]["clusters"]
        for group in cluster["load_assignment"]["endpoints"]
        for endpoint in group["lb_endpoints"]
    }
    assert ports["inbound"] in upstream_ports
    assert ports["app"] not in upstream_ports
