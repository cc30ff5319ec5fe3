"""Through the edge pod, as a user: the CLI walk-through (sign-up, login, a chat, a live
stream) and grpcurl by reflection and health, with every pod on its own address and the
services reaching each other by their cluster names."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from devtools.pods import PodMesh
from tests.pods.clients import edge_cli
from tests.support.cli import ChatLine, chat_lines, unique_name

pytestmark = pytest.mark.pods


def test_cli_walk_through_the_edge_pod(pods: PodMesh, tmp_path: Path) -> None:
    cli = edge_cli(pods, tmp_path)
    bob = cli.new_user("bob")
    cli.new_user("alice")
    assert f"auth service: {pods.edge_address} (TLS)" in cli.ok("whoami")
    # chat checks alice's token with auth's JWKS: fetched through its sidecar, which found
    # auth's pod by the headless Service's fully qualified name.
    chat = cli.ok("create", "chat", unique_name("pods"), "--member", bob).strip()
    cli.ok("--user", bob, "send", chat, "across three pods")
    session = cli.spawn("connect", chat)
    session.wait_for_messages(["across three pods"])
    cli.ok("--user", bob, "send", chat, "live between pods")
    session.wait_for_messages(["live between pods"])
    session.child.sendintr()
    assert session.finish() == 0
    assert chat_lines(cli.ok("history", chat)) == [
        ChatLine(bob, "across three pods", own=False),
        ChatLine(bob, "live between pods", own=False),
    ]


@pytest.mark.parametrize(
    ("component", "services"),
    [
        ("auth", ["meshchat.auth.v1.AuthService", "meshchat.auth.v1.UserService"]),
        ("chat", ["meshchat.chat.v1.ChatService"]),
    ],
)
def test_grpcurl_lists_describes_and_health_checks_through_the_edge_pod(
    pods: PodMesh, component: str, services: list[str]
) -> None:
    def grpcurl(*args: str) -> str:
        result = subprocess.run(
            [*pods.grpcurl_command(component), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert set(services) | {"grpc.health.v1.Health"} <= set(grpcurl("list").split())
    for service in services:
        assert f"{service} is a service:" in grpcurl("describe", service)
    assert json.loads(grpcurl("grpc.health.v1.Health/Check")) == {"status": "SERVING"}


def test_the_printed_commands_name_the_published_edge(pods: PodMesh) -> None:
    printed = pods.describe()
    assert f"published on {pods.edge_address}" in printed
    for workload in ("meshchat-postgresql", "meshchat-auth", "meshchat-chat", "meshchat-edge"):
        assert f"  {workload}  {pods.pods[workload].address}  (" in printed
