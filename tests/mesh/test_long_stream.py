"""A Connect stream through two Envoys (the edge and the chat sidecar) stays open and keeps
delivering for longer than the unary route timeout, and across quiet gaps longer than the
stream idle timeout, which only the chat service's heartbeats reset.

The mesh of this test renders the chart with those timeouts shortened (4 s and 3 s, heartbeats
every second) so that the test proves with the production templates in about 15 s what the
defaults (60 s, 3600 s, 30 s) would take an hour to show."""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.mesh import Mesh, wait_until
from devtools.tools import Doc
from tests.mesh.clients import access_log, edge_cli
from tests.support.cli import unique_name
from tests.support.meshes import start_mesh

pytestmark = pytest.mark.mesh

ROUTE_TIMEOUT_SECONDS = 4
STREAM_IDLE_SECONDS = 3
STREAM_SECONDS = 3 * ROUTE_TIMEOUT_SECONDS
# Quiet gaps between messages longer than the idle timeout: only heartbeats keep it open.
PACE_SECONDS = STREAM_IDLE_SECONDS + 1.5
SHORT_TIMEOUTS: Doc = {
    "mesh": {
        "envoy": {
            "timeouts": {
                "request": f"{ROUTE_TIMEOUT_SECONDS}s",
                "streamingIdle": f"{STREAM_IDLE_SECONDS}s",
            }
        }
    },
    "chat": {"extraEnv": [{"name": "MESHCHAT_HEARTBEAT_INTERVAL", "value": "1s"}]},
}
CONNECT = "/meshchat.chat.v1.ChatService/Connect"


def connect_streams(mesh: Mesh, envoy: str, since: datetime.datetime) -> list[int]:
    """The durations (ms) of the Connect streams that started at ``since`` or later, as far as
    an Envoy has logged them (it logs a stream when the stream ends)."""
    return [
        int(str(line["duration_ms"]))
        for line in access_log(mesh, envoy)
        if line["path"] == CONNECT and datetime.datetime.fromisoformat(str(line["time"])) >= since
    ]


@pytest.fixture(scope="module")
def short_timeouts_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """A mesh whose Envoys time out unary calls after 4 s and quiet streams after 3 s."""
    yield from start_mesh(tmp_path_factory.mktemp("short-timeouts-mesh"), SHORT_TIMEOUTS)


@pytest.mark.timeout(240)
def test_a_connect_stream_outlives_the_route_and_idle_timeouts(
    short_timeouts_mesh: Mesh, tmp_path: Path
) -> None:
    mesh = short_timeouts_mesh
    cli = edge_cli(mesh, tmp_path)
    bob = cli.new_user("bob")
    cli.new_user("alice")
    chat = cli.ok("create", "chat", unique_name("long"), "--member", bob).strip()
    # Envoy logs times in milliseconds: a little margin below the moment the stream opens.
    since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(milliseconds=5)
    session = cli.spawn("connect", chat)
    sent: list[str] = []

    def send_and_receive() -> None:
        text = f"tick {len(sent)}"
        cli.ok("--user", bob, "send", chat, text)
        sent.append(text)
        session.wait_for_messages(sent, timeout=20)

    send_and_receive()
    opened = time.monotonic()  # the stream is open: the first message came through it
    while time.monotonic() - opened < STREAM_SECONDS:
        # Pacing, not synchronisation: the messages are spread over the stream's life on
        # purpose, one every PACE_SECONDS; each delivery is waited for with a deadline.
        time.sleep(max(0.0, opened + len(sent) * PACE_SECONDS - time.monotonic()))
        send_and_receive()
    assert len(sent) > STREAM_SECONDS / PACE_SECONDS

    assert session.child.isalive()
    session.child.sendintr()
    assert session.finish() == 0

    # One stream, not several after reconnections: each Envoy has logged exactly one Connect
    # stream since the session opened, and it lasted the whole time.
    def logged_once_lasting_the_whole_time() -> bool:
        streams = {envoy: connect_streams(mesh, envoy, since) for envoy in ("edge", "chat")}
        return all(
            len(durations) == 1 and durations[0] >= STREAM_SECONDS * 1000
            for durations in streams.values()
        )

    # Envoy writes access logs in batches (its file flush interval): wait for the lines.
    wait_until(logged_once_lasting_the_whole_time, "the ended stream in both access logs", 30)
