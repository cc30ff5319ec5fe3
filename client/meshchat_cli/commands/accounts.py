"""register, login, logout, whoami."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from meshchat_cli.commands.params import CurrentPasswordStdin, JsonDocument
from meshchat_cli.commands.prompts import read_current_password, read_password
from meshchat_cli.options import command_line, open_api, profile_store
from meshchat_cli.render import print_json

__all__ = ["login", "logout", "register", "whoami"]

PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="Read the password from the first line of standard input."
    ),
]


def register(
    ctx: typer.Context,
    username: Annotated[
        str, typer.Argument(metavar="USERNAME", help="3 to 32 letters, digits, '.', '_' or '-'.")
    ],
    email: Annotated[
        str, typer.Option("--email", metavar="EMAIL", help="Your email address (optional).")
    ] = "",
    password_stdin: PasswordStdin = False,
) -> None:
    """Create an account. The password is asked twice, without echo."""
    password = read_password(password_stdin, new=True)
    with open_api(ctx) as api:
        user = api.register(username, email, password)
    typer.echo(
        f"registered {user.username}; log in with `{command_line(ctx, 'login', user.username)}`"
    )


def login(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(metavar="USERNAME", help="Your username.")],
    password_stdin: PasswordStdin = False,
) -> None:
    """Log in. The password is asked without echo and never stored; the tokens are kept
    in your config directory, per server. With a profile in use, the profile acts as this
    login from now on."""
    password = read_password(password_stdin, new=False)
    with open_api(ctx) as api:
        credentials = api.login(username, password)
        server = api.endpoints.auth.address
        profile = api.profile
    if profile is not None:
        profile_store().set_user(profile, credentials.username)
    within = f" (profile {profile})" if profile else ""
    typer.echo(f"logged in as {credentials.username} ({credentials.role}) on {server}{within}")


def logout(
    ctx: typer.Context,
    everywhere: Annotated[
        bool,
        typer.Option(
            "--everywhere",
            help="End every login of yours on the server, on every device, not only this one "
            "(asks for your current password).",
        ),
    ] = False,
    current_password_stdin: CurrentPasswordStdin = False,
) -> None:
    """Log out: the server revokes the login's tokens, and they are forgotten here. With
    --everywhere, every login of yours ends (a lost device, a token you think was stolen)."""
    if current_password_stdin and not everywhere:
        raise typer.BadParameter(
            "only goes with --everywhere", param_hint="--current-password-stdin"
        )
    with open_api(ctx) as api:
        if everywhere:
            credentials = api.tokens.credentials()
            current = read_current_password(current_password_stdin, "log out everywhere")
            api.logout_everywhere(credentials.user_id, current)
            api.forget_login()
        else:
            credentials = api.logout()
        server = api.endpoints.auth.address
        profile = api.profile
    if profile is not None:
        profile_store().set_user(profile, None)
    where = "everywhere: every login of it has ended" if everywhere else f"from {server}"
    typer.echo(f"logged out {credentials.username} {where}")


def _local_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).astimezone().strftime("%Y-%m-%d %H:%M")


def whoami(ctx: typer.Context, json_document: JsonDocument = False) -> None:
    """Show who you are logged in as, and where; from the stored login, without the server."""
    with open_api(ctx) as api:
        credentials = api.tokens.credentials()
        endpoints = api.endpoints
        profile = api.profile
    if json_document:
        print_json(
            {
                "username": credentials.username,
                "id": credentials.user_id,
                "role": credentials.role,
                "profile": profile,
                "auth_address": endpoints.auth.address,
                "auth_tls": endpoints.auth.tls,
                "chat_address": endpoints.chat.address,
                "chat_tls": endpoints.chat.tls,
                "login_expires": datetime.fromtimestamp(
                    credentials.refresh_token_expires, UTC
                ).isoformat(),
            }
        )
        return
    typer.echo(f"username: {credentials.username}")
    typer.echo(f"id: {credentials.user_id}")
    typer.echo(f"role: {credentials.role}")
    if profile:
        typer.echo(f"profile: {profile}")
    typer.echo(f"auth service: {endpoints.auth.address}{' (TLS)' if endpoints.auth.tls else ''}")
    typer.echo(f"chat service: {endpoints.chat.address}{' (TLS)' if endpoints.chat.tls else ''}")
    typer.echo(f"login valid until: {_local_time(credentials.refresh_token_expires)}")
