"""``make run``: both services under honcho with the Procfile, their log lines readable on a
terminal (JSON otherwise, or as ``MESHCHAT_LOG_FORMAT`` says), and one message saying the
stack is ready and what to type next, once both answer their health checks.

``python -m devtools.run [--procfile FILE] [--auth-addr HOST:PORT] [--chat-addr HOST:PORT]``;
the addresses are those the services listen on (by default their tables' defaults, which are
also the CLI's). Ctrl-C reaches honcho, which stops both services; the exit status is
honcho's, 0 after a Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

from devtools.paths import REPO_ROOT, VENV_BIN
from devtools.processes import ServiceNotHealthy, wait_for_health
from meshchat_auth.config import SETTINGS as AUTH_SETTINGS
from meshchat_chat.config import SETTINGS as CHAT_SETTINGS
from meshchat_runtime.settings import LISTEN, LOG_FORMAT, Setting

__all__ = ["main", "ready_message"]

# How long both services may take to answer SERVING before the wait gives up (they keep going).
READY_DEADLINE = 60.0
# honcho's status after Ctrl-C (130) or SIGTERM (143), once both services have stopped cleanly.
STOPPED_AS_ASKED = (130, 143)
NEXT_STEPS = ("register alice", "login alice", "create chat general", "connect general")


def _listen_default(settings: tuple[Setting[object], ...]) -> str:
    [listen] = [setting for setting in settings if setting.name == LISTEN.name]
    return listen.default_text


def ready_message(auth: str, chat: str) -> str:
    """What ``make run`` prints once both services are SERVING."""
    lines = [
        f"meshchat is ready: auth service on {auth}, chat service on {chat}.",
        "In another terminal:",
        '  export PATH="$PWD/.venv/bin:$PATH"',
        *(f"  meshchat {command}" for command in NEXT_STEPS),
        "Ctrl-C here stops both services.",
    ]
    return "\n".join(lines)


def _announce_when_ready(
    honcho: subprocess.Popen[bytes], auth: str, chat: str, out: IO[str]
) -> None:
    try:
        for address in (auth, chat):
            wait_for_health(address, deadline=READY_DEADLINE, process=honcho)
    except ServiceNotHealthy as exc:
        if honcho.poll() is None:
            print(f"make run: not ready yet ({exc}); see the log lines above", file=out, flush=True)
        return
    print(ready_message(auth, chat), file=out, flush=True)


def main(argv: list[str] | None = None, out: IO[str] = sys.stdout) -> int:
    """Run honcho with the Procfile, print the next steps once both services serve, and return
    honcho's exit status (0 after Ctrl-C or SIGTERM)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--procfile", type=Path, default=REPO_ROOT / "Procfile")
    parser.add_argument("--auth-addr", default=_listen_default(AUTH_SETTINGS))
    parser.add_argument("--chat-addr", default=_listen_default(CHAT_SETTINGS))
    args = parser.parse_args(argv)
    env = dict(os.environ)
    # Under honcho the services write to a pipe: "auto" would mean JSON, so decide here.
    env.setdefault(LOG_FORMAT.env, "text" if out.isatty() else "json")
    command = [str(VENV_BIN / "honcho"), "--procfile", str(args.procfile), "start"]
    honcho = subprocess.Popen(command, env=env)
    # Ctrl-C goes to the whole foreground process group: honcho stops the services, and this
    # process waits for it instead of dying first. SIGTERM is passed on the same way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: honcho.send_signal(signal.SIGTERM))
    # The health checks start grpc's threads; they inherit this mask, so that a SIGTERM is
    # delivered to the main thread, interrupting its wait for honcho to run the handler (one
    # that comes while the health checks run is handled when they end).
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    _announce_when_ready(honcho, args.auth_addr, args.chat_addr, out)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    status = honcho.wait()
    return 0 if status in STOPPED_AS_ASKED else status


if __name__ == "__main__":
    sys.exit(main())
