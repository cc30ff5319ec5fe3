"""TLS: on by default off loopback, --ca-file for a private CA, --server-name, --insecure."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from devtools.processes import free_port
from meshchat.auth.v1 import users_pb2
from meshchat_cli.endpoints import resolve_endpoints
from meshchat_cli.errors import CliError
from tests.support.certs import make_server_certificate
from tests.support.cli import Cli

SERVER_NAME = "meshchat.test"


def _sign_up(request: users_pb2.CreateUserRequest, context: grpc.ServicerContext) -> users_pb2.User:
    """A stand-in for the auth service's sign-up, behind TLS."""
    return users_pb2.User(id="00000000-0000-4000-8000-000000000001", username=request.username)


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A gRPC server with a certificate for meshchat.test from a private CA; its address
    and the CA's PEM file."""
    files = make_server_certificate(tmp_path / "tls", SERVER_NAME)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.unary_unary_rpc_method_handler(
        _sign_up,
        request_deserializer=users_pb2.CreateUserRequest.FromString,
        response_serializer=users_pb2.User.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "meshchat.auth.v1.UserService", {"CreateUser": handler}
            ),
        )
    )
    address = f"127.0.0.1:{free_port()}"
    key_and_chain = (files.key_file.read_bytes(), files.certificate_file.read_bytes())
    server.add_secure_port(address, grpc.ssl_server_credentials([key_and_chain]))
    server.start()
    yield address, files.ca_file
    server.stop(grace=None)


def _register(cli: Cli, *options: str) -> tuple[int, str]:
    result = cli.run(*options, "register", "alice", "--password-stdin", input="long enough\n")
    return result.returncode, result.stdout + result.stderr


def test_a_private_ca_and_a_server_name(tls_server: tuple[str, Path], tmp_path: Path) -> None:
    address, ca_file = tls_server
    cli = Cli(address, address, tmp_path / "config")
    options = ("--auth-addr", address, "--ca-file", str(ca_file))

    code, output = _register(cli, *options, "--server-name", SERVER_NAME)
    assert (code, output.strip()) == (
        0,
        f"registered alice; log in with `meshchat --auth-addr {address} --ca-file {ca_file} "
        f"--server-name {SERVER_NAME} login alice`",
    )

    code, output = _register(cli, *options)  # the certificate does not name 127.0.0.1
    assert code == 7
    assert "TLS handshake failed; pass --ca-file" in output

    code, output = _register(cli, "--auth-addr", address, "--server-name", SERVER_NAME)
    assert code == 7  # the system's CAs do not know the private one
    assert "TLS handshake failed" in output

    code, output = _register(cli, "--auth-addr", address, "--insecure")
    assert code == 7
    assert output.startswith(f"error: cannot reach the auth service at {address}")


def test_an_unreadable_ca_file_is_a_usage_error(tmp_path: Path) -> None:
    cli = Cli("127.0.0.1:1", "127.0.0.1:1", tmp_path / "config")
    code, output = _register(cli, "--ca-file", str(tmp_path / "missing.pem"))
    assert code == 2
    assert f"--ca-file: cannot read {tmp_path / 'missing.pem'}" in output


@pytest.mark.parametrize(
    ("server", "tls"),
    [
        (None, False),
        ("127.0.0.1:443", False),
        ("localhost:443", False),
        ("[::1]:443", False),
        ("meshchat.example.org:443", True),
        ("10.0.0.7:443", True),
    ],
)
def test_tls_is_the_default_off_loopback(server: str | None, tls: bool) -> None:
    endpoints = resolve_endpoints(
        server=server,
        auth_addr=None,
        chat_addr=None,
        ca_file=None,
        server_name=None,
        insecure=False,
    )
    assert (endpoints.auth.tls, endpoints.chat.tls) == (tls, tls)
    if server is None:
        assert (endpoints.auth.address, endpoints.chat.address) == (
            "127.0.0.1:50051",
            "127.0.0.1:50052",
        )
    else:
        assert endpoints.auth.address == endpoints.chat.address == server


def test_explicit_options_decide_tls_and_addresses() -> None:
    endpoints = resolve_endpoints(
        server="ingress.example:443",
        auth_addr="auth.internal:50051",
        chat_addr=None,
        ca_file=None,
        server_name=None,
        insecure=True,
    )
    assert endpoints.auth.address == "auth.internal:50051"
    assert endpoints.chat.address == "ingress.example:443"
    assert not endpoints.auth.tls
    assert not endpoints.chat.tls

    endpoints = resolve_endpoints(
        server="127.0.0.1:8443",
        auth_addr=None,
        chat_addr=None,
        ca_file=Path("ca.pem"),
        server_name="meshchat.local",
        insecure=False,
    )
    assert endpoints.chat.tls
    assert endpoints.chat.server_name == "meshchat.local"

    with pytest.raises(CliError, match="cannot be combined"):
        resolve_endpoints(
            server=None,
            auth_addr=None,
            chat_addr=None,
            ca_file=Path("ca.pem"),
            server_name=None,
            insecure=True,
        )
