"""The chart's monitoring objects: what the PodMonitor and ServiceMonitor scrape, the dashboard's
ConfigMap for Grafana's sidecar, the plain Prometheus's pod annotations, the monitoring
namespace let in, and all of it opt-in. (Every rendered PodMonitor, ServiceMonitor and
PrometheusRule is validated against prometheus-operator's CRDs by tests/deploy/test_crds.py, in
the "observability" combination.)"""

from __future__ import annotations

import json

import pytest

from devtools.tools import Doc, find_helm, helm_template, load_docs
from tests.observe.support import DASHBOARD, render_monitoring

MONITORS = {"PodMonitor": "podMetricsEndpoints", "ServiceMonitor": "endpoints"}


@pytest.fixture(scope="module")
def rendering() -> list[Doc]:
    return render_monitoring("--set", "metrics.monitoringNamespace=monitoring")


def one(docs: list[Doc], kind: str, suffix: str = "") -> Doc:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
    return found


@pytest.mark.parametrize("kind", sorted(MONITORS))
def test_the_monitors_scrape_the_app_and_envoy_of_every_pod(
    rendering: list[Doc], kind: str
) -> None:
    spec = one(rendering, kind)["spec"]
    endpoints = spec[MONITORS[kind]]
    assert [e["path"] for e in endpoints] == ["/metrics", "/stats/prometheus"]
    # The app's /metrics only where there is an app: the edge is an Envoy alone.
    assert endpoints[0]["relabelings"][0]["regex"] == "auth|chat"
    assert "relabelings" not in endpoints[1]
    assert spec["selector"]["matchExpressions"][0]["values"] == ["auth", "chat", "edge"]
    # The labels the alerts and the dashboard tell meshchat's Envoys by.
    assert spec["podTargetLabels"] == ["app.kubernetes.io/part-of", "app.kubernetes.io/component"]


def test_the_dashboard_ships_as_the_configmap_grafanas_sidecar_loads(
    rendering: list[Doc],
) -> None:
    configmap = one(rendering, "ConfigMap", "-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["meshchat.json"]) == json.loads(DASHBOARD.read_text())


def test_a_plain_prometheus_finds_every_pods_metrics(rendering: list[Doc]) -> None:
    for doc in (d for d in rendering if d["kind"] == "Deployment"):
        component = doc["metadata"]["labels"]["app.kubernetes.io/component"]
        if component == "postgresql":
            continue
        template = doc["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        ports = {
            p["name"]: p["containerPort"]
            for c in template["spec"].get("initContainers", []) + template["spec"]["containers"]
            for p in c.get("ports", [])
        }
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(ports["metrics"])
        path = "/stats/prometheus" if component == "edge" else "/metrics"
        assert annotations["prometheus.io/path"] == path


def test_the_monitoring_namespace_may_reach_every_metrics_port(rendering: list[Doc]) -> None:
    monitoring = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }
    policies = {d["metadata"]["name"]: d for d in rendering if d["kind"] == "NetworkPolicy"}
    for name in ("meshchat-auth", "meshchat-chat", "meshchat-edge"):
        rules = policies[name]["spec"]["ingress"]
        assert any(monitoring in rule.get("from", []) for rule in rules), name


def test_monitoring_is_opt_in() -> None:
    result = helm_template(find_helm(), None)
    assert result.returncode == 0, result.stderr
    docs = load_docs(result.stdout)
    assert not {d["kind"] for d in docs} & {"PodMonitor", "ServiceMonitor", "PrometheusRule"}
    assert not [d for d in docs if d["metadata"]["name"].endswith("-dashboard")]


def test_tracing_is_off_unless_a_collector_is_named() -> None:
    off = helm_template(find_helm(), None, "--set", "edge.enabled=true")
    on = helm_template(
        find_helm(), None, "--set", "edge.enabled=true", "--set", "tracing.collector.address=otel"
    )
    assert off.returncode == on.returncode == 0, off.stderr + on.stderr
    for marker in ("envoy.tracers.opentelemetry", "OTEL_EXPORTER_OTLP_ENDPOINT", "otel_collector"):
        assert marker not in off.stdout
        assert marker in on.stdout
    # The edge and both sidecars' connection managers (inbound, and chat's outbound to auth).
    assert on.stdout.count("name: envoy.tracers.opentelemetry") == 4
