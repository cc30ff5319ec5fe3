"""What the tests of tests/observe share: the chart's monitoring objects and Prometheus's tools."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from devtools.paths import CHART
from devtools.tools import Doc, find_helm, helm_template, load_docs
from tests.deploy.deploy_support import missing_tool

__all__ = [
    "DASHBOARD",
    "MONITORING_VALUES",
    "RULES",
    "alert_names",
    "find_prometheus_tool",
    "render_monitoring",
]

RULES = CHART / "files" / "prometheus" / "rules.yaml"
DASHBOARD = CHART / "files" / "dashboards" / "meshchat.json"
# Every monitoring object on, the edge included (it has only Envoy's metrics).
MONITORING_VALUES = (
    "--set",
    "metrics.podMonitor.enabled=true",
    "--set",
    "metrics.serviceMonitor.enabled=true",
    "--set",
    "metrics.prometheusRule.enabled=true",
    "--set",
    "metrics.dashboard.enabled=true",
    "--set",
    "edge.enabled=true",
)


def find_prometheus_tool(name: str) -> Path:
    """``prometheus`` or ``promtool`` on the PATH (Debian's prometheus package); skip, or in CI
    fail, when missing."""
    found = shutil.which(name)
    if found is None:
        missing_tool(f"{name} not found: apt-get install prometheus (.ci/run does)")
        raise AssertionError("unreachable")
    return Path(found)


def render_monitoring(*extra: str) -> list[Doc]:
    """The chart rendered with every monitoring object on (and ``extra`` arguments)."""
    result = helm_template(find_helm(), None, *MONITORING_VALUES, *extra)
    assert result.returncode == 0, result.stderr
    return load_docs(result.stdout)


def alert_names(rules: dict[str, Any] | None = None) -> list[str]:
    """The names of the alerts in a rules file's content (default: the chart's)."""
    content = rules if rules is not None else yaml.safe_load(RULES.read_text())
    return [r["alert"] for g in content["groups"] for r in g["rules"] if "alert" in r]
