"""The chat service's grpcurl walk-through (docs/chat-service.md) works as written, against
real auth and chat processes; only the ports are changed."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

from devtools.processes import ServiceProcess
from tests.support.docs import DOCS, section
from tests.support.rpc import DEADLINE

DOC = DOCS / "chat-service.md"


def walkthrough_blocks() -> list[str]:
    """The sh blocks of the walk-through: carol's setup, dave's stream, carol's send."""
    blocks = section(DOC, "Try it with grpcurl")
    assert len(blocks) == 3, blocks
    return blocks


async def bash(script: str, cwd: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return await asyncio.create_subprocess_exec(
        "bash",
        "-e",
        "-o",
        "pipefail",
        "-c",
        script,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )


async def output_of(script: str, cwd: Path) -> str:
    process = await bash(script, cwd)
    out, _ = await asyncio.wait_for(process.communicate(), DEADLINE * 4)
    assert process.returncode == 0, out.decode()
    return out.decode()


async def test_two_users_chat_through_grpcurl(tmp_path: Path) -> None:
    auth = ServiceProcess("meshchat-auth", {}, tmp_path / "auth").start()
    chat = ServiceProcess(
        "meshchat-chat", {"MESHCHAT_AUTH_ADDR": auth.address}, tmp_path / "chat"
    ).start()
    try:
        setup, connect, send = (
            block.replace("127.0.0.1:50051", auth.address).replace("127.0.0.1:50052", chat.address)
            for block in walkthrough_blocks()
        )
        out = await output_of(setup + "\ndeclare -p CAROL CHAT > vars.sh\n", tmp_path)
        assert '"username": "dave"' in out
        chat_id = re.search(r"^chat (\S+)$", out, re.MULTILINE)
        assert chat_id is not None, out

        bob = await bash(connect, tmp_path)
        stdout = bob.stdout
        assert stdout is not None
        received = ""

        async def read_until(marker: str) -> None:
            nonlocal received
            while marker not in received:
                line = await stdout.readline()
                assert line, received
                received += line.decode()

        try:
            await asyncio.wait_for(read_until('"caught_up"'), DEADLINE)
            out = await output_of("source vars.sh\n" + send, tmp_path)
            assert '"text": "hi dave"' in out
            await asyncio.wait_for(read_until('"client_message_id": "carol-1"'), DEADLINE)
        finally:
            os.killpg(bob.pid, signal.SIGKILL)  # bash and the grpcurl it started
            await bob.wait()
        assert '"message": {' in received
        assert f'"chat_id": "{chat_id.group(1)}"' in received
        assert '"sender_username": "carol"' in received
        assert '"seq": "1"' in received
    finally:
        chat.stop()
        auth.stop()
