"""``meshchat-chat`` as an operator meets it: --help, one-line configuration errors with exit
status 2, and a graceful stop on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2

from devtools.processes import free_port, health_status
from meshchat_chat.config import SETTINGS
from tests.support.rpc import eventually

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

PROGRAM = [sys.executable, "-m", "meshchat_chat"]


async def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *PROGRAM,
        *args,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_help_documents_every_setting() -> None:
    code, out, _ = await run("serve", "--help")
    assert code == 0
    flat = " ".join(out.split())
    for setting in SETTINGS:
        assert f"--{setting.name}" in flat, setting.name
        assert setting.env in flat, setting.env
    for default in (
        "127.0.0.1:50052",
        "127.0.0.1:9102",
        "sqlite:///.data/chat.db",
        "127.0.0.1:50051",
    ):
        assert default in flat, default
    code, out, _ = await run("--help")
    assert code == 0
    assert "serve" in out


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("MESHCHAT_DATABASE_URL", "mysql://db/chat"),
        ("MESHCHAT_LISTEN", "no-port"),
        ("MESHCHAT_AUTH_ADDR", "auth:http"),
        ("MESHCHAT_AUTHZ_MODE", "sometimes"),
        ("MESHCHAT_MAX_MESSAGE_LENGTH", "0"),
        ("MESHCHAT_MAX_MESSAGE_LENGTH", "many"),
        ("MESHCHAT_STREAM_QUEUE_SIZE", "0"),
        ("MESHCHAT_HEARTBEAT_INTERVAL", "soon"),
        ("MESHCHAT_GRACE_PERIOD", "-5s"),
        ("MESHCHAT_ISSUER", " "),
    ],
)
async def test_a_bad_setting_is_one_line_and_exit_status_2(
    tmp_path: Path, setting: str, value: str
) -> None:
    code, _, err = await run("serve", env={setting: value}, cwd=tmp_path)
    assert code == 2
    assert err.splitlines() == [err.strip()], err
    assert err.startswith(f"meshchat-chat: error: {setting}"), err
    assert not (tmp_path / ".data").exists()


async def test_a_port_in_use_is_one_line_and_exit_status_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"MESHCHAT_LISTEN": f"127.0.0.1:{port}", "MESHCHAT_METRICS_LISTEN": "off"}
        code, _, err = await run("serve", env=env, cwd=tmp_path)
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("meshchat-chat: error: MESHCHAT_LISTEN")
    assert "Traceback" not in err


async def test_sigterm_stops_the_service_gracefully(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "MESHCHAT_LISTEN": f"127.0.0.1:{port}",
        "MESHCHAT_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
        # No auth service there: the chat service starts anyway, NOT_SERVING without keys,
        # and keeps asking for them.
        "MESHCHAT_AUTH_ADDR": f"127.0.0.1:{free_port()}",
        "MESHCHAT_GRACE_PERIOD": "2s",
    }
    process = await asyncio.create_subprocess_exec(
        *PROGRAM, "serve", env=env, cwd=tmp_path, stderr=asyncio.subprocess.PIPE
    )

    async def answering() -> bool:
        assert process.returncode is None
        return await asyncio.to_thread(health_status, f"127.0.0.1:{port}") == NOT_SERVING

    try:
        await eventually(answering, what="health answering NOT_SERVING")
        assert (tmp_path / ".data" / "chat.db").exists()
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), 15)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    assert b"Traceback" not in err
    assert b'"signal received: stopping"' in err
