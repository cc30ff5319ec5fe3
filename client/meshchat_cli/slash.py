"""What a line typed into ``meshchat connect`` asks for: a message to send, or a command.

A line that begins with ``/`` is a command (``/help`` lists them); ``//`` sends the rest of
the line, beginning with a single ``/``. ``/me waves`` is sent as it is and shown as an
action (``* alice waves``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "HELP",
    "HISTORY_MAX",
    "Delete",
    "Edit",
    "Help",
    "History",
    "Invalid",
    "Nothing",
    "Quit",
    "Send",
    "Typed",
    "Who",
    "parse",
]

HISTORY_MAX = 500
"""The most messages that ``/history N`` shows (the server's page size)."""

HELP = (
    "commands: /help this list · /quit leave (or Ctrl-D) · /who the members · "
    f"/history N the last N messages (at most {HISTORY_MAX}) · /me TEXT an action · "
    "/edit SEQ TEXT change your message #SEQ · /delete SEQ delete message #SEQ · "
    "//TEXT sends /TEXT"
)


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``text`` to the chat."""

    text: str


@dataclass(frozen=True, slots=True)
class Help:
    """List the commands."""


@dataclass(frozen=True, slots=True)
class Quit:
    """Leave the chat."""


@dataclass(frozen=True, slots=True)
class Who:
    """Show the members."""


@dataclass(frozen=True, slots=True)
class History:
    """Show the last ``count`` messages."""

    count: int


@dataclass(frozen=True, slots=True)
class Edit:
    """Change the text of message ``seq``."""

    seq: int
    text: str


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete message ``seq``."""

    seq: int


@dataclass(frozen=True, slots=True)
class Invalid:
    """A command that does not exist or is used wrongly: what to tell the user."""

    problem: str


@dataclass(frozen=True, slots=True)
class Nothing:
    """A blank line."""


Typed = Send | Help | Quit | Who | History | Edit | Delete | Invalid | Nothing


def _edit(argument: str) -> Typed:
    seq, _, text = argument.partition(" ")
    if not seq.isdigit() or int(seq) < 1 or not text.strip():
        return Invalid("/edit takes a message's number and the new text, like /edit 12 hello")
    return Edit(int(seq), text.strip())


def _delete(argument: str) -> Typed:
    if not argument.isdigit() or int(argument) < 1:
        return Invalid("/delete takes a message's number, like /delete 12")
    return Delete(int(argument))


def _history(argument: str) -> Typed:
    if not argument.isdigit() or not 1 <= int(argument) <= HISTORY_MAX:
        return Invalid(f"/history takes a number from 1 to {HISTORY_MAX}, like /history 50")
    return History(int(argument))


def parse(line: str) -> Typed:
    """What ``line`` asks for."""
    if not line.strip():
        return Nothing()
    if line.startswith("//"):
        return Send(line[1:])
    if not line.startswith("/"):
        return Send(line)
    name, _, argument = line[1:].partition(" ")
    argument = argument.strip()
    match name:
        case "help" | "?":
            return Help()
        case "quit" | "exit":
            return Quit()
        case "who":
            return Who()
        case "history":
            return _history(argument)
        case "edit":
            return _edit(argument)
        case "delete":
            return _delete(argument)
        case "me" if argument:
            return Send(line)
        case "me":
            return Invalid("/me needs a text, like /me waves")
        case _:
            return Invalid(f"unknown command /{name}; /help lists them, //{name} sends it")
