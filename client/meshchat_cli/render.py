"""How things look: styled on a terminal, plain lines in a pipe, JSON lines for scripts.

Text that other people wrote (messages, chat names) goes through :func:`clean` first, so that
it cannot move the cursor, change colours or fake another line on somebody's terminal.
"""

from __future__ import annotations

import enum
import json
import zlib
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import TextIO

from google.protobuf.timestamp_pb2 import Timestamp
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from meshchat.chat.v1 import chat_pb2

__all__ = [
    "OutputFormat",
    "clean",
    "format_time",
    "message_json",
    "message_line",
    "message_text",
    "print_rows",
    "terminal_console",
]

_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_SENDER_STYLES = ("cyan", "magenta", "yellow", "blue", "bright_cyan", "bright_magenta")
_OWN_STYLE = "bold green"


class OutputFormat(enum.Enum):
    """How a command prints messages."""

    TERMINAL = "terminal"
    PLAIN = "plain"
    JSON = "json"

    @classmethod
    def choose(cls, json_lines: bool, stdout: TextIO) -> OutputFormat:
        """JSON when asked for, styled on a terminal, plain lines otherwise."""
        if json_lines:
            return cls.JSON
        return cls.TERMINAL if stdout.isatty() else cls.PLAIN


def _visible(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(text: str) -> str:
    """``text`` with control characters shown as escapes and line breaks indented, so that
    it stays on its own line(s) and cannot drive the terminal."""
    out: list[str] = []
    for char in text:
        if char == "\n":
            out.append("\n    ")
        elif char == "\t":
            out.append("    ")
        elif ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 or char in _BIDI_CONTROLS:
            out.append(_visible(char))
        else:
            out.append(char)
    return "".join(out)


def format_time(timestamp: Timestamp, today: date) -> str:
    """Local time, with the date when it is not today."""
    moment = timestamp.ToDatetime(tzinfo=UTC).astimezone()
    return moment.strftime("%H:%M:%S" if moment.date() == today else "%Y-%m-%d %H:%M:%S")


def _today() -> date:
    return datetime.now().astimezone().date()


def message_line(message: chat_pb2.Message, own: bool) -> str:
    """``HH:MM:SS sender: text``, the sender marked ``(you)`` on the user's own messages."""
    mark = " (you)" if own else ""
    return (
        f"{format_time(message.create_time, _today())} "
        f"{clean(message.sender_username)}{mark}: {clean(message.text)}"
    )


def message_text(message: chat_pb2.Message, own: bool) -> Text:
    """The line of :func:`message_line`, styled: the user's own messages in green, every
    other sender in a colour of their own."""
    sender = clean(message.sender_username)
    if own:
        sender_style = _OWN_STYLE
    else:
        sender_style = _SENDER_STYLES[zlib.crc32(sender.encode()) % len(_SENDER_STYLES)]
    return Text.assemble(
        (format_time(message.create_time, _today()), "dim"),
        " ",
        (sender, sender_style),
        (" (you)" if own else "", "dim green"),
        ": ",
        (clean(message.text), "green" if own else ""),
    )


def message_json(message: chat_pb2.Message, own: bool) -> str:
    """One JSON object on one line."""
    return json.dumps(
        {
            "chat_id": message.chat_id,
            "seq": message.seq,
            "sender_id": message.sender_id,
            "sender": message.sender_username,
            "text": message.text,
            "time": message.create_time.ToDatetime(tzinfo=UTC).isoformat(),
            "client_message_id": message.client_message_id,
            "own": own,
        },
        ensure_ascii=False,
    )


def terminal_console(file: TextIO) -> Console:
    """A rich console that prints text as given: no markup, no highlighting, no wrapping."""
    return Console(file=file, highlight=False, markup=False, emoji=False, soft_wrap=True)


def print_rows(file: TextIO, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table on a terminal; tab-separated lines without a header otherwise."""
    if file.isatty():
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for header in headers:
            table.add_column(header, overflow="fold")
        for row in rows:
            table.add_row(*(Text(clean(cell)) for cell in row))
        Console(file=file, highlight=False).print(table)
        return
    for row in rows:
        file.write("\t".join(clean(cell).replace("\n", " ") for cell in row) + "\n")
    file.flush()
