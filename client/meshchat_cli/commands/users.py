"""user list|get|update|delete."""

from __future__ import annotations

import sys
from datetime import UTC
from enum import StrEnum
from typing import Annotated

import typer

from meshchat.auth.v1 import access_options_pb2, users_pb2
from meshchat_cli.api import Api
from meshchat_cli.commands.params import Yes
from meshchat_cli.commands.prompts import confirm, read_password
from meshchat_cli.options import open_api
from meshchat_cli.render import print_rows
from meshchat_cli.roles import role_name

__all__ = ["delete_user", "get_user", "list_users", "update_user"]

UserKey = Annotated[str, typer.Argument(metavar="USER", help="A username or a user id.")]
CurrentPasswordStdin = Annotated[
    bool,
    typer.Option(
        "--current-password-stdin",
        help="Read your current password from standard input (the line before a new password "
        "that --password-stdin reads).",
    ),
]


class RoleChoice(StrEnum):
    """The roles that `user update --role` accepts."""

    USER = "user"
    ADMIN = "admin"


_ROLES = {
    RoleChoice.USER: access_options_pb2.ROLE_USER,
    RoleChoice.ADMIN: access_options_pb2.ROLE_ADMIN,
}


def _created(user: users_pb2.User) -> str:
    return user.create_time.ToDatetime(tzinfo=UTC).astimezone().strftime("%Y-%m-%d %H:%M")


def _is_caller(api: Api, target: users_pb2.User) -> bool:
    return api.tokens.credentials().user_id == target.id


def _current_password(from_stdin: bool) -> str:
    return read_password(
        from_stdin, confirm=False, label="Current password", flag="--current-password-stdin"
    )


def list_users(ctx: typer.Context) -> None:
    """List every user (admins only)."""
    with open_api(ctx) as api:
        users = list(api.list_users())
    print_rows(
        sys.stdout,
        ("ID", "USERNAME", "ROLE", "EMAIL", "CREATED"),
        [(u.id, u.username, role_name(u.role), u.email, _created(u)) for u in users],
    )


def get_user(ctx: typer.Context, user: UserKey) -> None:
    """Show one user; the email only to the user and to admins."""
    with open_api(ctx) as api:
        found = api.get_user(user)
    typer.echo(f"username: {found.username}")
    typer.echo(f"id: {found.id}")
    typer.echo(f"role: {role_name(found.role)}")
    if found.email:
        typer.echo(f"email: {found.email}")
    typer.echo(f"created: {_created(found)}")


def update_user(
    ctx: typer.Context,
    user: UserKey,
    email: Annotated[str | None, typer.Option("--email", help="A new email address.")] = None,
    password: Annotated[
        bool, typer.Option("--password", help="Ask for a new password (without echo).")
    ] = False,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the new password from standard input.")
    ] = False,
    role: Annotated[
        RoleChoice | None, typer.Option("--role", help="A new role (admins only).")
    ] = None,
    current_password_stdin: CurrentPasswordStdin = False,
) -> None:
    """Change your own account (your email or password needs your current password), or
    anybody's as an admin."""
    if email is None and not (password or password_stdin) and role is None:
        raise typer.BadParameter("give --email, --password or --role", param_hint="options")
    with open_api(ctx) as api:
        target = api.get_user(user)
        changes_credentials = email is not None or password or password_stdin
        current = (
            _current_password(current_password_stdin)
            if changes_credentials and _is_caller(api, target)
            else None
        )
        new_password = (
            read_password(password_stdin, confirm=True, label="New password")
            if password or password_stdin
            else None
        )
        updated = api.update_user(
            target.id,
            email=email,
            password=new_password,
            role=_ROLES[role] if role is not None else None,
            current_password=current,
        )
    typer.echo(f"updated {updated.username} (role {role_name(updated.role)})")


def delete_user(
    ctx: typer.Context,
    user: UserKey,
    yes: Yes = False,
    current_password_stdin: CurrentPasswordStdin = False,
) -> None:
    """Delete an account (your own, with your current password, or anybody's as an admin);
    its logins end."""
    with open_api(ctx) as api:
        target = api.get_user(user)
        own = _is_caller(api, target)
        confirm(f"Delete user {target.username}?", yes)
        current = _current_password(current_password_stdin) if own else None
        api.delete_user(target.id, current_password=current)
        if own:
            api.forget_login()
    typer.echo(f"deleted user {target.username}")
