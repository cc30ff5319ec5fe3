"""``meshchat-chat``: run the chat service."""

from __future__ import annotations

import click
from opentelemetry.sdk.trace import TracerProvider

from meshchat_chat.config import AuthzMode, ChatConfig
from meshchat_runtime.cli import (
    ServiceApp,
    parse_int,
    parse_log_level,
    server_options,
    server_settings_from,
)
from meshchat_runtime.cli import serve as serve_service
from meshchat_runtime.settings import (
    ConfigError,
    parse_database_url,
    parse_duration,
    parse_host_port,
)

PROGRAM = "meshchat-chat"
DEFAULT_DATABASE = "sqlite:///.data/chat.db"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """The meshchat chat service: chats, members, messages and live streams."""


@cli.command()
@server_options(
    listen="127.0.0.1:50052", metrics_listen="127.0.0.1:9102", database_url=DEFAULT_DATABASE
)
@click.option(
    "--database-pool-size",
    envvar="MESHCHAT_DATABASE_POOL_SIZE",
    default="10",
    show_default=True,
    show_envvar=True,
    help="PostgreSQL connections in the pool (the LISTEN connection comes on top).",
)
@click.option(
    "--auth-addr",
    envvar="MESHCHAT_AUTH_ADDR",
    default="127.0.0.1:50051",
    show_default=True,
    show_envvar=True,
    help="The auth service (HOST:PORT): JWKS, user look-ups and, in remote mode, access checks.",
)
@click.option(
    "--authz-mode",
    envvar="MESHCHAT_AUTHZ_MODE",
    default="local",
    show_default=True,
    show_envvar=True,
    help="local: verify access tokens here against the auth service's JWKS (fast, survives an "
    "auth outage; a revoked token stays valid until it expires). remote: ask the auth "
    "service's Access API on every call, caching each answer briefly.",
)
@click.option(
    "--issuer",
    envvar="MESHCHAT_ISSUER",
    default="meshchat-auth",
    show_default=True,
    show_envvar=True,
    help="The iss claim access tokens must carry.",
)
@click.option(
    "--audience",
    envvar="MESHCHAT_AUDIENCE",
    default="meshchat",
    show_default=True,
    show_envvar=True,
    help="The aud claim access tokens must carry.",
)
@click.option(
    "--jwks-refresh-interval",
    envvar="MESHCHAT_JWKS_REFRESH_INTERVAL",
    default="5m",
    show_default=True,
    show_envvar=True,
    help="Local mode: how often the JWKS is fetched again.",
)
@click.option(
    "--jwks-min-refetch-interval",
    envvar="MESHCHAT_JWKS_MIN_REFETCH_INTERVAL",
    default="10s",
    show_default=True,
    show_envvar=True,
    help="Local mode: a token with an unknown kid triggers a fetch at most this often.",
)
@click.option(
    "--jwks-max-age",
    envvar="MESHCHAT_JWKS_MAX_AGE",
    default="24h",
    show_default=True,
    show_envvar=True,
    help="Local mode: how long cached keys stay in use while the auth service is unreachable.",
)
@click.option(
    "--authz-cache-ttl",
    envvar="MESHCHAT_AUTHZ_CACHE_TTL",
    default="5s",
    show_default=True,
    show_envvar=True,
    help="Remote mode: how long an access decision is reused for the same token and method.",
)
@click.option(
    "--max-message-length",
    envvar="MESHCHAT_MAX_MESSAGE_LENGTH",
    default="4096",
    show_default=True,
    show_envvar=True,
    help="Longest message text, in characters.",
)
@click.option(
    "--heartbeat-interval",
    envvar="MESHCHAT_HEARTBEAT_INTERVAL",
    default="30s",
    show_default=True,
    show_envvar=True,
    help="A Connect stream idle this long gets a Heartbeat.",
)
@click.option(
    "--stream-queue-size",
    envvar="MESHCHAT_STREAM_QUEUE_SIZE",
    default="256",
    show_default=True,
    show_envvar=True,
    help="Messages queued per Connect stream; a stream that falls further behind catches up "
    "from the database.",
)
@click.option(
    "--listen-check-interval",
    envvar="MESHCHAT_LISTEN_CHECK_INTERVAL",
    default="5s",
    show_default=True,
    show_envvar=True,
    help="PostgreSQL: the LISTEN connection is checked with a query after being quiet this long.",
)
def serve(**options: str) -> None:
    """Serve the chat API until SIGTERM or Ctrl-C."""

    serve_service(PROGRAM, lambda: _config(options), _build)


async def _build(config: ChatConfig, tracer_provider: TracerProvider | None) -> ServiceApp:
    from meshchat_chat.bootstrap import build_server

    return await build_server(config, tracer_provider=tracer_provider)


def _config(options: dict[str, str]) -> ChatConfig:
    o = options
    return ChatConfig(
        server=server_settings_from(o),
        database=parse_database_url(o["database_url"]),
        database_pool_size=parse_int(o["database_pool_size"], "MESHCHAT_DATABASE_POOL_SIZE", 1),
        auth_addr=parse_host_port(o["auth_addr"], "MESHCHAT_AUTH_ADDR"),
        authz_mode=_authz_mode(o["authz_mode"]),
        issuer=o["issuer"],
        audience=o["audience"],
        jwks_refresh_interval=parse_duration(
            o["jwks_refresh_interval"], "MESHCHAT_JWKS_REFRESH_INTERVAL"
        ),
        jwks_min_refetch_interval=parse_duration(
            o["jwks_min_refetch_interval"], "MESHCHAT_JWKS_MIN_REFETCH_INTERVAL"
        ),
        jwks_max_age=parse_duration(o["jwks_max_age"], "MESHCHAT_JWKS_MAX_AGE"),
        authz_cache_ttl=parse_duration(o["authz_cache_ttl"], "MESHCHAT_AUTHZ_CACHE_TTL"),
        max_message_length=parse_int(o["max_message_length"], "MESHCHAT_MAX_MESSAGE_LENGTH", 1),
        heartbeat_interval=parse_duration(o["heartbeat_interval"], "MESHCHAT_HEARTBEAT_INTERVAL"),
        stream_queue_size=parse_int(o["stream_queue_size"], "MESHCHAT_STREAM_QUEUE_SIZE", 1),
        listen_check_interval=parse_duration(
            o["listen_check_interval"], "MESHCHAT_LISTEN_CHECK_INTERVAL"
        ),
        log_level=parse_log_level(o["log_level"]),
    )


def _authz_mode(value: str) -> AuthzMode:
    try:
        return AuthzMode(value.strip().lower())
    except ValueError:
        choices = " or ".join(m.value for m in AuthzMode)
        raise ConfigError(f"MESHCHAT_AUTHZ_MODE: expected {choices}, got {value!r}") from None


def main() -> None:
    """Entry point of ``meshchat-chat``."""
    cli(prog_name=PROGRAM)


if __name__ == "__main__":
    main()
