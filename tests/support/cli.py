"""Run the ``meshchat`` CLI as users do: a subprocess, or a pseudo-terminal for ``connect``
(read through a terminal emulator, so that tests see the screen a person would see)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pexpect
import pyte

from devtools.paths import VENV_BIN
from tests.support.passwords import PASSWORD

__all__ = [
    "PASSWORD",
    "ChatLine",
    "Cli",
    "Terminal",
    "chat_lines",
    "unique_name",
]

MESHCHAT = str(VENV_BIN / "meshchat")
# Environment variables of the developer's shell that would change what the CLI does.
_CLI_VARIABLES = (
    "MESHCHAT_SERVER",
    "MESHCHAT_AUTH_ADDR",
    "MESHCHAT_CHAT_ADDR",
    "MESHCHAT_USER",
    "MESHCHAT_PROFILE",
    "MESHCHAT_CA_FILE",
    "MESHCHAT_SERVER_NAME",
    "MESHCHAT_INSECURE",
)
_CHAT_LINE = re.compile(
    r"^(?:\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d (?P<sender>[A-Za-z0-9._-]+)(?P<own> \(you\))?: "
    r"(?P<text>.*)$"
)


def unique_name(prefix: str) -> str:
    """A username (or chat name) no other test uses: 3 to 32 characters."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class ChatLine:
    """One message as the CLI printed it."""

    sender: str
    text: str
    own: bool


def chat_lines(text: str) -> list[ChatLine]:
    """The message lines in CLI output (plain lines, or a terminal's :meth:`Terminal.text`)."""
    found = []
    for line in text.splitlines():
        match = _CHAT_LINE.match(line.strip())
        if match:
            found.append(ChatLine(match["sender"], match["text"], bool(match["own"])))
    return found


