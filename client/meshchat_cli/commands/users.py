"""user list|get|update|delete."""

from __future__ import annotations

import sys
from datetime import UTC
from enum import StrEnum
from typing import Annotated

import typer

from meshchat.auth.v1 import access_options_pb2, users_pb2
from meshchat_cli.commands.params import CurrentPasswordStdin, JsonDocument, JsonLines, Yes
from meshchat_cli.commands.prompts import confirm, read_current_password, read_password
from meshchat_cli.completion import complete_username
from meshchat_cli.options import open_api
from meshchat_cli.render import print_json, print_rows, user_document
from meshchat_cli.roles import role_name

__all__ = ["delete_user", "get_user", "list_users", "logout_user", "update_user"]

UserKey = Annotated[
    str,
    typer.Argument(
        metavar="USERNAME", help="A username or a user id.", autocompletion=complete_username
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


def _changes(
    before: users_pb2.User, after: users_pb2.User, new_password: bool, own: bool
) -> list[str]:
    """What an update changed, as a person would list it."""
    changes = []
    if after.email != before.email:
        changes.append(f"email {before.email or '(none)'} -> {after.email or '(none)'}")
    if new_password:
        # The server ends the other logins of the user (all of them when an admin sets it).
        changes.append(
            "password changed (your other logins have ended)"
            if own
            else "password changed (their logins have ended)"
        )
    if after.role != before.role:
        changes.append(f"role {role_name(before.role)} -> {role_name(after.role)}")
    return changes or ["nothing changed"]


def list_users(ctx: typer.Context, json_lines: JsonLines = False) -> None:
    """List every user (admins only)."""
    with open_api(ctx) as api:
        users = list(api.list_users())
    if json_lines:
        for listed in users:
            print_json(user_document(listed))
        return
    print_rows(
        sys.stdout,
        ("ID", "USERNAME", "ROLE", "EMAIL", "CREATED"),
        [(u.id, u.username, role_name(u.role), u.email, _created(u)) for u in users],
    )


def get_user(ctx: typer.Context, user: UserKey, json_document: JsonDocument = False) -> None:
    """Show one user; the email only to the user and to admins."""
    with open_api(ctx) as api:
        found = api.get_user(user)
    if json_document:
        print_json(user_document(found))
        return
    typer.echo(f"username: {found.username}")
    typer.echo(f"id: {found.id}")
    typer.echo(f"role: {role_name(found.role)}")
    if found.email:
        typer.echo(f"email: {found.email}")
    typer.echo(f"created: {_created(found)}")


def update_user(
    ctx: typer.Context,
    user: UserKey,
    email: Annotated[
        str | None, typer.Option("--email", metavar="EMAIL", help="A new email address.")
    ] = None,
    password: Annotated[
        bool, typer.Option("--password", help="Ask for a new password (without echo).")
    ] = False,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            help="Read the new password from standard input (the line after the current one).",
        ),
    ] = False,
    role: Annotated[
        RoleChoice | None, typer.Option("--role", help="A new role (admins only).")
    ] = None,
    current_password_stdin: CurrentPasswordStdin = False,
    json_document: JsonDocument = False,
) -> None:
    """Change your own account (your email and password need your current password), or
    anybody's as an admin."""
    changes_password = password or password_stdin
    if email is None and not changes_password and role is None:
        raise typer.BadParameter("give --email, --password or --role", param_hint="options")
    with open_api(ctx) as api:
        target = api.get_user(user)
        own = target.id == api.tokens.credentials().user_id
        current = (
            read_current_password(current_password_stdin, "change your email or password")
            if own and (email is not None or changes_password)
            else ""
        )
        new_password = (
            read_password(password_stdin, new=True, label="New password")
            if changes_password
            else None
        )
        updated = api.update_user(
            target.id,
            email=email,
            password=new_password,
            role=_ROLES[role] if role is not None else None,
            current_password=current,
        )
    if json_document:
        print_json(user_document(updated))
        return
    changes = ", ".join(_changes(target, updated, new_password is not None, own))
    typer.echo(f"updated {updated.username}: {changes}")


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
        own = target.id == api.tokens.credentials().user_id
        current = (
            read_current_password(current_password_stdin, "delete your account") if own else ""
        )
        confirm(f"Delete user {target.username}?", yes)
        api.delete_user(target.id, current)
        if own:
            api.forget_login()
    typer.echo(f"deleted user {target.username}")


def logout_user(
    ctx: typer.Context, user: UserKey, current_password_stdin: CurrentPasswordStdin = False
) -> None:
    """End every login of a user, on every device: anybody's as an admin (a compromised
    account), or your own with your current password (as `meshchat logout --everywhere`)."""
    with open_api(ctx) as api:
        target = api.get_user(user)
        own = target.id == api.tokens.credentials().user_id
        current = read_current_password(current_password_stdin, "log out everywhere") if own else ""
        api.logout_everywhere(target.id, current)
        if own:
            api.forget_login()
    typer.echo(f"ended every login of {target.username}")
