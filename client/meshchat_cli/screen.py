"""The connect session's screen: messages and notices out, typed lines in.

On a terminal the user types at a prompt (with line editing when the readline module is
available) while messages arrive from another thread: each arriving line clears the prompt,
prints itself, and puts the prompt back with what had been typed so far.
"""

from __future__ import annotations

import threading
from types import ModuleType
from typing import TextIO

from rich.cells import cell_len
from rich.text import Text

from meshchat.chat.v1 import chat_pb2
from meshchat_cli.render import (
    OutputFormat,
    message_json,
    message_line,
    message_text,
    terminal_console,
)

__all__ = ["PROMPT", "ChatScreen"]

PROMPT = "> "
_CLEAR_LINE = "\r\x1b[2K"
_UP_AND_CLEAR = "\x1b[1A\x1b[2K"


def _readline() -> ModuleType | None:
    try:
        import readline
    except ImportError:
        return None
    return readline


class ChatScreen:
    """Writes messages in one :class:`OutputFormat` and reads the lines to send.

    Messages go to ``stdout``; notices (connection state, errors) to ``stderr``, so that a
    pipe of ``--json`` lines carries messages only. Safe to call from several threads.
    """

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
        self._interactive = output is OutputFormat.TERMINAL and stdin.isatty()
        self._readline = _readline() if self._interactive else None
        self._console = terminal_console(stdout)
        self._error_console = terminal_console(stderr)
        self._lock = threading.Lock()
        self._prompt_shown = False

    def _hide_prompt(self) -> None:
        if self._prompt_shown:
            self._stdout.write(_CLEAR_LINE)

    def _restore_prompt(self) -> None:
        if self._prompt_shown:
            typed = self._readline.get_line_buffer() if self._readline else ""
            self._stdout.write(PROMPT + typed)
        self._stdout.flush()

    def show(self, message: chat_pb2.Message) -> None:
        """Print one message; the user's own are set apart."""
        own = message.sender_id == self._user_id
        with self._lock:
            if self._output is OutputFormat.JSON:
                self._stdout.write(message_json(message, own) + "\n")
                self._stdout.flush()
            elif self._output is OutputFormat.PLAIN:
                self._stdout.write(message_line(message, own) + "\n")
                self._stdout.flush()
            else:
                self._hide_prompt()
                self._console.print(message_text(message, own))
                self._restore_prompt()

    def notice(self, text: str, style: str = "dim") -> None:
        """Print a line about the session (not a message) to standard error."""
        with self._lock:
            if self._output is OutputFormat.TERMINAL:
                self._hide_prompt()
                self._stdout.flush()
                self._error_console.print(Text(text, style=style))
                self._restore_prompt()
            else:
                self._stderr.write(text + "\n")
                self._stderr.flush()

    def read_line(self) -> str | None:
        """The next line typed or piped in, or None at the end of input."""
        if not self._interactive:
            line = self._stdin.readline()
            return line.rstrip("\r\n") if line else None
        with self._lock:
            self._prompt_shown = True
        try:
            line = input(PROMPT)
        except EOFError:
            self._stdout.write("\n")
            return None
        finally:
            with self._lock:
                self._prompt_shown = False
        # The terminal echoed "> line"; the message appears, set apart, once it is stored.
        width = max(1, self._console.width)
        rows = (cell_len(PROMPT + line) - 1) // width + 1
        with self._lock:
            self._stdout.write(_UP_AND_CLEAR * rows)
            self._stdout.flush()
        return line
