"""``--server`` through an ingress: Envoy terminates TLS (a private CA) and routes by gRPC
service name to the auth and chat services, as a cluster's ingress does."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from devtools.processes import free_port
from tests.support.certs import ServerCertificate, make_server_certificate
from tests.support.cli import ChatLine, Cli, chat_lines, unique_name
from tests.support.service_stack import Stack

SERVER_NAME = "meshchat.test"
ENVOY = Path(sys.executable).parent / "envoy"


def _cluster(name: str, address: str) -> dict[str, Any]:
    host, port = address.rsplit(":", 1)
    endpoint = {"address": {"socket_address": {"address": host, "port_value": int(port)}}}
    return {
        "name": name,
        "type": "STATIC",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": endpoint}]}],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
    }


def _envoy_config(port: int, tls: ServerCertificate, stack: Stack) -> dict[str, Any]:
    routes = [
        # No route timeout: Connect streams stay open.
        {"match": {"prefix": "/meshchat.auth.v1."}, "route": {"cluster": "auth", "timeout": "0s"}},
        {"match": {"prefix": "/meshchat.chat.v1."}, "route": {"cluster": "chat", "timeout": "0s"}},
    ]
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "route_config": {
            # Only requests for the server's name are routed: --server-name must reach here.
            "virtual_hosts": [
                {"name": "meshchat", "domains": [SERVER_NAME, f"{SERVER_NAME}:*"], "routes": routes}
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    tls_context = {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "common_tls_context": {
            "alpn_protocols": ["h2"],
            "tls_certificates": [
                {
                    "certificate_chain": {"filename": str(tls.certificate_file)},
                    "private_key": {"filename": str(tls.key_file)},
                }
            ],
        },
    }
    listener = {
        "name": "ingress",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [
            {
                "transport_socket": {
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": tls_context,
                },
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": manager,
                    }
                ],
            }
        ],
    }
    return {
        "static_resources": {
            "listeners": [listener],
            "clusters": [
                _cluster("auth", stack.auth.address),
                _cluster("chat", stack.chat.address),
            ],
        }
    }


@pytest.fixture
def ingress(shared_stack: Stack, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Envoy in front of the shared stack; its address and the CA to trust."""
    tls = make_server_certificate(tmp_path / "tls", SERVER_NAME)
    port = free_port()
    config = tmp_path / "envoy.json"
    config.write_text(json.dumps(_envoy_config(port, tls, shared_stack)))
    log = (tmp_path / "envoy.log").open("wb")
    envoy = subprocess.Popen(
        [str(ENVOY), "-c", str(config), "--disable-hot-restart", "-l", "warning"],
        stdout=log,
        stderr=log,
    )
    address = f"127.0.0.1:{port}"
    try:
        credentials = grpc.ssl_channel_credentials(tls.ca_file.read_bytes())
        options = (("grpc.ssl_target_name_override", SERVER_NAME),)
        with grpc.secure_channel(address, credentials, options) as channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=30)
            except grpc.FutureTimeoutError:
                raise AssertionError(
                    f"envoy did not listen in time: {(tmp_path / 'envoy.log').read_text()}"
                ) from None
        yield address, tls.ca_file
    finally:
        envoy.terminate()
        envoy.wait(timeout=15)
        log.close()


def test_everything_through_one_tls_address(ingress: tuple[str, Path], tmp_path: Path) -> None:
    address, ca_file = ingress
    cli = Cli(
        address,
        address,
        tmp_path / "config",
        env={
            "MESHCHAT_AUTH_ADDR": "",
            "MESHCHAT_CHAT_ADDR": "",
            "MESHCHAT_SERVER": address,
            "MESHCHAT_CA_FILE": str(ca_file),
            "MESHCHAT_SERVER_NAME": SERVER_NAME,
        },
    )
    bob = cli.new_user("bob")
    alice = cli.new_user("alice")
    assert f"auth service: {address} (TLS)" in cli.ok("whoami")
    chat = cli.ok("create", "chat", unique_name("room"), "--member", bob).strip()
    cli.ok("--user", bob, "send", chat, "through the ingress")

    session = cli.spawn("connect", chat)
    session.wait_for_messages(["through the ingress"])
    cli.ok("--user", bob, "send", chat, "live through the ingress")
    session.wait_for_messages(["live through the ingress"])
    session.type("and back")
    session.wait_for_messages(["and back"])
    session.child.sendintr()
    assert session.finish() == 0

    assert chat_lines(cli.ok("--user", bob, "history", chat)) == [
        ChatLine(bob, "through the ingress", own=True),
        ChatLine(bob, "live through the ingress", own=True),
        ChatLine(alice, "and back", own=False),
    ]

    # The ingress routes only the name it serves: without --server-name the certificate
    # check fails first.
    result = cli.run("chats", env={"MESHCHAT_SERVER_NAME": ""})
    assert result.returncode == 7
    assert "TLS handshake failed" in result.stderr
