"""A Connect stream through two Envoys (the edge and the chat sidecar) stays open and keeps
delivering for at least 90 seconds. This test takes about 95 seconds by design."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from scripts.mesh import Mesh, wait_until
from tests.mesh.clients import access_log, edge_cli
from tests.support.cli import unique_name

pytestmark = pytest.mark.mesh

STREAM_SECONDS = 90.0
PACE_SECONDS = 10.0
CONNECT = "/meshchat.chat.v1.ChatService/Connect"


def connect_streams(mesh: Mesh, envoy: str) -> list[int]:
    """The durations (ms) of the Connect streams an Envoy has logged; it logs a stream when
    the stream ends."""
    return [
        int(str(line["duration_ms"])) for line in access_log(mesh, envoy) if line["path"] == CONNECT
    ]


@pytest.mark.timeout(240)
def test_a_connect_stream_stays_open_and_delivers_for_90_seconds(
    mesh: Mesh, tmp_path: Path
) -> None:
    cli = edge_cli(mesh, tmp_path)
    bob = cli.new_user("bob")
    cli.new_user("alice")
    chat = cli.ok("create", "chat", unique_name("long"), "--member", bob).strip()
    ended_before = {envoy: connect_streams(mesh, envoy) for envoy in ("edge", "chat")}

    session = cli.spawn("connect", chat)
    opened = time.monotonic()
    sent: list[str] = []
    while True:
        text = f"tick {len(sent)} at {time.monotonic() - opened:.0f} s"
        cli.ok("--user", bob, "send", chat, text)
        sent.append(text)
        session.wait_for_messages(sent, timeout=20)
        if time.monotonic() - opened >= STREAM_SECONDS:
            break
        # Pacing, not synchronisation: the messages are spread over the stream's life on
        # purpose, one every PACE_SECONDS; each delivery above is waited for with a deadline.
        time.sleep(max(0.0, opened + len(sent) * PACE_SECONDS - time.monotonic()))
    assert len(sent) >= STREAM_SECONDS / PACE_SECONDS

    # Still the stream opened at the start: the CLI runs, and neither Envoy has ended a stream.
    assert session.child.isalive()
    assert {envoy: connect_streams(mesh, envoy) for envoy in ("edge", "chat")} == ended_before

    session.child.sendintr()
    assert session.finish() == 0

    def logged_once_lasting_90_seconds() -> bool:
        return all(
            len(new := connect_streams(mesh, envoy)[len(ended_before[envoy]) :]) == 1
            and new[0] >= STREAM_SECONDS * 1000
            for envoy in ("edge", "chat")
        )

    # Envoy writes access logs in batches (its file flush interval): wait for the lines.
    wait_until(logged_once_lasting_90_seconds, "the ended stream in both access logs", 30)
