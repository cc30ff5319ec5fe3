"""Through the edge Envoy and the sidecars, as a user: the CLI walk-through, grpcurl by
reflection, the chat service's way to auth through its sidecar, and every metrics endpoint."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from devtools.mesh import Mesh, http_get, wait_until
from devtools.paths import VENV_BIN
from tests.mesh.clients import access_log, edge_cli, peer_identities
from tests.support.cli import PASSWORD, ChatLine, chat_lines, unique_name

pytestmark = pytest.mark.mesh


def printed_lines(printed: str, prefix: str) -> list[str]:
    """The printed command lines that begin with ``prefix``, as a user would copy them."""
    return [line.strip() for line in printed.splitlines() if line.strip().startswith(prefix)]


def test_the_printed_commands_reach_the_edge(mesh: Mesh, tmp_path: Path) -> None:
    printed = mesh.describe()
    [export] = printed_lines(printed, "export ")
    assert len(export) < 200
    assert printed_lines(printed, "meshchat ")[:2] == [
        "meshchat register alice",
        "meshchat login alice",
    ]
    grpcurl_lines = printed_lines(printed, "grpcurl -")
    assert len(grpcurl_lines) == 2
    # The printed lines, run as printed in a shell that has only the CLI's config directory
    # and .venv/bin on PATH: the export line is all that points them at the edge.
    cli = edge_cli(mesh, tmp_path)
    env = cli.environment()
    for variable in (*mesh.cli_environment(), "MESHCHAT_AUTH_ADDR", "MESHCHAT_CHAT_ADDR"):
        env.pop(variable, None)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    name = unique_name("printed")
    register = printed_lines(printed, "meshchat register ")[0].replace("alice", name)

    def shell(*lines: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", "\n".join([export, *lines])],
            input=input,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    result = shell(f"{register} --password-stdin", input=f"{PASSWORD}\n")
    assert result.returncode == 0, result.stderr
    assert f"registered {name}" in result.stdout + result.stderr
    services = ("meshchat.auth.v1.AuthService", "meshchat.chat.v1.ChatService")
    for line, service in zip(grpcurl_lines, services, strict=True):
        result = shell(line)
        assert result.returncode == 0, result.stderr
        assert service in result.stdout.split()


def inbound_requests(mesh: Mesh) -> dict[str, int]:
    """Requests each sidecar's mTLS listener has handled, and the edge's listener."""
    counts = {c: mesh.envoy_stats(c)["http.inbound.downstream_rq_total"] for c in ("auth", "chat")}
    counts["edge"] = mesh.envoy_stats("edge")["http.edge.downstream_rq_total"]
    return counts


def test_cli_walk_through_the_edge(mesh: Mesh, tmp_path: Path) -> None:
    before = inbound_requests(mesh)
    cli = edge_cli(mesh, tmp_path)
    bob = cli.new_user("bob")
    alice = cli.new_user("alice")
    assert f"auth service: {mesh.edge_address} (TLS)" in cli.ok("whoami")
    chat = cli.ok("create", "chat", unique_name("mesh"), "--member", bob).strip()
    cli.ok("--user", bob, "send", chat, "through two Envoys")

    session = cli.spawn("connect", chat)
    session.wait_for_messages(["through two Envoys"])
    cli.ok("--user", bob, "send", chat, "live through the mesh")
    session.wait_for_messages(["live through the mesh"])
    session.type("and back")
    session.wait_for_messages(["and back"])
    session.child.sendintr()
    assert session.finish() == 0

    assert chat_lines(cli.ok("--user", bob, "history", chat)) == [
        ChatLine(bob, "through two Envoys", own=True),
        ChatLine(bob, "live through the mesh", own=True),
        ChatLine(alice, "and back", own=False),
    ]
    # The calls crossed the edge and both sidecars' mTLS listeners.
    after = inbound_requests(mesh)
    assert all(after[envoy] >= before[envoy] + 3 for envoy in after), (before, after)


@pytest.mark.parametrize(
    ("component", "services"),
    [
        ("auth", ["meshchat.auth.v1.AuthService", "meshchat.auth.v1.UserService"]),
        ("chat", ["meshchat.chat.v1.ChatService"]),
    ],
)
def test_grpcurl_lists_describes_and_health_checks(
    mesh: Mesh, component: str, services: list[str]
) -> None:
    def grpcurl(*args: str) -> str:
        result = subprocess.run(
            [*mesh.grpcurl_command(component), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    listed = grpcurl("list").split()
    assert set(services) | {"grpc.health.v1.Health"} <= set(listed)
    for service in services:
        assert f"{service} is a service:" in grpcurl("describe", service)
    assert json.loads(grpcurl("grpc.health.v1.Health/Check")) == {"status": "SERVING"}


def test_chat_reaches_auth_through_its_sidecar_outbound_listener(
    mesh: Mesh, tmp_path: Path
) -> None:
    chat_env = {e["name"]: e.get("value") for e in mesh.pods["chat"].containers["chat"]["env"]}
    outbound = mesh.ports.chat_outbound
    assert chat_env["MESHCHAT_AUTH_ADDR"] == f"127.0.0.1:{outbound}"
    auth_inbound = f"127.0.0.1:{mesh.ports.auth_inbound}"

    # The JWKS the chat service checks tokens with: fetched through the chat sidecar's outbound
    # listener, over mTLS to the auth sidecar, which saw the chat service's identity.
    def jwks_fetched() -> bool:
        jwks = "/meshchat.auth.v1.AuthService/GetJwks"
        sent = {
            line["request_id"]
            for line in access_log(mesh, "chat")
            if line["path"] == jwks
            and line["upstream_host"] == auth_inbound
            and line["grpc_status"] == 0
        }
        received = {
            line["request_id"]
            for line in access_log(mesh, "auth")
            if line["path"] == jwks and mesh.identity("chat") in peer_identities(line)
        }
        return bool(sent & received)

    # Envoy writes access logs in batches (its file flush interval): wait for the lines.
    wait_until(jwks_fetched, "the JWKS fetch in the sidecars' access logs", 30)

    # A token check and a user look-up now: the outbound cluster's counters move.
    before = mesh.envoy_stats("chat")
    cli = edge_cli(mesh, tmp_path)
    bob = cli.new_user("bob")
    cli.new_user("alice")
    cli.ok("create", "chat", unique_name("jwks"), "--member", bob)
    after = mesh.envoy_stats("chat")
    assert (
        after["http.outbound_auth.downstream_rq_total"]
        > before["http.outbound_auth.downstream_rq_total"]
    )
    assert after["cluster.auth.upstream_rq_200"] > before["cluster.auth.upstream_rq_200"]
    assert after["cluster.auth.ssl.handshake"] >= 1
    assert after["cluster.auth.ssl.fail_verify_san"] == 0


def test_metrics_of_both_services_and_every_envoy_can_be_scraped(mesh: Mesh) -> None:
    # Starting the mesh checked each service's health through the edge: the apps counted it.
    checked = 'grpc_server_handled_total{grpc_code="OK",grpc_method="Check"'
    for component in ("auth", "chat"):
        port = mesh.ports.component(component)["metrics"]
        status, body = http_get(port, "/metrics")
        assert status == 200
        assert checked in body
        status, body = http_get(port, "/stats/prometheus")
        assert status == 200
        assert 'envoy_cluster_upstream_rq_total{envoy_cluster_name="local_app"}' in body
        # Nothing else of the admin interface is reachable there.
        assert http_get(port, "/stats")[0] == 404
        assert http_get(port, "/quitquitquit")[0] == 404
    status, body = http_get(mesh.ports.edge_metrics, "/stats/prometheus")
    assert status == 200
    assert 'envoy_cluster_upstream_rq_total{envoy_cluster_name="chat"}' in body
    assert http_get(mesh.ports.edge_metrics, "/metrics")[0] == 404
