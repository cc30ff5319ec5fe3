"""``meshchat-auth``: run the auth service, or create the first admin."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click
from opentelemetry.sdk.trace import TracerProvider

from meshchat_auth.config import AuthConfig, TokenPolicy
from meshchat_auth.domain import NewUser, validate_email, validate_password, validate_username
from meshchat_auth.passwords import Argon2Parameters, PasswordHasher
from meshchat_runtime.cli import (
    ServiceApp,
    parse_int,
    parse_log_level,
    run_service,
    server_options,
    server_settings_from,
)
from meshchat_runtime.cli import serve as serve_service
from meshchat_runtime.errors import DomainError
from meshchat_runtime.identity import Role
from meshchat_runtime.settings import ConfigError, parse_database_url, parse_duration

PROGRAM = "meshchat-auth"
DEFAULT_DATABASE = "sqlite:///.data/auth.db"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """The meshchat auth service: users, login with JWTs, access checks, JWKS."""


@cli.command()
@server_options(
    listen="127.0.0.1:50051", metrics_listen="127.0.0.1:9101", database_url=DEFAULT_DATABASE
)
@click.option(
    "--keys-dir",
    envvar="MESHCHAT_KEYS_DIR",
    default=".data/auth-keys",
    show_default=True,
    show_envvar=True,
    help="Folder of ES256 (P-256) PEM private keys; all are published, the "
    "file whose name sorts last signs.",
)
@click.option(
    "--generate-key/--no-generate-key",
    envvar="MESHCHAT_GENERATE_KEY",
    default=True,
    show_default=True,
    show_envvar=True,
    help="Generate a signing key (mode 0600) when the keys folder has none.",
)
@click.option(
    "--issuer",
    envvar="MESHCHAT_ISSUER",
    default="meshchat-auth",
    show_default=True,
    show_envvar=True,
    help="The iss claim of access tokens.",
)
@click.option(
    "--audience",
    envvar="MESHCHAT_AUDIENCE",
    default="meshchat",
    show_default=True,
    show_envvar=True,
    help="The aud claim of access tokens.",
)
@click.option(
    "--access-token-ttl",
    envvar="MESHCHAT_ACCESS_TOKEN_TTL",
    default="300",
    show_default=True,
    show_envvar=True,
    help="Access-token lifetime (seconds, or 5m, 1h).",
)
@click.option(
    "--refresh-token-ttl",
    envvar="MESHCHAT_REFRESH_TOKEN_TTL",
    default="30d",
    show_default=True,
    show_envvar=True,
    help="Absolute lifetime of a login's refresh-token family.",
)
@click.option(
    "--max-failed-logins",
    envvar="MESHCHAT_MAX_FAILED_LOGINS",
    default="5",
    show_default=True,
    show_envvar=True,
    help="Failed logins of one account before Login answers RESOURCE_EXHAUSTED.",
)
@click.option(
    "--failed-login-window",
    envvar="MESHCHAT_FAILED_LOGIN_WINDOW",
    default="15m",
    show_default=True,
    show_envvar=True,
    help="The window in which failed logins count.",
)
@click.option(
    "--argon2-memory-kib",
    envvar="MESHCHAT_ARGON2_MEMORY_KIB",
    default="19456",
    show_default=True,
    show_envvar=True,
    help="argon2id memory cost (OWASP minimum 19456).",
)
@click.option(
    "--argon2-time-cost",
    envvar="MESHCHAT_ARGON2_TIME_COST",
    default="2",
    show_default=True,
    show_envvar=True,
    help="argon2id iterations (minimum 2).",
)
def serve(**options: str) -> None:
    """Serve the auth API until SIGTERM or Ctrl-C."""

    serve_service(PROGRAM, lambda: _config(options), _build)


async def _build(config: AuthConfig, tracer_provider: TracerProvider | None) -> ServiceApp:
    from meshchat_auth.bootstrap import build_server

    return await build_server(config, tracer_provider=tracer_provider)


def _config(options: dict[str, str]) -> AuthConfig:
    o = options
    try:
        argon2 = Argon2Parameters(
            memory_kib=parse_int(o["argon2_memory_kib"], "MESHCHAT_ARGON2_MEMORY_KIB", 1),
            time_cost=parse_int(o["argon2_time_cost"], "MESHCHAT_ARGON2_TIME_COST", 1),
        )
    except ValueError as exc:
        raise ConfigError(f"MESHCHAT_ARGON2_*: {exc}") from None
    tokens = TokenPolicy(
        issuer=o["issuer"],
        audience=o["audience"],
        access_ttl=parse_duration(o["access_token_ttl"], "MESHCHAT_ACCESS_TOKEN_TTL"),
        refresh_ttl=parse_duration(o["refresh_token_ttl"], "MESHCHAT_REFRESH_TOKEN_TTL"),
        max_failed_logins=parse_int(o["max_failed_logins"], "MESHCHAT_MAX_FAILED_LOGINS", 1),
        failed_login_window=parse_duration(
            o["failed_login_window"], "MESHCHAT_FAILED_LOGIN_WINDOW"
        ),
    )
    if tokens.access_ttl < 10:
        raise ConfigError("MESHCHAT_ACCESS_TOKEN_TTL: must be at least 10 seconds")
    if tokens.refresh_ttl <= tokens.access_ttl:
        raise ConfigError("MESHCHAT_REFRESH_TOKEN_TTL: must be longer than the access-token TTL")
    if not tokens.issuer or not tokens.audience:
        raise ConfigError("MESHCHAT_ISSUER and MESHCHAT_AUDIENCE must not be empty")
    if tokens.max_failed_logins < 1:
        raise ConfigError("MESHCHAT_MAX_FAILED_LOGINS: must be at least 1")
    return AuthConfig(
        server=server_settings_from(o),
        database=parse_database_url(o["database_url"]),
        keys_dir=Path(o["keys_dir"]),
        generate_key=bool(o["generate_key"]),
        tokens=tokens,
        argon2=argon2,
        log_level=parse_log_level(o["log_level"]),
    )


@cli.command("create-admin")
@click.option(
    "--database-url",
    envvar="MESHCHAT_DATABASE_URL",
    default=DEFAULT_DATABASE,
    show_default=True,
    show_envvar=True,
    help="The auth service's database.",
)
@click.option("--username", required=True, help="The admin's username.")
@click.option("--email", default="", help="The admin's email (optional).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create_admin(database_url: str, username: str, email: str, password_stdin: bool) -> None:
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
        except DomainError as exc:
            raise ConfigError(exc.message) from None
        store = await open_store(parse_database_url(database_url))
        try:
            password_hash = await PasswordHasher(Argon2Parameters()).hash(password)
            user = await store.create_user(
                NewUser(username, email, Role.ADMIN, password_hash), datetime.now(UTC)
            )
        except DomainError as exc:
            raise ConfigError(exc.message) from None
        finally:
            await store.close()
        print(f"created admin {user.username} ({user.id})")

    run_service(PROGRAM, main)


def main() -> None:
    """Entry point of ``meshchat-auth``."""
    cli(prog_name=PROGRAM)


if __name__ == "__main__":
    main()
