"""Shell completion of chat names and usernames, asked of the services as the user (profile
names complete in :mod:`meshchat_cli.options`).

A completion runs while the user presses Tab: it offers nothing, rather than an error, when
it cannot ask (not logged in, server away).
"""

from __future__ import annotations

import typer

from meshchat_cli.errors import CliError
from meshchat_cli.options import open_api

__all__ = ["complete_chat", "complete_username"]


def complete_chat(ctx: typer.Context, incomplete: str) -> list[str]:
    """The names of the user's chats that start with ``incomplete``."""
    try:
        with open_api(ctx) as api:
            names = {chat.name for chat in api.list_chats()}
    except CliError:
        return []
    return sorted(name for name in names if name.startswith(incomplete))


def complete_username(ctx: typer.Context, incomplete: str) -> list[str]:
    """The usernames that start with ``incomplete``: the members of the user's chats, and
    for an admin every user."""
    try:
        with open_api(ctx) as api:
            names = {member.username for chat in api.list_chats() for member in chat.members}
            if api.tokens.credentials().role == "admin":
                names.update(user.username for user in api.list_users())
    except CliError:
        return []
    return sorted(name for name in names if name.startswith(incomplete))
