"""register, login, logout, whoami."""

from __future__ import annotations

from typing import Annotated

import typer

from meshchat_cli.commands.prompts import read_password
from meshchat_cli.options import open_api
from meshchat_cli.roles import role_name

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
    email: Annotated[str, typer.Option("--email", help="Your email address (optional).")] = "",
    password_stdin: PasswordStdin = False,
) -> None:
    """Create an account. The password is asked twice, without echo."""
    password = read_password(password_stdin, confirm=True)
    with open_api(ctx) as api:
        user = api.register(username, email, password)
    typer.echo(f"registered {user.username}; log in with `meshchat login {user.username}`")


def login(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(metavar="USERNAME", help="Your username.")],
    password_stdin: PasswordStdin = False,
) -> None:
    """Log in. The password is asked without echo and never stored; the tokens are kept
    in your config directory, per server."""
    password = read_password(password_stdin, confirm=False)
    with open_api(ctx) as api:
        credentials = api.login(username, password)
        server = api.endpoints.auth.address
    typer.echo(f"logged in as {credentials.username} ({credentials.role}) on {server}")


def logout(ctx: typer.Context) -> None:
    """Log out: the server revokes the login's tokens, and they are forgotten here."""
    with open_api(ctx) as api:
        credentials = api.logout()
        server = api.endpoints.auth.address
    typer.echo(f"logged out {credentials.username} from {server}")


def whoami(ctx: typer.Context) -> None:
    """Show who you are logged in as, and where."""
    with open_api(ctx) as api:
        credentials = api.tokens.credentials()
        user = api.get_user(credentials.user_id)
        endpoints = api.endpoints
    typer.echo(f"username: {user.username}")
    typer.echo(f"id: {user.id}")
    typer.echo(f"role: {role_name(user.role)}")
    if user.email:
        typer.echo(f"email: {user.email}")
    typer.echo(f"auth service: {endpoints.auth.address}{' (TLS)' if endpoints.auth.tls else ''}")
    typer.echo(f"chat service: {endpoints.chat.address}{' (TLS)' if endpoints.chat.tls else ''}")
