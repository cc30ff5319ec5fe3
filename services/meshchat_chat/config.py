"""The chat service's configuration: one frozen dataclass, validated when it is built."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from meshchat_runtime.settings import (
    ConfigError,
    DatabaseUrl,
    HostPort,
    ServerSettings,
    parse_database_url,
)

__all__ = ["AuthzMode", "ChatConfig"]


class AuthzMode(enum.Enum):
    """How callers are authenticated: ``local`` verifies access tokens against the auth
    service's JWKS in-process; ``remote`` asks the auth service's Access API (cached)."""

    LOCAL = "local"
    REMOTE = "remote"


@dataclass(frozen=True, slots=True)
class ChatConfig:
    """Everything the chat service needs to start."""

    server: ServerSettings = field(
        default_factory=lambda: ServerSettings(
            listen=HostPort("127.0.0.1", 50052), metrics_listen=HostPort("127.0.0.1", 9102)
        )
    )
    database: DatabaseUrl = field(
        default_factory=lambda: parse_database_url("sqlite:///.data/chat.db")
    )
    database_pool_size: int = 10
    auth_addr: HostPort = field(default_factory=lambda: HostPort("127.0.0.1", 50051))
    authz_mode: AuthzMode = AuthzMode.LOCAL
    issuer: str = "meshchat-auth"
    audience: str = "meshchat"
    # Local mode: refresh the JWKS this often, refetch on an unknown kid at most this often,
    # and keep using the cached keys for this long while the auth service is unreachable.
    jwks_refresh_interval: float = 300.0
    jwks_min_refetch_interval: float = 10.0
    jwks_max_age: float = 86400.0
    # Remote mode: how long an Access.Check answer is reused for the same token and method.
    authz_cache_ttl: float = 5.0
    max_message_length: int = 4096
    heartbeat_interval: float = 30.0
    stream_queue_size: int = 256
    # How long the LISTEN connection may be quiet before it is checked with a query.
    listen_check_interval: float = 5.0
    log_level: str = "info"

    def __post_init__(self) -> None:
        checks = (
            (self.database_pool_size >= 1, "MESHCHAT_DATABASE_POOL_SIZE: must be at least 1"),
            (
                1 <= self.max_message_length <= 1_000_000,
                "MESHCHAT_MAX_MESSAGE_LENGTH: must be 1 to 1000000",
            ),
            (self.heartbeat_interval > 0, "MESHCHAT_HEARTBEAT_INTERVAL: must be positive"),
            (self.stream_queue_size >= 1, "MESHCHAT_STREAM_QUEUE_SIZE: must be at least 1"),
            (self.jwks_refresh_interval > 0, "MESHCHAT_JWKS_REFRESH_INTERVAL: must be positive"),
            (self.jwks_max_age > 0, "MESHCHAT_JWKS_MAX_AGE: must be positive"),
            (self.listen_check_interval > 0, "MESHCHAT_LISTEN_CHECK_INTERVAL: must be positive"),
            (bool(self.issuer.strip()), "MESHCHAT_ISSUER: must not be empty"),
            (bool(self.audience.strip()), "MESHCHAT_AUDIENCE: must not be empty"),
        )
        for ok, problem in checks:
            if not ok:
                raise ConfigError(problem)
