"""The auth service's configuration: its settings, each declared once in :data:`SETTINGS`,
and the frozen dataclasses built from them, validated when they are built: each value by its
setting's parser, the rules between values in ``__post_init__``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from meshchat_runtime.settings import (
    DATABASE_URL,
    LISTEN,
    LOG_FORMAT,
    LOG_LEVEL,
    METRICS_LISTEN,
    SHARED_SETTINGS,
    ConfigError,
    DatabaseUrl,
    LogFormat,
    ServerSettings,
    Setting,
    SettingValues,
    duration,
    integer,
    parse_bool,
    parse_names,
    parse_path,
    parse_text,
    server_config,
)

__all__ = [
    "SETTINGS",
    "Argon2Parameters",
    "AuthConfig",
    "HashingPoolSize",
    "TokenPolicy",
    "config_from",
]

ARGON2_MINIMUM_MEMORY_KIB = 19 * 1024
ARGON2_MINIMUM_TIME_COST = 2

DATABASE = DATABASE_URL.with_default("sqlite:///.data/auth.db")
KEYS_DIR = Setting(
    "keys-dir",
    parse_path,
    ".data/auth-keys",
    "Folder of ES256 (P-256) PEM private keys; all are published, the file whose name sorts "
    "last signs.",
)
GENERATE_KEY = Setting(
    "generate-key",
    parse_bool,
    "true",
    "Generate a signing key (mode 0600) when the keys folder has none.",
)
ISSUER = Setting("issuer", parse_text, "meshchat-auth", "The iss claim of access tokens.")
AUDIENCE = Setting("audience", parse_text, "meshchat", "The aud claim of access tokens.")
ACCESS_TOKEN_TTL = Setting(
    "access-token-ttl",
    duration(minimum=10),
    "300",
    "Access-token lifetime (seconds, or 5m, 1h).",
)
REFRESH_TOKEN_TTL = Setting(
    "refresh-token-ttl",
    duration(),
    "30d",
    "Absolute lifetime of a login's refresh-token family.",
)
REFRESH_TOKEN_GRACE = Setting(
    "refresh-token-grace",
    duration(),
    "30s",
    "How long a just-used refresh token may be presented again for the same successor (a "
    "lost answer) before it counts as reuse; 0 turns it off.",
)
MAX_FAILED_LOGINS = Setting(
    "max-failed-logins",
    integer(minimum=1),
    "5",
    "Failed password checks of one account from one client address before they are refused "
    "with RESOURCE_EXHAUSTED.",
)
MAX_FAILED_LOGINS_PER_ADDRESS = Setting(
    "max-failed-logins-per-address",
    integer(minimum=1),
    "50",
    "Failed password checks from one client address, over all accounts.",
)
MAX_FAILED_LOGINS_PER_ACCOUNT = Setting(
    "max-failed-logins-per-account",
    integer(minimum=1),
    "100",
    "Failed password checks of one account, over all addresses (the global ceiling).",
)
FAILED_LOGIN_WINDOW = Setting(
    "failed-login-window", duration(), "15m", "The window in which failed logins count."
)
TRUST_FORWARDED_FOR = Setting(
    "trust-forwarded-for",
    parse_bool,
    "false",
    "Take the client address from the last x-forwarded-for entry (set by the edge proxy); "
    "only behind a proxy that sets it, otherwise clients choose their address.",
)
SERVICE_CALLERS = Setting(
    "service-callers",
    parse_names,
    "",
    "Mesh identities (DNS SANs, comma-separated) that may watch the account events, read "
    "from the x-forwarded-client-cert header that the sidecar sets; only behind a sidecar "
    "that replaces that header. Empty: no one may.",
)
PASSWORD_HASH_WORKERS = Setting(
    "password-hash-workers",
    integer(minimum=0),
    "0",
    "Threads that hash passwords; 0 sizes them from the container's CPU and memory limits.",
)
PASSWORD_HASH_QUEUE = Setting(
    "password-hash-queue",
    integer(minimum=0),
    "16",
    "Password hashes that may wait for a thread; beyond that RESOURCE_EXHAUSTED.",
)
ARGON2_MEMORY_KIB = Setting(
    "argon2-memory-kib",
    integer(),
    "19456",
    f"argon2id memory cost (OWASP minimum {ARGON2_MINIMUM_MEMORY_KIB}).",
)
ARGON2_TIME_COST = Setting(
    "argon2-time-cost",
    integer(),
    "2",
    f"argon2id iterations (minimum {ARGON2_MINIMUM_TIME_COST}).",
)


SETTINGS: tuple[Setting[object], ...] = (
    LISTEN.with_default("127.0.0.1:50051"),
    METRICS_LISTEN.with_default("127.0.0.1:9101"),
    DATABASE,
    *SHARED_SETTINGS,
    KEYS_DIR,
    GENERATE_KEY,
    ISSUER,
    AUDIENCE,
    ACCESS_TOKEN_TTL,
    REFRESH_TOKEN_TTL,
    REFRESH_TOKEN_GRACE,
    MAX_FAILED_LOGINS,
    MAX_FAILED_LOGINS_PER_ADDRESS,
    MAX_FAILED_LOGINS_PER_ACCOUNT,
    FAILED_LOGIN_WINDOW,
    TRUST_FORWARDED_FOR,
    SERVICE_CALLERS,
    ARGON2_MEMORY_KIB,
    ARGON2_TIME_COST,
    PASSWORD_HASH_WORKERS,
    PASSWORD_HASH_QUEUE,
)
"""Every setting of ``meshchat-auth serve``, in the order of its ``--help``."""


@dataclass(frozen=True, slots=True)
class Argon2Parameters:
    """argon2id cost parameters; the defaults are OWASP's minimum (19 MiB, t=2, p=1), and
    nothing below it is accepted."""

    memory_kib: int = ARGON2_MEMORY_KIB.default_value
    time_cost: int = ARGON2_TIME_COST.default_value
    parallelism: int = 1

    def __post_init__(self) -> None:
        floors = (
            (ARGON2_MEMORY_KIB.env, self.memory_kib, ARGON2_MINIMUM_MEMORY_KIB),
            (ARGON2_TIME_COST.env, self.time_cost, ARGON2_MINIMUM_TIME_COST),
            ("argon2id parallelism", self.parallelism, 1),
        )
        for setting, value, minimum in floors:
            if value < minimum:
                raise ConfigError(f"{setting}: {value} is below the OWASP minimum {minimum}")


@dataclass(frozen=True, slots=True)
class HashingPoolSize:
    """The password-hashing pool: ``workers`` threads (0: from the container's limits) and
    at most ``queue`` hashes waiting for one."""

    workers: int = PASSWORD_HASH_WORKERS.default_value
    queue: int = PASSWORD_HASH_QUEUE.default_value


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    """Who issues tokens for whom, for how long, and how many password guesses are allowed."""

    issuer: str = ISSUER.default_value
    audience: str = AUDIENCE.default_value
    access_ttl: float = ACCESS_TOKEN_TTL.default_value
    refresh_ttl: float = REFRESH_TOKEN_TTL.default_value
    refresh_grace: float = REFRESH_TOKEN_GRACE.default_value
    max_failed_logins: int = MAX_FAILED_LOGINS.default_value
    max_failed_logins_per_address: int = MAX_FAILED_LOGINS_PER_ADDRESS.default_value
    max_failed_logins_per_account: int = MAX_FAILED_LOGINS_PER_ACCOUNT.default_value
    failed_login_window: float = FAILED_LOGIN_WINDOW.default_value

    def __post_init__(self) -> None:
        if self.refresh_ttl <= self.access_ttl:
            raise ConfigError(f"{REFRESH_TOKEN_TTL.env}: must be longer than the access-token TTL")


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Everything the auth service needs to start; :func:`config_from` builds it from the
    parsed settings, and its defaults are theirs."""

    server: ServerSettings
    database: DatabaseUrl
    keys_dir: Path = KEYS_DIR.default_value
    generate_key: bool = GENERATE_KEY.default_value
    tokens: TokenPolicy = field(default_factory=TokenPolicy)
    argon2: Argon2Parameters = field(default_factory=Argon2Parameters)
    hashing: HashingPoolSize = field(default_factory=HashingPoolSize)
    trust_forwarded_for: bool = TRUST_FORWARDED_FOR.default_value
    service_callers: tuple[str, ...] = SERVICE_CALLERS.default_value
    log_level: str = LOG_LEVEL.default_value
    log_format: LogFormat = LOG_FORMAT.default_value


def config_from(values: SettingValues) -> AuthConfig:
    """The configuration from the parsed values of :data:`SETTINGS`."""
    return AuthConfig(
        server=server_config(values),
        database=values[DATABASE],
        keys_dir=values[KEYS_DIR],
        generate_key=values[GENERATE_KEY],
        tokens=TokenPolicy(
            issuer=values[ISSUER],
            audience=values[AUDIENCE],
            access_ttl=values[ACCESS_TOKEN_TTL],
            refresh_ttl=values[REFRESH_TOKEN_TTL],
            refresh_grace=values[REFRESH_TOKEN_GRACE],
            max_failed_logins=values[MAX_FAILED_LOGINS],
            max_failed_logins_per_address=values[MAX_FAILED_LOGINS_PER_ADDRESS],
            max_failed_logins_per_account=values[MAX_FAILED_LOGINS_PER_ACCOUNT],
            failed_login_window=values[FAILED_LOGIN_WINDOW],
        ),
        argon2=Argon2Parameters(
            memory_kib=values[ARGON2_MEMORY_KIB], time_cost=values[ARGON2_TIME_COST]
        ),
        hashing=HashingPoolSize(
            workers=values[PASSWORD_HASH_WORKERS], queue=values[PASSWORD_HASH_QUEUE]
        ),
        trust_forwarded_for=values[TRUST_FORWARDED_FOR],
        service_callers=values[SERVICE_CALLERS],
        log_level=values[LOG_LEVEL],
        log_format=values[LOG_FORMAT],
    )
