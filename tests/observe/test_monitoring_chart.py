"""The chart's monitoring objects: the PodMonitor, ServiceMonitor and PrometheusRule validate
against prometheus-operator's own CRDs (unknown fields refused), the dashboard ships as the
ConfigMap Grafana's sidecar loads, and all of them are opt-in."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from devtools.tools import Doc, find_helm, helm_template, load_docs
from tests.observe.support import DASHBOARD, operator_crds, render_monitoring

KINDS = {
    "PodMonitor": "podmonitors",
    "ServiceMonitor": "servicemonitors",
    "PrometheusRule": "prometheusrules",
}


def strict(schema: Any) -> Any:
    """An openAPIV3Schema as a JSON schema that refuses fields it does not declare (as the API
    server prunes them, and `kubectl apply` with field validation refuses them)."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
        if schema.get("x-kubernetes-int-or-string"):
            out.pop("type", None)
        declared = "properties" in schema and "additionalProperties" not in schema
        if declared and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


def validator(kind: str) -> jsonschema.Draft7Validator:
    crd = yaml.safe_load((operator_crds() / f"{KINDS[kind]}.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = strict(version["schema"]["openAPIV3Schema"])
    return jsonschema.Draft7Validator(schema)


def errors(doc: Doc) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator(doc["kind"]).iter_errors(doc)
    ]


@pytest.fixture(scope="module")
def monitoring() -> dict[str, Doc]:
    docs = render_monitoring()
    found = {d["kind"]: d for d in docs if d["kind"] in KINDS}
    (found["ConfigMap"],) = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")
    ]
    return found


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_rendered_object_validates_against_the_operators_crd(
    monitoring: dict[str, Doc], kind: str
) -> None:
    assert errors(monitoring[kind]) == []


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("PodMonitor", ["spec", "podMetricsEndpoints", 0, "scheme"], "gopher"),
        ("PodMonitor", ["spec", "podMetricsEndpoints", 0, "pathx"], "/metrics"),
        ("ServiceMonitor", ["spec", "endpoints", 1, "interval"], "30 seconds"),
        ("PrometheusRule", ["spec", "groups", 0, "rules", 0, "recrod"], "x"),
    ],
)
def test_one_broken_value_fails(
    monitoring: dict[str, Doc], kind: str, path: list[Any], value: str
) -> None:
    doc = copy.deepcopy(monitoring[kind])
    target = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    assert errors(doc) != []


def test_the_monitors_scrape_both_endpoints_of_every_pod(monitoring: dict[str, Doc]) -> None:
    for kind, key in (("PodMonitor", "podMetricsEndpoints"), ("ServiceMonitor", "endpoints")):
        spec = monitoring[kind]["spec"]
        assert [e["path"] for e in spec[key]] == ["/metrics", "/stats/prometheus"]
        selector = spec["selector"]["matchExpressions"][0]
        assert selector["values"] == ["auth", "chat", "edge"]
        # The labels the alerts and the dashboard select meshchat's Envoys by.
        assert spec["podTargetLabels"] == [
            "app.kubernetes.io/part-of",
            "app.kubernetes.io/component",
        ]


def test_the_dashboard_ships_as_a_configmap_grafana_loads(monitoring: dict[str, Doc]) -> None:
    configmap = monitoring["ConfigMap"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["meshchat.json"]) == json.loads(DASHBOARD.read_text())


def test_monitoring_is_opt_in() -> None:
    result = helm_template(find_helm(), None)
    assert result.returncode == 0, result.stderr
    kinds = {d["kind"] for d in load_docs(result.stdout)}
    assert not kinds & set(KINDS)
    names = {d["metadata"]["name"] for d in load_docs(result.stdout) if d["kind"] == "ConfigMap"}
    assert not any(n.endswith("-dashboard") for n in names)
