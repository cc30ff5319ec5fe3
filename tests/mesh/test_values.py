"""The values `make mesh` renders the chart with change addresses, ports and mount directories
only (and turn on the chart's edge Envoy in the ingress's role), nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devtools.mesh import Ports, shared_host_values

pytestmark = pytest.mark.mesh

DIRECTORY_NAMES = ("envoyConfig", "envoyCerts", "edgeTls", "jwtKeys", "databaseUrl")
ROLE_SWITCHES = {"ingress.enabled": False, "edge.enabled": True}


def leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf of nested dicts, by dotted path."""
    if not isinstance(node, dict):
        return {prefix: node}
    found: dict[str, Any] = {}
    for key, value in node.items():
        found.update(leaves(value, f"{prefix}.{key}" if prefix else key))
    return found


def test_only_addresses_ports_and_directories_change() -> None:
    dirs = {name: Path("/m") / name for name in DIRECTORY_NAMES}
    values = leaves(shared_host_values(Ports.free(), dirs))
    for path, value in values.items():
        if path in ROLE_SWITCHES:
            assert value == ROLE_SWITCHES[path]
        elif path.endswith(".address"):
            assert value == "127.0.0.1", path
        elif path.endswith(".port"):
            assert isinstance(value, int), path
        else:
            assert path.endswith(("Dir", ".keysDir")), path
            assert str(value).startswith("/m/"), path
    ports = [v for p, v in values.items() if p.endswith(".port")]
    # Upstreams repeat the sidecars' inbound ports; every listener has a port of its own.
    assert len(set(ports)) == len(ports) - 3
