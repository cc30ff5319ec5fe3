"""How things look: styled on a terminal, plain lines in a pipe, JSON lines for scripts.

Text that other people wrote (messages, chat names) goes through :func:`clean` first, so that
it cannot move the cursor, change colours or fake another line on somebody's terminal.
"""

from __future__ import annotations

import enum
import json
import re
import sys
import zlib
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any, TextIO

from google.protobuf.timestamp_pb2 import Timestamp
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from meshchat.auth.v1 import users_pb2
from meshchat.chat.v1 import chat_pb2
from meshchat_cli.roles import role_name

__all__ = [
    "OutputFormat",
    "chat_document",
    "clean",
    "format_time",
    "iso_time",
    "mentions",
    "message_document",
    "message_json",
    "message_line",
    "message_lines",
    "message_text",
    "print_json",
    "print_rows",
    "terminal_console",
    "user_document",
    "wrapped",
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


_ACTION = "/me "
"""A message that begins so is an action: shown as ``* alice waves``."""


def _action(message: chat_pb2.Message) -> str | None:
    return message.text.removeprefix(_ACTION) if message.text.startswith(_ACTION) else None


DELETED = "message deleted"
EDITED = " (edited)"


def _edited(message: chat_pb2.Message) -> str:
    return EDITED if message.HasField("edit_time") else ""


def message_line(message: chat_pb2.Message, own: bool) -> str:
    """``HH:MM:SS sender: text``, the sender marked ``(you)`` on the user's own messages;
    an action as ``HH:MM:SS * sender text``; ``(edited)`` after an edited text, and
    ``message deleted`` for a deleted one."""
    mark = " (you)" if own else ""
    time = format_time(message.create_time, _today())
    sender = clean(message.sender_username)
    if message.HasField("delete_time"):
        return f"{time} {sender}{mark}: {DELETED}"
    action = _action(message)
    if action is not None:
        return f"{time} * {sender}{mark} {clean(action)}{_edited(message)}"
    return f"{time} {sender}{mark}: {clean(message.text)}{_edited(message)}"


def _sender_style(sender: str, own: bool) -> str:
    if own:
        return _OWN_STYLE
    return _SENDER_STYLES[zlib.crc32(sender.encode()) % len(_SENDER_STYLES)]


def message_text(message: chat_pb2.Message, own: bool) -> Text:
    """The line of :func:`message_line`, styled: the user's own messages in green, every
    other sender in a colour of their own."""
    head, body = _message_parts(message, own)
    return Text.assemble(head, body)


def _message_parts(message: chat_pb2.Message, own: bool) -> tuple[Text, Text]:
    """The styled head (time, sender) and body (text) of a message."""
    sender = clean(message.sender_username)
    time = (format_time(message.create_time, _today()), "dim")
    mark = (" (you)" if own else "", "dim green")
    action = _action(message)
    if message.HasField("delete_time"):
        head = Text.assemble(time, " ", (sender, _sender_style(sender, own)), mark, ": ")
        return head, Text(DELETED, style="dim italic")
    if action is not None:
        head = Text.assemble(time, " * ", (sender, _sender_style(sender, own)), mark, " ")
        body = Text(clean(action), style="italic")
    else:
        head = Text.assemble(time, " ", (sender, _sender_style(sender, own)), mark, ": ")
        body = Text(clean(message.text), style="green" if own else "")
    body.highlight_regex(_MENTION, "bold")
    body.append(_edited(message), style="dim")
    return head, body


# @username, as usernames are spelt: letters, digits, '.', '_' and '-'.
_MENTION = r"(?<![\w@])@[A-Za-z0-9][A-Za-z0-9._-]*"


def mentions(message: chat_pb2.Message, username: str) -> bool:
    """Whether ``message`` names ``username`` as ``@username``."""
    pattern = rf"(?<![\w@])@{re.escape(username)}(?![A-Za-z0-9._-])"
    return re.search(pattern, message.text, re.IGNORECASE) is not None


def wrapped(head: Text, body: Text, console: Console, width: int) -> list[Text]:
    """``head`` then ``body`` in lines of at most ``width`` cells, broken between words
    (inside a word only when it is longer than a line), each line after the first indented
    to where the body begins: a hanging indent. A head wider than half the line stands on a
    line of its own, with the body below it indented by four."""
    if head.cell_len <= width // 2:
        lines = body.wrap(console, width - head.cell_len, overflow="fold")
        for line in lines:
            line.rstrip()
        indent = " " * head.cell_len
        return [Text.assemble(head if i == 0 else indent, line) for i, line in enumerate(lines)]
    lines = body.wrap(console, max(1, width - 4), overflow="fold")
    for line in lines:
        line.rstrip()
    return [head, *(Text.assemble("    ", line) for line in lines)]


def message_lines(message: chat_pb2.Message, own: bool, console: Console, width: int) -> list[Text]:
    """The styled message of :func:`message_text`, wrapped to ``width`` by :func:`wrapped`."""
    head, body = _message_parts(message, own)
    return wrapped(head, body, console, width)


def iso_time(timestamp: Timestamp) -> str:
    """The time in ISO 8601, UTC."""
    return timestamp.ToDatetime(tzinfo=UTC).isoformat()


def message_document(message: chat_pb2.Message, own: bool) -> dict[str, Any]:
    """A message as ``--json`` prints it."""
    return {
        "chat_id": message.chat_id,
        "seq": message.seq,
        "sender_id": message.sender_id,
        "sender": message.sender_username,
        "text": message.text,
        "time": iso_time(message.create_time),
        "client_message_id": message.client_message_id,
        "own": own,
        "edited": message.HasField("edit_time"),
        "deleted": message.HasField("delete_time"),
    }


def message_json(message: chat_pb2.Message, own: bool) -> str:
    """One JSON object on one line."""
    return json.dumps(message_document(message, own), ensure_ascii=False)


def chat_document(chat: chat_pb2.Chat) -> dict[str, Any]:
    """A chat as ``--json`` prints it."""
    return {
        "id": chat.id,
        "name": chat.name,
        "owner_id": chat.owner_id,
        "members": [member.username for member in chat.members],
        "last_seq": chat.last_seq,
        "read_seq": chat.read_seq,
        "unread": chat.unread_count,
        "last_message_time": (
            iso_time(chat.last_message_time) if chat.HasField("last_message_time") else None
        ),
    }


def user_document(user: users_pb2.User) -> dict[str, Any]:
    """A user as ``--json`` prints it; ``email`` is empty when the caller may not see it."""
    return {
        "id": user.id,
        "username": user.username,
        "role": role_name(user.role),
        "email": user.email,
        "created": iso_time(user.create_time),
    }


def print_json(document: dict[str, Any]) -> None:
    """One JSON object on one line of standard output."""
    sys.stdout.write(json.dumps(document, ensure_ascii=False) + "\n")
    sys.stdout.flush()


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
