"""The chart's values: its defaults, and the few that running it on one host changes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from devtools.mesh.ports import Ports
from devtools.paths import CHART
from devtools.tools import Doc

__all__ = ["chart_values", "shared_host_values"]


def _at(port: int) -> dict[str, Any]:
    return {"address": "127.0.0.1", "port": port}


def shared_host_values(ports: Ports, dirs: Mapping[str, Path]) -> Doc:
    """The values for one host: addresses, ports and mount directories, nothing else.
    ``dirs`` names envoyConfig, envoyCerts, edgeTls, jwtKeys and databaseUrl."""
    return {
        "databaseUrlDir": str(dirs["databaseUrl"]),
        # The edge Envoy plays the ingress (the chart's own edge.enabled option).
        "ingress": {"enabled": False},
        "mesh": {
            "envoy": {"configDir": str(dirs["envoyConfig"]), "certDir": str(dirs["envoyCerts"])}
        },
        "auth": {
            "listen": _at(ports.auth_app),
            "metricsListen": _at(ports.auth_app_metrics),
            "jwt": {"keysDir": str(dirs["jwtKeys"])},
            "sidecar": {
                "inbound": _at(ports.auth_inbound),
                "health": _at(ports.auth_health),
                "metrics": _at(ports.auth_metrics),
                "admin": _at(ports.auth_admin),
            },
        },
        "chat": {
            "listen": _at(ports.chat_app),
            "metricsListen": _at(ports.chat_app_metrics),
            "sidecar": {
                "inbound": _at(ports.chat_inbound),
                "health": _at(ports.chat_health),
                "metrics": _at(ports.chat_metrics),
                "admin": _at(ports.chat_admin),
                "outbound": _at(ports.chat_outbound),
                "authUpstream": _at(ports.auth_inbound),
            },
        },
        "edge": {
            "enabled": True,
            "listener": _at(ports.edge),
            "health": _at(ports.edge_health),
            "metrics": _at(ports.edge_metrics),
            "admin": _at(ports.edge_admin),
            "upstreams": {"auth": _at(ports.auth_inbound), "chat": _at(ports.chat_inbound)},
            "tlsDir": str(dirs["edgeTls"]),
        },
    }


def merged(base: Doc, overrides: Doc) -> Doc:
    """``base`` with ``overrides`` laid over it, mappings merged key by key (as helm does)."""
    result = dict(base)
    for key, value in overrides.items():
        below = result.get(key)
        if isinstance(below, dict) and isinstance(value, dict):
            result[key] = merged(below, value)
        else:
            result[key] = value
    return result


def chart_values() -> Doc:
    """The chart's default values (values.yaml)."""
    values: Doc = yaml.safe_load((CHART / "values.yaml").read_text())
    return values
