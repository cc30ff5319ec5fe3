"""A real Prometheus scrapes `make mesh`'s apps and Envoys the way the chart's PodMonitor says,
with the chart's rules loaded; after some traffic through the edge, every expression of every
alert and every dashboard panel is a valid query that returns data or reads series that exist:
no panel silently shows nothing because a metric name is wrong."""

from __future__ import annotations

import functools
import json
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import yaml

from devtools.mesh import Mesh
from devtools.processes import free_port
from devtools.tools import Doc
from meshchat.auth.v1 import auth_pb2, auth_pb2_grpc, users_pb2, users_pb2_grpc
from meshchat.chat.v1 import chat_pb2, chat_pb2_grpc
from tests.observe.support import DASHBOARD, find_prometheus_tool, render_monitoring
from tests.support.passwords import PASSWORD

DEADLINE = 60.0
# The dashboard's variables, as Grafana would substitute them.
VARIABLES = {"$namespace": "meshchat", "$__rate_interval": "1m", "${datasource}": ""}
NOT_METRICS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "offset", "bool", "le", "inf", "nan", "e",
}  # fmt: skip


def wait_for(condition: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    """Return once ``condition()`` holds; fail after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"not within {deadline} s: {what}")
        time.sleep(0.2)  # the polling interval of a condition with a deadline


def sanitize(label: str) -> str:
    """A Kubernetes label name as prometheus-operator turns it into a Prometheus label."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


def scrape_config(mesh: Mesh, rendering: list[Doc], interval: str) -> list[dict[str, Any]]:
    """The PodMonitor's scrape jobs for the mesh's pods: one job per endpoint (path), a target
    per pod the endpoint's keep rule admits (at the port named in the endpoint: the sidecar's
    metrics listener), labelled as the operator labels it (namespace, pod, podTargetLabels)."""
    (monitor,) = [d for d in rendering if d["kind"] == "PodMonitor"]
    spec = monitor["spec"]
    pods = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d["spec"]["template"]
        for d in rendering
        if d["kind"] == "Deployment"
    }
    jobs = []
    for index, endpoint in enumerate(spec["podMetricsEndpoints"]):
        keep = re.compile(
            "|".join(
                f"^(?:{r['regex']})$" for r in endpoint.get("relabelings", [])
                if r["action"] == "keep"
            ) or ".*"
        )  # fmt: skip
        targets = []
        for component, template in sorted(pods.items()):
            labels = template["metadata"]["labels"]
            if not keep.match(labels["app.kubernetes.io/component"]):
                continue
            ports = {
                p["name"]: p["containerPort"]
                # The sidecar is a native sidecar (an init container), which pod discovery lists.
                for c in template["spec"].get("initContainers", []) + template["spec"]["containers"]
                for p in c.get("ports", [])
            }
            assert endpoint["port"] in ports, f"{component} has no port {endpoint['port']}"
            target_labels = {sanitize(k): labels[k] for k in spec["podTargetLabels"]}
            target_labels |= {"namespace": "meshchat", "pod": f"meshchat-{component}-0"}
            port = mesh.ports.component(component)["metrics"]
            targets.append({"targets": [f"127.0.0.1:{port}"], "labels": target_labels})
        jobs.append(
            {
                "job_name": f"podMonitor/meshchat/{monitor['metadata']['name']}/{index}",
                "metrics_path": endpoint["path"],
                "scheme": endpoint["scheme"],
                "scrape_interval": interval,
                "static_configs": targets,
            }
        )
    return jobs


@dataclass
class Prometheus:
    """A running Prometheus and its HTTP API."""

    port: int

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/PATH; the ``data`` of a successful answer."""
        query = urllib.parse.urlencode(params)
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{query}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{path} {params}: {exc.read().decode()}") from None
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector (or a scalar as a one-sample list)."""
        data = self.api("query", query=expr)
        return data["result"] if data["resultType"] == "vector" else [data["result"]]

    def series(self, selector: str) -> list[dict[str, str]]:
        """The series matching a selector."""
        result: list[dict[str, str]] = self.api("series", **{"match[]": selector})
        return result

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2):
                return True
        except OSError:
            return False


