"""Who is on the other end of a call: the client's network address.

Behind the edge proxy every call arrives from a sidecar on loopback, so the peer address
says nothing; the edge then passes the client's address in ``x-forwarded-for`` (appending
the address it accepted the connection from) and the sidecar forwards the header. Anyone can
send that header, so it is read only when the service is told that it sits behind such a
proxy, and only its last entry, the one that proxy wrote.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import unquote

import grpc.aio

__all__ = ["FORWARDED_FOR", "ClientAddresses", "peer_address"]

FORWARDED_FOR = "x-forwarded-for"

Context = grpc.aio.ServicerContext[Any, Any]


def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip().strip("[]")))
    except ValueError:
        return None


def peer_address(peer: str) -> str:
    """The address of a gRPC peer string (``ipv4:10.0.0.1:5000``, ``ipv6:%5B::1%5D:5000``);
    other transports (``unix:...``) as they are."""
    kind, _, rest = unquote(peer).partition(":")
    if kind in ("ipv4", "ipv6"):
        host = rest.rpartition(":")[0]
        return _ip(host) or host
    return peer


class ClientAddresses:
    """Reads the client address of a call, trusting ``x-forwarded-for`` only if told to."""

    def __init__(self, *, trust_forwarded_for: bool) -> None:
        self._trust_forwarded_for = trust_forwarded_for

    def of(self, context: Context) -> str:
        """The client's address: the last ``x-forwarded-for`` entry when trusted and valid,
        otherwise the peer's."""
        if self._trust_forwarded_for:
            forwarded = [
                value.decode() if isinstance(value, bytes) else value
                for key, value in context.invocation_metadata() or ()
                if key == FORWARDED_FOR
            ]
            if forwarded:
                last = _ip(forwarded[-1].rsplit(",", 1)[-1])
                if last is not None:
                    return last
        return peer_address(context.peer())
