"""The auth service's configuration: one frozen dataclass, validated when it is built."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from meshchat_auth.passwords import Argon2Parameters
from meshchat_runtime.settings import DatabaseUrl, HostPort, ServerSettings, parse_database_url

__all__ = ["AuthConfig", "TokenPolicy"]


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    """Who issues tokens for whom, and for how long."""

    issuer: str = "meshchat-auth"
    audience: str = "meshchat"
    access_ttl: float = 300.0
    refresh_ttl: float = 30 * 86400.0
    max_failed_logins: int = 5
    failed_login_window: float = 900.0


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Everything the auth service needs to start."""

    server: ServerSettings = field(
        default_factory=lambda: ServerSettings(
            listen=HostPort("127.0.0.1", 50051), metrics_listen=HostPort("127.0.0.1", 9101)
        )
    )
    database: DatabaseUrl = field(
        default_factory=lambda: parse_database_url("sqlite:///.data/auth.db")
    )
    keys_dir: Path = Path(".data/auth-keys")
    generate_key: bool = True
    tokens: TokenPolicy = field(default_factory=TokenPolicy)
    argon2: Argon2Parameters = field(default_factory=Argon2Parameters)
    log_level: str = "info"
