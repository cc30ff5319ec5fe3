"""The connect session's screen: messages and notices out, typed lines in.

Two kinds: :class:`~meshchat_cli.terminal.TerminalScreen` when a person types at a
terminal (a pinned input line under the messages, a status line), and :class:`PipeScreen`
otherwise (lines read from standard input; messages in one :class:`OutputFormat`).
"""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, TextIO

from rich.text import Text

from meshchat.chat.v1 import chat_pb2
from meshchat_cli.render import (
    OutputFormat,
    message_json,
    message_line,
    message_lines,
    terminal_console,
)

__all__ = ["Connection", "PipeScreen", "Screen", "Status"]


class Connection(enum.Enum):
    """The state of the chat's stream."""

    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    OFFLINE = "offline"
    """Reconnecting for a while already; the tries go on at the longest interval."""


@dataclass(frozen=True, slots=True)
class Status:
    """What the status line shows."""

    connection: Connection = Connection.CONNECTING
    reason: str = ""
    """Why the stream was lost."""
    attempt: int = 0
    """How many tries to reconnect have failed."""
    retry_at: float | None = None
    """When the next try is, in :func:`time.monotonic` seconds."""
    since: float | None = None
    """When the stream was lost, in :func:`time.time` seconds."""
    unsent: int = 0
    """Typed lines not yet stored."""

    def describe(self, now: float) -> str:
        """``live``, ``reconnecting (unavailable) · try 3 in 2 s · 1 unsent``, ... : the most
        telling first, since a narrow status line cuts the end."""
        parts = [self.connection.value]
        if self.connection is Connection.OFFLINE and self.since is not None:
            parts[0] += f" since {time.strftime('%H:%M:%S', time.localtime(self.since))}"
        elif self.connection is Connection.RECONNECTING and self.reason:
            parts[0] += f" ({self.reason})"
        if self.retry_at is not None:
            parts.append(f"try {self.attempt + 1} in {max(0, round(self.retry_at - now))} s")
        if self.unsent:
            parts.append(f"{self.unsent} unsent")
        return " · ".join(parts)


class Screen(Protocol):
    """Where a connect session shows messages and reads lines; safe from several threads."""

    def __enter__(self) -> Screen:
        """Take over the terminal (or nothing, for a pipe)."""
        ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Give the terminal back, everything shown."""
        ...

    def show(self, message: chat_pb2.Message) -> None:
        """Print one message; the user's own are set apart."""
        ...

    def notice(self, text: str, style: str = "dim") -> None:
        """Print a line about the session, not a message."""
        ...

    def status(self, status: Status) -> None:
        """The connection state changed."""
        ...

    def read_line(self) -> str | None:
        """The next line typed or piped in, or None at the end of input."""
        ...


class PipeScreen:
    """Messages in one :class:`OutputFormat` on ``stdout``, notices on ``stderr`` (so that a
    pipe of ``--json`` lines carries messages only), lines read from ``stdin``."""

    def __init__(
        self,
        output: OutputFormat,
        user_id: str,
        stdin: TextIO,
        stdout: TextIO,
        stderr: TextIO,
    ) -> None:
        self._output = output
        self._user_id = user_id
        self._stdin = stdin
        self._stdout = stdout
        self._stderr = stderr
        self._console = terminal_console(stdout)
        self._error_console = terminal_console(stderr)
        self._lock = threading.Lock()
        self._connection = Connection.CONNECTING

    def __enter__(self) -> PipeScreen:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stdout.flush()

    def show(self, message: chat_pb2.Message) -> None:
        own = message.sender_id == self._user_id
        with self._lock:
            if self._output is OutputFormat.JSON:
                self._stdout.write(message_json(message, own) + "\n")
            elif self._output is OutputFormat.PLAIN:
                self._stdout.write(message_line(message, own) + "\n")
            else:
                for line in message_lines(message, own, self._console, self._console.width):
                    self._console.print(line)
            self._stdout.flush()

    def notice(self, text: str, style: str = "dim") -> None:
        with self._lock:
            if self._output is OutputFormat.TERMINAL:
                self._stdout.flush()
                self._error_console.print(Text(text, style=style))
            else:
                self._stderr.write(text + "\n")
                self._stderr.flush()

    def status(self, status: Status) -> None:
        # A pipe has no status line: a notice when the stream goes offline (it was lost
        # earlier, with its own notice).
        with self._lock:
            previous, self._connection = self._connection, status.connection
        if status.connection is Connection.OFFLINE and previous is not Connection.OFFLINE:
            self.notice(f"{status.describe(time.monotonic())}; still trying", "yellow")

    def read_line(self) -> str | None:
        line = self._stdin.readline()
        return line.rstrip("\r\n") if line else None
