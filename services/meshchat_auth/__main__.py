"""``meshchat-auth``: run the auth service, or create the first admin."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click
from opentelemetry.sdk.trace import TracerProvider

from meshchat_auth.config import DATABASE, SETTINGS, Argon2Parameters, AuthConfig, config_from
from meshchat_auth.domain import (
    NewUser,
    check_password_strength,
    validate_email,
    validate_password,
    validate_username,
)
from meshchat_auth.passwords import HashingPool, PasswordHasher
from meshchat_runtime.cli import ServiceApp, run_service, setting_options
from meshchat_runtime.cli import serve as serve_service
from meshchat_runtime.errors import DomainError
from meshchat_runtime.identity import Role
from meshchat_runtime.settings import ConfigError, parse_settings

PROGRAM = "meshchat-auth"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """The meshchat auth service: users, login with JWTs, access checks, JWKS."""


@cli.command()
@setting_options(SETTINGS)
def serve(**texts: str | bool | None) -> None:
    """Serve the auth API until SIGTERM or Ctrl-C."""

    serve_service(PROGRAM, lambda: config_from(parse_settings(SETTINGS, texts)), _build)


async def _build(config: AuthConfig, tracer_provider: TracerProvider | None) -> ServiceApp:
    from meshchat_auth.bootstrap import build_server

    return await build_server(config, tracer_provider=tracer_provider)


@cli.command("create-admin")
@setting_options([DATABASE])
@click.option("--username", required=True, help="The admin's username.")
@click.option("--email", default="", help="The admin's email (optional).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create_admin(username: str, email: str, password_stdin: bool, **texts: str | None) -> None:
    """Create an ADMIN account directly in the database (the first admin)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
        confirmation = password
    else:
        password = click.prompt("Password", hide_input=True)
        confirmation = click.prompt("Repeat password", hide_input=True)

    async def main() -> None:
        from meshchat_auth.store import open_store

        try:
            validate_username(username)
            validate_email(email)
            validate_password(password, confirmation)
            check_password_strength(password, (username, email))
        except DomainError as exc:
            raise ConfigError(exc.message) from None
        store = await open_store(parse_settings([DATABASE], texts)[DATABASE])
        pool = HashingPool(workers=1, queue=0)
        try:
            password_hash = await PasswordHasher(Argon2Parameters(), pool).hash(password)
            user = await store.create_user(
                NewUser(username, email, Role.ADMIN, password_hash), datetime.now(UTC)
            )
        except DomainError as exc:
            raise ConfigError(exc.message) from None
        finally:
            pool.close()
            await store.close()
        print(f"created admin {user.username} ({user.id})")

    run_service(PROGRAM, main)


def main() -> None:
    """Entry point of ``meshchat-auth``."""
    cli(prog_name=PROGRAM)


if __name__ == "__main__":
    main()
