"""The connect session's screen at a terminal, drawn by prompt_toolkit.

The line being typed is pinned at the bottom, with its own editing and history, above a
status line (who, which chat, the connection's state). Messages and notices are printed
above the input line, wrapped between words with a hanging indent to the terminal's width
at the time; prompt_toolkit redraws the input line after each, so that nothing is ever drawn
over what is being typed.
"""

from __future__ import annotations

import io
import threading
import time
from types import TracebackType

from prompt_toolkit import PromptSession
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.patch_stdout import StdoutProxy
from rich.console import Console
from rich.text import Text

from meshchat.chat.v1 import chat_pb2
from meshchat_cli.render import clean, mentions, message_lines, wrapped
from meshchat_cli.screen import Status

__all__ = ["PROMPT", "TerminalScreen"]

PROMPT = "> "
# The countdown to the next reconnection try moves once a second.
_STATUS_REFRESH = 1.0


class TerminalScreen:
    """A person at a terminal: ``username`` in the chat ``chat_name``."""

    def __init__(self, user_id: str, username: str, chat_name: str, bell: bool) -> None:
        """``bell``: ring the terminal's bell when someone mentions ``@username``."""
        self._user_id = user_id
        self._username = username
        self._bell = bell
        self._where = f"{clean(username)} in {clean(chat_name)}"
        self._lock = threading.Lock()
        self._status = Status()
        self._session: PromptSession[str] = PromptSession(
            history=InMemoryHistory(),
            bottom_toolbar=self._toolbar,
            refresh_interval=_STATUS_REFRESH,
            erase_when_done=True,
        )
        self._proxy: StdoutProxy | None = None

    def __enter__(self) -> TerminalScreen:
        # Start at the bottom, the input line above the status line, so that it stays
        # there while messages scroll up above it. What the terminal showed before scrolls
        # up too, and stays in its scrollback.
        output = self._session.output
        output.write_raw("\n" * max(0, output.get_size().rows - 2))
        output.flush()
        # Output above the input line goes through the proxy, which writes it while the
        # input line is hidden and has it redrawn after.
        self._proxy = StdoutProxy(raw=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._proxy is not None:
            self._proxy.close()
            self._proxy = None

    def _width(self) -> int:
        return max(20, self._session.output.get_size().columns)

    def _print(self, lines: list[Text], bell: bool = False) -> None:
        buffer = io.StringIO()
        console = Console(
            file=buffer,
            force_terminal=True,
            color_system="standard",
            highlight=False,
            markup=False,
            emoji=False,
            soft_wrap=True,
        )
        for line in lines:
            console.print(line)
        if bell:
            buffer.write("\a")
        with self._lock:
            if self._proxy is not None:
                self._proxy.write(buffer.getvalue())
                self._proxy.flush()

    def _console(self) -> Console:
        return Console(file=io.StringIO(), width=self._width(), force_terminal=True)

    def show(self, message: chat_pb2.Message) -> None:
        """Print one message above the input line, wrapped to the terminal's width; ring
        the bell when it mentions the user (and the bell is on)."""
        own = message.sender_id == self._user_id
        bell = self._bell and not own and mentions(message, self._username)
        self._print(message_lines(message, own, self._console(), self._width()), bell)

    def notice(self, text: str, style: str = "dim") -> None:
        """Print a line about the session above the input line."""
        lines = wrapped(
            Text("-- ", style=style), Text(text, style=style), self._console(), self._width()
        )
        self._print(lines)

    def status(self, status: Status) -> None:
        """Show ``status`` in the status line."""
        with self._lock:
            self._status = status
        self._session.app.invalidate()

    def _toolbar(self) -> FormattedText:
        with self._lock:
            status = self._status
        return FormattedText([("", f" {status.describe(time.monotonic())} · {self._where}")])

    def read_line(self) -> str | None:
        """The next line typed, or None at Ctrl-D; Ctrl-C raises KeyboardInterrupt."""
        try:
            return self._session.prompt(PROMPT)
        except EOFError:
            return None
