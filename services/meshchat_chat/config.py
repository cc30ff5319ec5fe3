"""The chat service's configuration: its settings, each declared once in :data:`SETTINGS`,
and the frozen dataclass built from them, validated when it is built: each value by its
setting's parser (no rule of the chat service spans two values)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from meshchat_runtime.settings import (
    DATABASE_URL,
    LISTEN,
    LOG_FORMAT,
    LOG_LEVEL,
    METRICS_LISTEN,
    SHARED_SETTINGS,
    DatabaseUrl,
    HostPort,
    LogFormat,
    ServerSettings,
    Setting,
    SettingValues,
    choice,
    duration,
    integer,
    parse_host_port,
    parse_text,
    server_config,
)

__all__ = ["SETTINGS", "AuthzMode", "ChatConfig", "config_from"]


class AuthzMode(enum.Enum):
    """How callers are authenticated: ``local`` verifies access tokens against the auth
    service's JWKS in-process; ``remote`` asks the auth service's Access API (cached)."""

    LOCAL = "local"
    REMOTE = "remote"


DATABASE = DATABASE_URL.with_default("sqlite:///.data/chat.db")
DATABASE_POOL_SIZE = Setting(
    "database-pool-size",
    integer(minimum=1),
    "10",
    "PostgreSQL connections in the pool (the LISTEN connection comes on top).",
)
AUTH_ADDR = Setting(
    "auth-addr",
    parse_host_port,
    "127.0.0.1:50051",
    "The auth service (HOST:PORT): JWKS, user look-ups and, in remote mode, access checks.",
)
AUTHZ_MODE = Setting(
    "authz-mode",
    choice(AuthzMode),
    "local",
    "local: verify access tokens here against the auth service's JWKS (fast, survives an "
    "auth outage; a revoked token stays valid until it expires). remote: ask the auth "
    "service's Access API on every call, caching each answer briefly.",
)
ISSUER = Setting("issuer", parse_text, "meshchat-auth", "The iss claim access tokens must carry.")
AUDIENCE = Setting("audience", parse_text, "meshchat", "The aud claim access tokens must carry.")
JWKS_REFRESH_INTERVAL = Setting(
    "jwks-refresh-interval",
    duration(positive=True),
    "5m",
    "Local mode: how often the JWKS is fetched again.",
)
JWKS_MIN_REFETCH_INTERVAL = Setting(
    "jwks-min-refetch-interval",
    duration(),
    "10s",
    "Local mode: a token with an unknown kid triggers a fetch at most this often.",
)
JWKS_MAX_AGE = Setting(
    "jwks-max-age",
    duration(positive=True),
    "24h",
    "Local mode: how long cached keys stay in use while the auth service is unreachable.",
)
AUTHZ_CACHE_TTL = Setting(
    "authz-cache-ttl",
    duration(),
    "5s",
    "Remote mode: how long an access decision is reused for the same token and method.",
)
MAX_MESSAGE_LENGTH = Setting(
    "max-message-length",
    integer(minimum=1, maximum=1_000_000),
    "4096",
    "Longest message text, in characters.",
)
HEARTBEAT_INTERVAL = Setting(
    "heartbeat-interval",
    duration(positive=True),
    "30s",
    "A Connect stream idle this long gets a Heartbeat.",
)
STREAM_QUEUE_SIZE = Setting(
    "stream-queue-size",
    integer(minimum=1),
    "256",
    "Newest messages of a chat kept in memory for its Connect streams (up to twice as "
    "many); a stream that falls further behind catches up from the database.",
)
LISTEN_CHECK_INTERVAL = Setting(
    "listen-check-interval",
    duration(positive=True),
    "5s",
    "PostgreSQL: the LISTEN connection is checked with a query after being quiet this long.",
)
MAX_STREAMS_PER_USER = Setting(
    "max-streams-per-user",
    integer(minimum=1),
    "16",
    "Connect streams one user may hold open at once on one replica; more are refused with "
    "RESOURCE_EXHAUSTED.",
)
SEND_BURST = Setting(
    "send-burst",
    integer(minimum=1),
    "20",
    "Messages one user may send at once before the send rate applies (the token bucket's "
    "size, per replica).",
)
SEND_INTERVAL = Setting(
    "send-interval",
    duration(),
    "200ms",
    "After a burst, one message per user per this interval (per replica); faster sends are "
    "refused with RESOURCE_EXHAUSTED and the time to wait. 0 turns the limit off.",
)
MAX_CHATS_PER_USER = Setting(
    "max-chats-per-user",
    integer(minimum=1),
    "1000",
    "Chats one user may own; CreateChat past it is refused with RESOURCE_EXHAUSTED.",
)
MAX_MEMBERS_PER_CHAT = Setting(
    "max-members-per-chat",
    integer(minimum=2),
    "1000",
    "Members of one chat, its owner included; CreateChat and AddMember past it are refused "
    "with RESOURCE_EXHAUSTED.",
)

SETTINGS: tuple[Setting[object], ...] = (
    LISTEN.with_default("127.0.0.1:50052"),
    METRICS_LISTEN.with_default("127.0.0.1:9102"),
    DATABASE,
    *SHARED_SETTINGS,
    DATABASE_POOL_SIZE,
    AUTH_ADDR,
    AUTHZ_MODE,
    ISSUER,
    AUDIENCE,
    JWKS_REFRESH_INTERVAL,
    JWKS_MIN_REFETCH_INTERVAL,
    JWKS_MAX_AGE,
    AUTHZ_CACHE_TTL,
    MAX_MESSAGE_LENGTH,
    HEARTBEAT_INTERVAL,
    STREAM_QUEUE_SIZE,
    LISTEN_CHECK_INTERVAL,
    MAX_STREAMS_PER_USER,
    SEND_BURST,
    SEND_INTERVAL,
    MAX_CHATS_PER_USER,
    MAX_MEMBERS_PER_CHAT,
)
"""Every setting of ``meshchat-chat serve``, in the order of its ``--help``."""


@dataclass(frozen=True, slots=True)
class ChatConfig:
    """Everything the chat service needs to start; :func:`config_from` builds it from the
    parsed settings, and its defaults are theirs."""

    server: ServerSettings
    database: DatabaseUrl
    database_pool_size: int = DATABASE_POOL_SIZE.default_value
    auth_addr: HostPort = AUTH_ADDR.default_value
    authz_mode: AuthzMode = AUTHZ_MODE.default_value
    issuer: str = ISSUER.default_value
    audience: str = AUDIENCE.default_value
    jwks_refresh_interval: float = JWKS_REFRESH_INTERVAL.default_value
    jwks_min_refetch_interval: float = JWKS_MIN_REFETCH_INTERVAL.default_value
    jwks_max_age: float = JWKS_MAX_AGE.default_value
    authz_cache_ttl: float = AUTHZ_CACHE_TTL.default_value
    max_message_length: int = MAX_MESSAGE_LENGTH.default_value
    heartbeat_interval: float = HEARTBEAT_INTERVAL.default_value
    stream_queue_size: int = STREAM_QUEUE_SIZE.default_value
    listen_check_interval: float = LISTEN_CHECK_INTERVAL.default_value
    max_streams_per_user: int = MAX_STREAMS_PER_USER.default_value
    send_burst: int = SEND_BURST.default_value
    send_interval: float = SEND_INTERVAL.default_value
    max_chats_per_user: int = MAX_CHATS_PER_USER.default_value
    max_members_per_chat: int = MAX_MEMBERS_PER_CHAT.default_value
    log_level: str = LOG_LEVEL.default_value
    log_format: LogFormat = LOG_FORMAT.default_value


def config_from(values: SettingValues) -> ChatConfig:
    """The configuration from the parsed values of :data:`SETTINGS`."""
    return ChatConfig(
        server=server_config(values),
        database=values[DATABASE],
        database_pool_size=values[DATABASE_POOL_SIZE],
        auth_addr=values[AUTH_ADDR],
        authz_mode=values[AUTHZ_MODE],
        issuer=values[ISSUER],
        audience=values[AUDIENCE],
        jwks_refresh_interval=values[JWKS_REFRESH_INTERVAL],
        jwks_min_refetch_interval=values[JWKS_MIN_REFETCH_INTERVAL],
        jwks_max_age=values[JWKS_MAX_AGE],
        authz_cache_ttl=values[AUTHZ_CACHE_TTL],
        max_message_length=values[MAX_MESSAGE_LENGTH],
        heartbeat_interval=values[HEARTBEAT_INTERVAL],
        stream_queue_size=values[STREAM_QUEUE_SIZE],
        listen_check_interval=values[LISTEN_CHECK_INTERVAL],
        max_streams_per_user=values[MAX_STREAMS_PER_USER],
        send_burst=values[SEND_BURST],
        send_interval=values[SEND_INTERVAL],
        max_chats_per_user=values[MAX_CHATS_PER_USER],
        max_members_per_chat=values[MAX_MEMBERS_PER_CHAT],
        log_level=values[LOG_LEVEL],
        log_format=values[LOG_FORMAT],
    )
