"""The kubelet's probes of a rendered container, run against a podman container: httpGet to the
pod's address, exec inside the container, tcpSocket to the pod's address. A container that has
exited fails at once, with its logs."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Callable

from devtools.containers import Engine
from devtools.mesh.errors import MeshError
from devtools.podspec import Doc, Unsupported

__all__ = ["container_running", "probe_passes"]


def container_running(engine: Engine, container: str) -> bool:
    """Whether the container runs."""
    result = engine.run("inspect", "--format", "{{.State.Running}}", container, check=False)
    return result.stdout.strip() == "true"


def _http_ok(address: str, port: int, path: str) -> bool:
    connection = http.client.HTTPConnection(address, port, timeout=2)
    try:
        connection.request("GET", path)
        return 200 <= connection.getresponse().status < 400
    except OSError:
        return False
    finally:
        connection.close()


def _tcp_ok(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=2):
            return True
    except OSError:
        return False


def probe_passes(
    engine: Engine,
    container: str,
    address: str,
    probe: Doc,
    port_of: Callable[[int | str], int],
) -> bool:
    """Whether ``probe`` (a startup, readiness or liveness probe) passes now."""
    if not container_running(engine, container):
        logs = engine.run("logs", "--tail", "30", container, check=False)
        raise MeshError(f"{container} exited:\n{logs.stdout}{logs.stderr}")
    if "httpGet" in probe:
        get = probe["httpGet"]
        return _http_ok(address, port_of(get["port"]), get.get("path", "/"))
    if "tcpSocket" in probe:
        return _tcp_ok(address, port_of(probe["tcpSocket"]["port"]))
    if "exec" in probe:
        return engine.run("exec", container, *probe["exec"]["command"], check=False).returncode == 0
    raise Unsupported(f"{container}: a probe without httpGet, tcpSocket or exec: {sorted(probe)}")