@dataclass
class Cli:
    """``meshchat`` against one stack, with its own config directory (its own logins)."""

    auth_address: str
    chat_address: str
    config_home: Path
    env: Mapping[str, str] = field(default_factory=dict)

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a CLI process."""
        base = {k: v for k, v in os.environ.items() if k not in _CLI_VARIABLES}
        return {
            **base,
            "XDG_CONFIG_HOME": str(self.config_home),
            "MESHCHAT_AUTH_ADDR": self.auth_address,
            "MESHCHAT_CHAT_ADDR": self.chat_address,
            **self.env,
            **(extra or {}),
        }

    def run(
        self,
        *args: str,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``meshchat ARGS`` to completion. No run may ever print a traceback."""
        result = subprocess.run(
            [MESHCHAT, *args],
            input=input if input is not None else "",
            env=self.environment(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert "Traceback" not in result.stderr, result.stderr
        assert "Traceback" not in result.stdout, result.stdout
        return result

    def ok(self, *args: str, input: str | None = None) -> str:
        """Run a command that must succeed; its standard output."""
        result = self.run(*args, input=input)
        assert result.returncode == 0, (args, result.returncode, result.stderr, result.stdout)
        return result.stdout

    def register(self, username: str, password: str = PASSWORD) -> None:
        """Sign up a user."""
        self.ok("register", username, "--password-stdin", input=f"{password}\n")

    def login(self, username: str, password: str = PASSWORD) -> None:
        """Log a user in (the newest login is the default user)."""
        self.ok("login", username, "--password-stdin", input=f"{password}\n")

    def new_user(self, prefix: str) -> str:
        """Sign up and log in a new user; returns the username."""
        username = unique_name(prefix)
        self.register(username)
        self.login(username)
        return username

    def credentials_path(self) -> Path:
        """The credentials file."""
        return self.config_home / "meshchat" / "credentials.json"

    def credentials(self, username: str) -> dict[str, Any]:
        """The stored login of ``username`` on this stack's auth service."""
        document = json.loads(self.credentials_path().read_text())
        login: dict[str, Any] = document["servers"][self.auth_address][username]
        return login

    def edit_credentials(self, username: str, **changes: Any) -> None:
        """Change fields of a stored login, as time or another process would."""
        document = json.loads(self.credentials_path().read_text())
        document["servers"][self.auth_address][username].update(changes)
        self.credentials_path().write_text(json.dumps(document))

    def spawn(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        dimensions: tuple[int, int] = (40, 160),
    ) -> Terminal:
        """Start ``meshchat ARGS`` in a pseudo-terminal of ``dimensions`` (rows, columns)."""
        child = pexpect.spawn(
            MESHCHAT,
            list(args),
            env=self.environment({"TERM": "xterm", **(env or {})}),
            encoding="utf-8",
            codec_errors="replace",
            dimensions=dimensions,
            timeout=30,
        )
        return Terminal(child)


class _Emulator(pyte.HistoryScreen):
    """A terminal screen that keeps what scrolled off the top and answers the program's
    queries (the cursor position) as a terminal would."""

    def __init__(self, columns: int, lines: int, answer: Callable[[str], object]) -> None:
        super().__init__(columns, lines, history=100_000)
        self._answer = answer
        self.bells = 0
        """How many times the bell rang."""

    def write_process_input(self, data: str) -> None:
        self._answer(data)

    def bell(self, *args: object) -> None:
        self.bells += 1


class _Feed:
    """What pexpect reads from the program, passed on to the emulator (as its log file)."""

    def __init__(self, screen: _Emulator) -> None:
        self._stream = pyte.Stream(screen)

    def write(self, data: str) -> None:
        self._stream.feed(data)

    def flush(self) -> None:
        """Nothing is buffered."""


class Terminal:
    """A process in a pseudo-terminal, shown on an emulated screen of the same size; what
    scrolled off the top is kept for inspection."""

    def __init__(self, child: pexpect.spawn[str]) -> None:
        self.child = child
        rows, columns = child.getwinsize()
        self.screen = _Emulator(columns, rows, child.send)
        child.logfile_read = _Feed(self.screen)

    def resize(self, rows: int, columns: int) -> None:
        """Change the terminal's size, as a person dragging the window would."""
        self.screen.resize(rows, columns)
        self.child.setwinsize(rows, columns)

    def rows(self) -> list[str]:
        """The rows of the screen as shown now, top to bottom, without trailing blanks."""
        return [row.rstrip() for row in self.screen.display]

    def text(self) -> str:
        """Everything shown: the rows that scrolled off, then the screen; one row a line."""
        width = self.screen.columns
        scrolled = [
            "".join(line[x].data for x in range(width)).rstrip() for line in self.screen.history.top
        ]
        return "\n".join([*scrolled, *self.rows()]).rstrip("\n")

    def messages(self) -> list[ChatLine]:
        """The message lines shown so far."""
        return chat_lines(self.text())

    def wait_for(
        self, condition: Callable[[Terminal], bool], what: str, timeout: float = 30.0
    ) -> None:
        """Read output until ``condition(self)`` holds; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not condition(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}; the screen:\n{self.text()}")
            try:
                self.child.read_nonblocking(65536, timeout=min(remaining, 1.0))
            except pexpect.TIMEOUT:
                continue
            except pexpect.EOF:
                if condition(self):
                    return
                raise AssertionError(
                    f"the process ended while waiting for {what}; the screen:\n{self.text()}"
                ) from None

    def wait_for_text(self, text: str, timeout: float = 30.0) -> None:
        """Wait until ``text`` appears."""
        self.wait_for(lambda terminal: text in terminal.text(), repr(text), timeout)

    def wait_for_messages(self, texts: Sequence[str], timeout: float = 30.0) -> None:
        """Wait until every one of ``texts`` has been shown as a message."""

        def shown(terminal: Terminal) -> bool:
            seen = {line.text for line in terminal.messages()}
            return all(text in seen for text in texts)

        self.wait_for(shown, f"messages {list(texts)}", timeout)

    def type(self, line: str) -> None:
        """Type a line and press Enter."""
        self.child.sendline(line)

    def finish(self, timeout: float = 15.0) -> int:
        """Wait for the process to end; its exit status."""
        try:
            self.child.expect(pexpect.EOF, timeout=timeout)
        except pexpect.TIMEOUT:
            raise AssertionError(f"the process did not end; the screen:\n{self.text()}") from None
        self.child.close()
        status = self.child.exitstatus
        return -1 if status is None else int(status)
