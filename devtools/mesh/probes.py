"""Probes of the mesh's listeners: HTTP GETs, Envoy's /healthz and gRPC health."""

from __future__ import annotations

import urllib.error
import urllib.request

from grpc_health.v1 import health_pb2

from devtools.processes import health_status

__all__ = ["SERVING", "answering", "healthz_ok", "http_get"]

SERVING: int = health_pb2.HealthCheckResponse.SERVING


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, str]:
    """GET http://127.0.0.1:PORT/PATH: the status (0 when nothing answers) and the body."""
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return 0, ""


def answering(address: str) -> bool:
    """Whether the gRPC server at ``address`` (plaintext) answers health, whatever it says."""
    return health_status(address, timeout=0.5) is not None


def healthz_ok(port: int) -> bool:
    """Whether an Envoy health listener's /healthz answers 200."""
    return http_get(port, "/healthz")[0] == 200
