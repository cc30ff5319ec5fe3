"""`make run` (python -m devtools.run): honcho runs both services; on a terminal their log lines
are readable text, through a pipe JSON; once both serve, one message says so and what to type
next; Ctrl-C (or SIGTERM) stops both and ends with status 0.

The services run from a Procfile of the test's own (the repository's, with free ports and
files under the test's directory), so that the test does not need 50051 and 50052."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pexpect

from devtools.paths import REPO_ROOT, VENV_BIN
from devtools.processes import free_port
from devtools.run import ready_message

READY = "meshchat is ready"


def procfile(tmp_path: Path) -> tuple[Path, str, str]:
    """A Procfile like the repository's, on free ports, its files under ``tmp_path``; and the
    two addresses."""
    auth, chat = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    common = "--metrics-listen off --grace-period 2s"
    path = tmp_path / "Procfile"
    path.write_text(
        f"auth: exec {VENV_BIN}/meshchat-auth serve --listen {auth} {common}"
        f" --database-url sqlite:///{tmp_path}/auth.db --keys-dir {tmp_path}/keys\n"
        f"chat: exec {VENV_BIN}/meshchat-chat serve --listen {chat} {common}"
        f" --database-url sqlite:///{tmp_path}/chat.db --auth-addr {auth}\n"
    )
    return path, auth, chat


def run_args(tmp_path: Path) -> tuple[list[str], str, str]:
    """The arguments of ``python`` that run devtools.run on :func:`procfile`'s services."""
    path, auth, chat = procfile(tmp_path)
    args = ["-m", "devtools.run", "--procfile", str(path), "--auth-addr", auth]
    return [*args, "--chat-addr", chat], auth, chat


def environment() -> dict[str, str]:
    """This environment without MESHCHAT_* variables (the log format is make run's choice)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MESHCHAT_")}


def test_on_a_terminal_readable_lines_then_ready_and_ctrl_c_stops(tmp_path: Path) -> None:
    args, auth, chat = run_args(tmp_path)
    child = pexpect.spawn(
        sys.executable,
        args,
        cwd=str(REPO_ROOT),
        env=environment(),
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 200),
    )
    try:
        child.expect(READY)
        printed = str(child.before) + READY
        child.expect("Ctrl-C here stops both services.")
        printed += str(child.before)
        child.sendintr()
        child.expect(pexpect.EOF, timeout=30)
    finally:
        if child.isalive():
            child.terminate(force=True)
        child.close()
    assert child.exitstatus == 0, child.before
    assert ready_message(auth, chat).splitlines()[1] in printed.replace("\r\n", "\n")
    # Each service's "serving" line, as text (time, level, logger, message, fields), no JSON.
    served = [line for line in printed.splitlines() if "meshchat_runtime.server: serving" in line]
    assert len(served) == 2, printed
    assert any(f"address={auth}" in line for line in served)
    assert any(f"address={chat}" in line for line in served)
    assert not [line for line in printed.splitlines() if '{"time"' in line]


def test_through_a_pipe_json_lines_and_sigterm_stops(tmp_path: Path) -> None:
    args, auth, chat = run_args(tmp_path)
    process = subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    try:
        # Read until the ready message (pytest-timeout bounds a service that never serves).
        for line in process.stdout:
            lines.append(line)
            if line.startswith(READY):
                break
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, "".join(lines) + rest
    assert lines[-1].strip() == ready_message(auth, chat).splitlines()[0]
    records = [json.loads(line.split("| ", 1)[1]) for line in lines if '| {"' in line]
    serving = [record for record in records if record["message"] == "serving"]
    assert sorted(record["address"] for record in serving) == sorted([auth, chat])
