"""Clients of the pods: the CLI through the published edge, and gRPC health checks straight to
a sidecar's mTLS listener at its pod's address."""

from __future__ import annotations

from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2

from devtools.certs import Leaf
from devtools.pods import PodMesh
from devtools.processes import health_stub
from tests.support.cli import Cli


def edge_cli(pods: PodMesh, config_home: Path) -> Cli:
    """The CLI configured, through its environment, as the printed command line."""
    return Cli(
        pods.edge_address,
        pods.edge_address,
        config_home,
        env={
            "MESHCHAT_AUTH_ADDR": "",
            "MESHCHAT_CHAT_ADDR": "",
            "MESHCHAT_SERVER": pods.edge_address,
            "MESHCHAT_CA_FILE": str(pods.ca_file),
            "MESHCHAT_SERVER_NAME": pods.hosts["main"],
        },
    )


def sidecar_health(pods: PodMesh, component: str, client: Leaf | None) -> grpc.StatusCode:
    """grpc.health.v1 Check to a sidecar's inbound listener at its pod's address, trusting the
    mesh CA, with ``client`` as the client certificate (none when None): OK when the app
    answered SERVING, else the call's status code."""
    host, port = pods.sidecar_address(component, "inbound")
    credentials = grpc.ssl_channel_credentials(
        pods.ca.pem, client.key_pem if client else None, client.cert_pem if client else None
    )
    override = (("grpc.ssl_target_name_override", pods.identity(component)),)
    with grpc.secure_channel(f"{host}:{port}", credentials, override) as channel:
        try:
            reply = health_stub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()
            return code
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    return grpc.StatusCode.OK
