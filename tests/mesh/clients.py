"""Clients of the mesh: the CLI through the edge, calls straight to a sidecar's inbound listener
with or without a certificate, gRPC calls by curl from another local address, and the Envoys'
access logs."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from grpc_health.v1 import health_pb2

from devtools.certs import Leaf
from devtools.mesh import Mesh
from devtools.processes import health_stub
from tests.deploy.deploy_support import missing_tool
from tests.support.cli import Cli


def inbound_port(mesh: Mesh, component: str) -> int:
    """The port of a sidecar's mTLS listener."""
    return mesh.ports.component(component)["inbound"]


def sidecar_health(
    mesh: Mesh, component: str, client: Leaf | None, *, tls: bool = True
) -> grpc.StatusCode:
    """grpc.health.v1 Check straight to a sidecar's inbound listener: over TLS trusting the mesh
    CA, with ``client`` as client certificate (none when None), or in plaintext when not
    ``tls``. OK when the app answered SERVING, else the call's status code."""
    address = f"127.0.0.1:{inbound_port(mesh, component)}"
    if not tls:
        channel = grpc.insecure_channel(address)
    else:
        credentials = grpc.ssl_channel_credentials(
            mesh.ca.pem,
            client.key_pem if client else None,
            client.cert_pem if client else None,
        )
        override = (("grpc.ssl_target_name_override", mesh.identity(component)),)
        channel = grpc.secure_channel(address, credentials, override)
    with channel:
        try:
            reply = health_stub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()
            return code
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    return grpc.StatusCode.OK


def served_certificate(mesh: Mesh, component: str, client: Leaf) -> x509.Certificate:
    """The certificate a sidecar's inbound listener presents to a new connection."""
    context = ssl.create_default_context(cadata=mesh.ca.pem.decode())
    context.set_alpn_protocols(["h2"])
    with tempfile.TemporaryDirectory() as directory:
        cert, key = Path(directory) / "tls.crt", Path(directory) / "tls.key"
        cert.write_bytes(client.cert_pem)
        key.write_bytes(client.key_pem)
        context.load_cert_chain(cert, key)
    port = inbound_port(mesh, component)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=mesh.identity(component)) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def edge_cli(mesh: Mesh, config_home: Path) -> Cli:
    """The CLI configured, through its environment, exactly as the printed command line."""
    return Cli(
        mesh.edge_address,
        mesh.edge_address,
        config_home,
        env={
            "MESHCHAT_AUTH_ADDR": "",
            "MESHCHAT_CHAT_ADDR": "",
            "MESHCHAT_SERVER": mesh.edge_address,
            "MESHCHAT_CA_FILE": str(mesh.ca_file),
            "MESHCHAT_SERVER_NAME": mesh.hosts["main"],
        },
    )


def access_log(mesh: Mesh, envoy: str) -> list[dict[str, object]]:
    """The JSON access-log lines an Envoy has written so far."""
    text = mesh.children[f"{envoy}-envoy"].stdout_log.read_text()
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def peer_identities(line: dict[str, object]) -> list[str]:
    """The DNS SANs of the client certificate an access-log line records."""
    return str(line["peer_san"] or "").split(",")


# An empty gRPC message: not compressed, length 0.
EMPTY_GRPC_MESSAGE = b"\x00\x00\x00\x00\x00"


@dataclass(frozen=True)
class CurlAnswer:
    """What the edge answered a gRPC call that curl made: the HTTP status and the grpc-status
    (None when the answer had none)."""

    http_status: int
    grpc_status: int | None


def curl_grpc(mesh: Mesh, host: str, path: str, *, source: str = "127.0.0.1") -> CurlAnswer:
    """A gRPC call with an empty message through the edge, made by curl over HTTP/2 from the
    local address ``source`` (gRPC's Python channels cannot choose theirs)."""
    curl = shutil.which("curl")
    if curl is None:
        missing_tool("curl not found: these checks need it to call from a second address")
        raise AssertionError("unreachable")
    port = mesh.ports.edge
    with tempfile.TemporaryDirectory() as directory:
        headers = Path(directory) / "headers"
        result = subprocess.run(
            [
                curl,
                "--silent",
                "--show-error",
                "--http2",
                "--interface",
                source,
                "--cacert",
                str(mesh.ca_file),
                "--resolve",
                f"{host}:{port}:127.0.0.1",
                "--header",
                "content-type: application/grpc",
                "--header",
                "te: trailers",
                "--data-binary",
                "@-",
                "--dump-header",
                str(headers),
                "--output",
                os.devnull,
                "--write-out",
                "%{http_code}",
                f"https://{host}:{port}{path}",
            ],
            input=EMPTY_GRPC_MESSAGE,
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        statuses = re.findall(rb"^grpc-status: *(\d+)", headers.read_bytes(), re.MULTILINE)
    return CurlAnswer(int(result.stdout), int(statuses[-1]) if statuses else None)
