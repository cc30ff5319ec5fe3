"""Where the services are and how to talk to them: addresses, TLS, channel options."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

import grpc

from meshchat_cli.errors import CliError, ExitCode

__all__ = [
    "DEFAULT_AUTH_ADDRESS",
    "DEFAULT_CHAT_ADDRESS",
    "Endpoint",
    "Endpoints",
    "open_channel",
    "resolve_endpoints",
]

# The local stack of `make run`.
DEFAULT_AUTH_ADDRESS = "127.0.0.1:50051"
DEFAULT_CHAT_ADDRESS = "127.0.0.1:50052"

# The server accepts a client ping every 10 s at most (see ServerSettings); 30 s stays clear
# of that and still notices a dead connection that never saw a TCP reset.
_KEEPALIVE_MS = 30_000
_KEEPALIVE_TIMEOUT_MS = 10_000
# gRPC's default reconnect backoff grows to two minutes; a chat client must notice a
# restarted server within seconds.
_MAX_RECONNECT_BACKOFF_MS = 3_000


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One service's address and transport security."""

    service: str
    """``auth`` or ``chat``; used in messages and option names."""
    address: str
    """HOST:PORT as the user gave it."""
    tls: bool
    ca_file: Path | None = None
    server_name: str | None = None


@dataclass(frozen=True, slots=True)
class Endpoints:
    """The auth and chat services of one meshchat installation."""

    auth: Endpoint
    chat: Endpoint


def _split_address(value: str, option: str) -> str:
    """Check HOST:PORT (or [v6]:PORT) and return the host."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CliError(f"{option}: expected HOST:PORT, got {value!r}", ExitCode.USAGE)
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_endpoints(
    *,
    server: str | None,
    auth_addr: str | None,
    chat_addr: str | None,
    ca_file: Path | None,
    server_name: str | None,
    insecure: bool,
) -> Endpoints:
    """Decide the addresses and TLS from the global options.

    ``--auth-addr``/``--chat-addr`` win over ``--server``, which wins over the local stack.
    TLS is on for every non-loopback host, and wherever ``--ca-file`` or ``--server-name``
    is given; ``--insecure`` turns it off.
    """
    if insecure and (ca_file is not None or server_name):
        raise CliError(
            "--insecure cannot be combined with --ca-file or --server-name", ExitCode.USAGE
        )

    def endpoint(service: str, explicit: str | None, default: str) -> Endpoint:
        option = f"--{service}-addr" if explicit else "--server"
        address = (explicit or server or default).strip()
        host = _split_address(address, option)
        tls = not insecure and (ca_file is not None or bool(server_name) or not _is_loopback(host))
        return Endpoint(service, address, tls, ca_file, server_name or None)

    return Endpoints(
        auth=endpoint("auth", auth_addr, DEFAULT_AUTH_ADDRESS),
        chat=endpoint("chat", chat_addr, DEFAULT_CHAT_ADDRESS),
    )


def open_channel(endpoint: Endpoint) -> grpc.Channel:
    """A new channel to ``endpoint``; the caller closes it."""
    options: list[tuple[str, int | str]] = [
        ("grpc.keepalive_time_ms", _KEEPALIVE_MS),
        ("grpc.keepalive_timeout_ms", _KEEPALIVE_TIMEOUT_MS),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", _MAX_RECONNECT_BACKOFF_MS),
    ]
    if not endpoint.tls:
        return grpc.insecure_channel(endpoint.address, options=options)
    root_certificates = None
    if endpoint.ca_file is not None:
        try:
            root_certificates = endpoint.ca_file.read_bytes()
        except OSError as exc:
            raise CliError(
                f"--ca-file: cannot read {endpoint.ca_file}: {exc.strerror}", ExitCode.USAGE
            ) from None
    if endpoint.server_name:
        # The name checked against the certificate, and the :authority that an ingress
        # routes on.
        options.append(("grpc.ssl_target_name_override", endpoint.server_name))
        options.append(("grpc.default_authority", endpoint.server_name))
    credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
    return grpc.secure_channel(endpoint.address, credentials, options=options)
