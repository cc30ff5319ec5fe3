"""Arguments and options that several commands share."""

from __future__ import annotations

from typing import Annotated

import typer

from meshchat_cli.completion import complete_chat, complete_username

__all__ = ["ChatArg", "CurrentPasswordStdin", "JsonDocument", "JsonLines", "UserArg", "Yes"]

ChatArg = Annotated[
    str,
    typer.Argument(
        metavar="CHAT_ID",
        help="The chat's id, or its name when none of your other chats has that name.",
        autocompletion=complete_chat,
    ),
]
UserArg = Annotated[
    str, typer.Argument(metavar="USERNAME", help="A username.", autocompletion=complete_username)
]
JsonLines = Annotated[bool, typer.Option("--json", help="One JSON object per line, for scripts.")]
JsonDocument = Annotated[bool, typer.Option("--json", help="One JSON object, for scripts.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
CurrentPasswordStdin = Annotated[
    bool,
    typer.Option(
        "--current-password-stdin",
        help="Read your current password (needed for your own account) from the first line "
        "of standard input.",
    ),
]
