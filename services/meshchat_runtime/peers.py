"""Which meshchat service is calling: the mesh identity that the caller's certificate carries.

In the mesh every service listens on loopback behind its Envoy sidecar, which accepts only
mTLS connections from allowed callers and replaces any ``x-forwarded-client-cert`` header a
caller sent with the details of the certificate it verified (``SANITIZE_SET``), among them
its DNS SANs, the workload identities. So the header names the caller truthfully exactly when
the service is reachable only through such a sidecar: a service trusts it only for the
identities it is told to (:class:`ServiceCallers`), and with none configured no call is a
service's call.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import Any

import grpc.aio

from meshchat_runtime.errors import PermissionDenied

__all__ = ["CLIENT_CERT_HEADER", "ServiceCallers", "certificate_dns_names"]

CLIENT_CERT_HEADER = "x-forwarded-client-cert"

# One Key=Value pair of an element; Envoy quotes a value that holds ',', ';' or '='.
_PAIR = re.compile(r'([A-Za-z]+)=("(?:[^"\\]|\\.)*"|[^;,]*)')
# The elements of the header, one per proxy: commas outside quotes separate them.
_ELEMENT = re.compile(r'(?:"(?:[^"\\]|\\.)*"|[^,"])+')

Context = grpc.aio.ServicerContext[Any, Any]


def certificate_dns_names(header: str) -> list[str]:
    """The DNS SANs of the last element of an ``x-forwarded-client-cert`` value (the element
    the nearest proxy, the sidecar, wrote)."""
    elements = _ELEMENT.findall(header)
    if not elements:
        return []
    names = []
    for key, value in _PAIR.findall(elements[-1]):
        if key.upper() == "DNS":
            names.append(value[1:-1] if value.startswith('"') else value)
    return names


class ServiceCallers:
    """The services allowed to call service-only methods, by mesh identity (a DNS SAN)."""

    def __init__(self, identities: Collection[str] = ()) -> None:
        self._identities = frozenset(identities)

    def identity_of(self, metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
        """The allowed identity that the call's client certificate names, or None."""
        for key, value in metadata:
            if key == CLIENT_CERT_HEADER:
                text = value.decode() if isinstance(value, bytes) else value
                for name in certificate_dns_names(text):
                    if name in self._identities:
                        return name
        return None

    def admit(self, method: str, context: Context) -> str:
        """The calling service's identity; PermissionDenied when the call is not from one of
        the allowed services."""
        identity = self.identity_of(context.invocation_metadata() or ())
        if identity is None:
            raise PermissionDenied(f"only meshchat services may call {method}")
        return identity
