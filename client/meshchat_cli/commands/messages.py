"""send, history, connect."""

from __future__ import annotations

import shlex
import sys
import uuid
from typing import Annotated

import typer

from meshchat.chat.v1 import chat_pb2
from meshchat_cli.commands.params import ChatArg, JsonDocument, JsonLines
from meshchat_cli.credentials import Credentials
from meshchat_cli.errors import CliError, ExitCode
from meshchat_cli.options import open_api
from meshchat_cli.render import OutputFormat, message_document, print_json
from meshchat_cli.screen import PipeScreen, Screen
from meshchat_cli.session import ConnectSession

__all__ = ["connect", "history", "send"]


def _pipe_screen(user_id: str, json_lines: bool) -> PipeScreen:
    output = OutputFormat.choose(json_lines, sys.stdout)
    return PipeScreen(output, user_id, sys.stdin, sys.stdout, sys.stderr)


def _connect_screen(
    credentials: Credentials, chat: chat_pb2.Chat, json_lines: bool, bell: bool
) -> Screen:
    """The pinned input line at a terminal; plain lines in, messages out, otherwise."""
    output = OutputFormat.choose(json_lines, sys.stdout)
    if output is OutputFormat.TERMINAL and sys.stdin.isatty():
        from meshchat_cli.terminal import TerminalScreen

        return TerminalScreen(credentials.user_id, credentials.username, chat.name, bell)
    return _pipe_screen(credentials.user_id, json_lines)


def _read_message() -> str:
    """The message on standard input, without the line break that ends it."""
    if sys.stdin.isatty():
        typer.echo("type the message; end it with Ctrl-D on a line of its own", err=True)
    text = sys.stdin.read().rstrip("\r\n")
    if not text:
        raise CliError("the message on standard input is empty; nothing sent", ExitCode.USAGE)
    return text


def send(
    ctx: typer.Context,
    chat: ChatArg,
    message: Annotated[
        str | None,
        typer.Argument(
            metavar="MESSAGE",
            help="The text to send; `-` or nothing reads it from standard input.",
            show_default=False,
        ),
    ] = None,
    json_document: JsonDocument = False,
) -> None:
    """Send one message; prints its number in the chat."""
    text = _read_message() if message is None or message == "-" else message
    with open_api(ctx) as api:
        stored = api.send_message(api.chat_id(chat), text, uuid.uuid4().hex)
    if json_document:
        print_json(message_document(stored, own=True))
        return
    typer.echo(f"sent #{stored.seq}")


def _more_hint(chat: str, page: chat_pb2.ListMessagesResponse, forwards: bool) -> str | None:
    """How to read the next page, when there is one."""
    if not page.has_more or not page.messages:
        return None
    if forwards:
        seq = page.messages[-1].seq
        return f"more after #{seq}: meshchat history {shlex.quote(chat)} --after {seq}"
    seq = page.messages[0].seq
    return f"more before #{seq}: meshchat history {shlex.quote(chat)} --before {seq}"


def history(
    ctx: typer.Context,
    chat: ChatArg,
    limit: Annotated[
        int,
        typer.Option("--limit", "-n", min=1, max=500, metavar="N", help="How many messages."),
    ] = 20,
    before: Annotated[
        int | None,
        typer.Option(
            "--before", min=1, metavar="SEQ", help="The newest of those before #SEQ (page back)."
        ),
    ] = None,
    after: Annotated[
        int | None,
        typer.Option(
            "--after", min=0, metavar="SEQ", help="The oldest of those after #SEQ (page on)."
        ),
    ] = None,
    json_lines: JsonLines = False,
) -> None:
    """Show a chat's newest messages (or a page before or after a message), oldest first;
    says on standard error how to read the next page."""
    if before is not None and after is not None:
        raise typer.BadParameter("give --before or --after, not both", param_hint="--after")
    with open_api(ctx) as api:
        user_id = api.tokens.credentials().user_id
        page = api.list_messages(api.chat_id(chat), limit, before_seq=before, after_seq=after)
    with _pipe_screen(user_id, json_lines) as screen:
        for message in page.messages:
            screen.show(message)
        hint = _more_hint(chat, page, forwards=after is not None)
        if hint is not None:
            screen.notice(hint)


def connect(
    ctx: typer.Context,
    chat: ChatArg,
    json_lines: JsonLines = False,
    history: Annotated[
        int,
        typer.Option(
            "--history", min=0, max=500, metavar="N", help="How many earlier messages to show."
        ),
    ] = 20,
    bell: Annotated[
        bool,
        typer.Option(
            "--bell/--no-bell",
            envvar="MESHCHAT_BELL",
            help="Ring the terminal's bell when someone writes @you.",
        ),
    ] = True,
) -> None:
    """Join a chat: its recent history, then live messages; each line you type is sent.

    Reconnects by itself when the connection drops. /help lists the commands; Ctrl-C,
    Ctrl-D (end of input) or /quit leaves; //TEXT sends a line that begins with /TEXT.
    """
    with open_api(ctx) as api:
        credentials = api.tokens.credentials()
        found = api.get_chat(api.chat_id(chat))
        try:
            with _connect_screen(credentials, found, json_lines, bell) as screen:
                ConnectSession(api, found, history, screen).run()
        except KeyboardInterrupt:
            typer.echo("", err=True)
