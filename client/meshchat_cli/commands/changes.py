"""edit, delete-message, read: changing sent messages and moving the read position."""

from __future__ import annotations

from typing import Annotated

import typer

from meshchat_cli.commands.params import ChatArg, JsonDocument, Yes
from meshchat_cli.commands.prompts import confirm
from meshchat_cli.options import open_api
from meshchat_cli.render import message_document, message_line, print_json

__all__ = ["delete_message", "edit", "read"]

SeqArg = Annotated[
    int,
    typer.Argument(
        metavar="SEQ",
        min=1,
        help="The message's number in the chat (`meshchat history CHAT_ID --json` shows it).",
    ),
]


def edit(
    ctx: typer.Context,
    chat: ChatArg,
    seq: SeqArg,
    text: Annotated[str, typer.Argument(metavar="TEXT", help="The new text.")],
    json_document: JsonDocument = False,
) -> None:
    """Change the text of a message of yours; it keeps its place and shows as edited."""
    with open_api(ctx) as api:
        user_id = api.tokens.credentials().user_id
        message = api.edit_message(api.chat_id(chat), seq, text)
    if json_document:
        print_json(message_document(message, message.sender_id == user_id))
        return
    typer.echo(f"edited #{message.seq}: {message_line(message, message.sender_id == user_id)}")


def delete_message(
    ctx: typer.Context,
    chat: ChatArg,
    seq: SeqArg,
    yes: Yes = False,
) -> None:
    """Delete a message: your own, or any as the chat's owner or an admin. Its text is gone
    for good; the chat shows "message deleted" in its place."""
    with open_api(ctx) as api:
        chat_id = api.chat_id(chat)
        confirm(f"Delete message #{seq}? Its text cannot be brought back.", yes)
        message = api.delete_message(chat_id, seq)
    typer.echo(f"deleted message #{message.seq} (sent by {message.sender_username})")


def read(
    ctx: typer.Context,
    chat: ChatArg,
    seq: Annotated[
        int,
        typer.Argument(
            metavar="[SEQ]",
            min=0,
            help="Read up to and including this message; without it, everything.",
            show_default=False,
        ),
    ] = 0,
) -> None:
    """Mark a chat read, up to SEQ or entirely; the read position never moves back."""
    with open_api(ctx) as api:
        state = api.mark_read(api.chat_id(chat), seq)
    typer.echo(f"read up to #{state.read_seq} · {state.unread_count} unread")