@pytest.fixture(scope="module")
def prometheus(mesh: Mesh, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """Prometheus scraping the mesh every second, with the chart's rules evaluated every second."""
    binary = find_prometheus_tool("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    rendering = render_monitoring()
    (rule,) = [d for d in rendering if d["kind"] == "PrometheusRule"]
    (workdir / "rules.yaml").write_text(yaml.safe_dump(rule["spec"]))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(workdir / "rules.yaml")],
        "scrape_configs": scrape_config(mesh, rendering, "1s"),
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    running = Prometheus(free_port())
    args = [
        binary,
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{running.port}",
    ]
    with (workdir / "prometheus.log").open("wb") as log:
        process = subprocess.Popen([str(a) for a in args], stdout=log, stderr=log)
    try:
        wait_for(lambda: process.poll() is None and running.ready(), "Prometheus to be ready")
        yield running
    finally:
        process.terminate()
        process.wait(timeout=30)


def make_traffic(mesh: Mesh, round_: int) -> None:
    """Through the edge: sign-ups, logins, a throttled login, a chat, a Connect stream that
    receives messages, a refused call."""
    olga, oscar, otto = (f"{name}{round_}" for name in ("olga", "oscar", "otto"))
    with mesh.edge_channel(mesh.hosts["auth"]) as auth_channel:
        users = users_pb2_grpc.UserServiceStub(auth_channel)
        auth = auth_pb2_grpc.AuthServiceStub(auth_channel)
        for name in (olga, oscar, otto):
            users.CreateUser(
                users_pb2.CreateUserRequest(
                    username=name, password=PASSWORD, password_confirm=PASSWORD
                ),
                timeout=30,
            )
        token = auth.Login(auth_pb2.LoginRequest(username=olga, password=PASSWORD)).access_token
        codes = set()
        for _ in range(7):
            try:
                auth.Login(auth_pb2.LoginRequest(username=otto, password="wrong password"))
            except grpc.RpcError as exc:
                codes.add(exc.code())
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
    md = (("authorization", f"Bearer {token}"),)
    with mesh.edge_channel(mesh.hosts["chat"]) as chat_channel:
        chats = chat_pb2_grpc.ChatServiceStub(chat_channel)
        chat = chats.CreateChat(
            chat_pb2.CreateChatRequest(name="observed", member_usernames=[oscar]), metadata=md
        )
        stream = chats.Connect(chat_pb2.ConnectRequest(chat_id=chat.id), metadata=md, timeout=60)
        assert next(stream).HasField("caught_up")
        for i in range(3):
            chats.SendMessage(
                chat_pb2.SendMessageRequest(chat_id=chat.id, text=f"m{i}"), metadata=md
            )
            assert next(stream).message.text == f"m{i}"
        with pytest.raises(grpc.RpcError):
            chats.GetChat(chat_pb2.GetChatRequest(chat_id="not a uuid"), metadata=md)
        stream.cancel()


@pytest.fixture(scope="module")
def observed(mesh: Mesh, prometheus: Prometheus) -> Prometheus:
    """Prometheus once it has scraped every target and two rounds of traffic (a counter's first
    sample is where its rate starts: the second round is what rates show)."""
    wait_for(
        lambda: all(t["health"] == "up" for t in prometheus.api("targets")["activeTargets"]),
        "every target to be up",
    )
    make_traffic(mesh, 1)
    first = 'grpc_server_handled_total{grpc_method="SendMessage"}'
    wait_for(functools.partial(has_data, prometheus, first), f"{first} in Prometheus")
    make_traffic(mesh, 2)
    for expr in (
        # Both exist from the start at 0.
        "meshchat_chat_delivery_latency_seconds_count > 0",
        'meshchat_limit_refusals_total{limit="failed_logins"} > 0',
        'increase(grpc_server_handled_total{grpc_method="SendMessage"}[1m]) > 0',
        "meshchat:grpc_unary_errors:ratio_rate5m >= 0",
        # The Envoys' counters are scraped on their own schedule: their rates too.
        'rate(envoy_cluster_upstream_rq_xx{app_kubernetes_io_part_of="meshchat"}[1m]) > 0',
    ):
        wait_for(functools.partial(has_data, prometheus, expr), f"{expr} in Prometheus")
    return prometheus


def has_data(prometheus: Prometheus, expr: str) -> bool:
    return bool(prometheus.query(expr))


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects by name (functions and keywords left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"#[^\n]*", " ", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    names = set(re.findall(r"(?<![\w:.])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()", text))
    return {n for n in names if n.lower() not in NOT_METRICS}


def name_selectors(expr: str) -> list[str]:
    """Selectors that name metrics by a __name__ matcher ({__name__=~"...", ...})."""
    return re.findall(r"(?<![\w:])\{[^}]*__name__[^}]*\}", expr)


def rule_expressions() -> list[tuple[str, str]]:
    (rule,) = [d for d in render_monitoring() if d["kind"] == "PrometheusRule"]
    return [
        (r.get("alert") or r["record"], r["expr"])
        for g in rule["spec"]["groups"]
        for r in g["rules"]
    ]


def panel_expressions() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in VARIABLES.items():
                expr = expr.replace(variable, value)
            found.append((f"{panel['title']} {target['refId']}", expr))
    return found


EXPRESSIONS = rule_expressions() + panel_expressions()


def test_the_scrape_configuration_reaches_every_app_and_envoy(observed: Prometheus) -> None:
    targets = observed.api("targets")["activeTargets"]
    scraped = sorted((t["labels"]["app_kubernetes_io_component"], t["scrapeUrl"]) for t in targets)
    paths = [(c, urllib.parse.urlparse(u).path) for c, u in scraped]
    assert sorted(paths) == sorted(
        [("auth", "/metrics"), ("chat", "/metrics")]
        + [(c, "/stats/prometheus") for c in ("auth", "chat", "edge")]
    )
    assert all(t["health"] == "up" for t in targets)


def test_every_rule_is_evaluated_without_error(observed: Prometheus) -> None:
    groups = observed.api("rules")["groups"]
    problems = [
        (r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] != "ok"
    ]
    assert problems == []
    assert sum(len(g["rules"]) for g in groups) == len(rule_expressions())


@pytest.mark.parametrize(("name", "expr"), EXPRESSIONS, ids=[n for n, _ in EXPRESSIONS])
def test_the_expression_reads_series_that_exist(observed: Prometheus, name: str, expr: str) -> None:
    if observed.query(expr):
        return
    # No data can be right (no alert fires; no error happened): every metric it reads must exist.
    missing = [n for n in sorted(metric_names(expr)) if not observed.series(n)]
    missing += [s for s in name_selectors(expr) if not observed.series(s)]
    assert missing == [], f"{name}: no series of {missing}"
    assert metric_names(expr) or name_selectors(expr), f"{name}: reads no metric"


def test_the_panels_that_the_traffic_feeds_show_data(observed: Prometheus) -> None:
    empty = [name for name, expr in panel_expressions() if not observed.query(expr)]
    # Only what the traffic cannot produce may be empty: server-side errors, queue overflows,
    # pool waits, mTLS failures.
    allowed = re.compile(r"Server-side errors|overflows|waiting|mTLS handshake failures")
    assert [n for n in empty if not allowed.search(n)] == []


def test_the_name_check_catches_a_misspelt_metric(observed: Prometheus) -> None:
    expr = 'sum(rate(meshchat_chat_deliveries_latency_seconds_count{namespace="meshchat"}[1m]))'
    assert observed.query(expr) == []
    assert not observed.series("meshchat_chat_deliveries_latency_seconds_count")
    assert metric_names(expr) == {"meshchat_chat_deliveries_latency_seconds_count"}


def test_panels_and_alerts_are_all_checked() -> None:
    names = [n for n, _ in EXPRESSIONS]
    assert len(names) == len(set(names))
    assert len(panel_expressions()) >= 20
