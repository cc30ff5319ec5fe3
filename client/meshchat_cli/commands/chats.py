"""create chat, chats, members add|remove, delete chat."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Annotated

import typer
from google.protobuf.timestamp_pb2 import Timestamp

from meshchat.chat.v1 import chat_pb2
from meshchat_cli.commands.params import ChatArg, JsonDocument, JsonLines, UserArg, Yes
from meshchat_cli.commands.prompts import confirm
from meshchat_cli.completion import complete_username
from meshchat_cli.options import open_api
from meshchat_cli.render import chat_document, clean, format_time, print_json, print_rows

__all__ = ["add_member", "create_chat", "delete_chat", "list_chats", "remove_member"]


def _members(chat: chat_pb2.Chat) -> str:
    return ", ".join(member.username for member in chat.members)


def create_chat(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="1 to 100 characters.")],
    member: Annotated[
        list[str] | None,
        typer.Option(
            "--member",
            "-m",
            metavar="USERNAME",
            help="A user to add; repeat for more.",
            autocompletion=complete_username,
        ),
    ] = None,
    json_document: JsonDocument = False,
) -> None:
    """Create a chat that you own; prints its id, alone, on standard output."""
    with open_api(ctx) as api:
        namesakes = [found.id for found in api.list_chats() if found.name == name]
        chat = api.create_chat(name, member or [])
        user = api.tokens.username
    if namesakes:
        typer.echo(
            f"warning: {user} already has a chat named {clean(name)!r} ({', '.join(namesakes)}); "
            "give chat ids, not this name, from now on",
            err=True,
        )
    typer.echo(f"created chat {clean(chat.name)} · members: {_members(chat)}", err=True)
    if json_document:
        print_json(chat_document(chat))
        return
    typer.echo(chat.id)


def list_chats(ctx: typer.Context, json_lines: JsonLines = False) -> None:
    """List your chats, the latest activity first, with your unread messages in each."""
    with open_api(ctx) as api:
        chats = sorted(api.list_chats(), key=_last_activity, reverse=True)
    if json_lines:
        for chat in chats:
            print_json(chat_document(chat))
        return
    today = datetime.now().astimezone().date()
    print_rows(
        sys.stdout,
        ("ID", "NAME", "MEMBERS", "UNREAD", "LAST ACTIVITY"),
        [
            (
                chat.id,
                chat.name,
                _members(chat),
                str(chat.unread_count),
                format_time(_activity_stamp(chat), today),
            )
            for chat in chats
        ],
    )


def _activity_stamp(chat: chat_pb2.Chat) -> Timestamp:
    """When the newest message was sent; when the chat was created, before any."""
    return chat.last_message_time if chat.HasField("last_message_time") else chat.create_time


def _last_activity(chat: chat_pb2.Chat) -> tuple[int, int]:
    stamp = _activity_stamp(chat)
    return (stamp.seconds, stamp.nanos)


def add_member(
    ctx: typer.Context, chat: ChatArg, username: UserArg, json_document: JsonDocument = False
) -> None:
    """Add a user to a chat (the owner or an admin)."""
    with open_api(ctx) as api:
        updated = api.add_member(api.chat_id(chat), username)
    if json_document:
        print_json(chat_document(updated))
        return
    typer.echo(f"added {username} to {clean(updated.name)} · members: {_members(updated)}")


def remove_member(
    ctx: typer.Context, chat: ChatArg, username: UserArg, json_document: JsonDocument = False
) -> None:
    """Remove a user from a chat (the owner or an admin), or leave it (yourself)."""
    with open_api(ctx) as api:
        updated = api.remove_member(api.chat_id(chat), username)
    if json_document:
        print_json(chat_document(updated))
        return
    typer.echo(f"removed {username} from {clean(updated.name)} · members: {_members(updated)}")


def delete_chat(ctx: typer.Context, chat: ChatArg, yes: Yes = False) -> None:
    """Delete a chat with all its messages (the owner or an admin)."""
    with open_api(ctx) as api:
        found = api.get_chat(api.chat_id(chat))
        confirm(f"Delete chat {clean(found.name)} and its {found.last_seq} messages?", yes)
        api.delete_chat(found.id)
    typer.echo(f"deleted chat {clean(found.name)} ({found.id})")
