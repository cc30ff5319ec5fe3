"""Settings as data: each one declared once as a :class:`Setting` (name, parser, default, help),
from which come its flag, its ``MESHCHAT_*`` variable, its parsed value and its bounds; the
parsers themselves; and the values (addresses, database URLs, server limits) they produce.

Every parser takes the text and the name of its environment variable, and raises
:class:`ConfigError` with one line naming that variable."""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Generic, TypeVar, cast
from urllib.parse import urlsplit

__all__ = [
    "DATABASE_URL",
    "GRACE_PERIOD",
    "LISTEN",
    "LOG_FORMAT",
    "LOG_LEVEL",
    "LOG_LEVELS",
    "MAX_CONCURRENT_STREAMS",
    "MAX_CONNECTION_AGE",
    "MAX_RECEIVE_MESSAGE_BYTES",
    "METRICS_LISTEN",
    "SHARED_SETTINGS",
    "ConfigError",
    "DatabaseUrl",
    "HostPort",
    "LogFormat",
    "Parser",
    "ServerSettings",
    "Setting",
    "SettingValues",
    "choice",
    "duration",
    "env_var",
    "integer",
    "parse_bool",
    "parse_choice",
    "parse_database_url",
    "parse_duration",
    "parse_host_port",
    "parse_int",
    "parse_log_level",
    "parse_names",
    "parse_optional_host_port",
    "parse_path",
    "parse_settings",
    "parse_text",
    "server_config",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
E = TypeVar("E", bound=enum.Enum)

Parser = Callable[[str, str], T_co]
"""Turns a setting's text into its value: ``parse(text, environment_variable)``."""


class ConfigError(Exception):
    """A setting is invalid; the message is one line naming the setting."""


# --- values -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HostPort:
    """An address to listen on or connect to."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        """Whether the host is a loopback address or ``localhost``."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    """Where a service keeps its data: an SQLite file or a PostgreSQL server."""

    url: str
    dialect: str
    sqlite_path: Path | None = None

    @property
    def redacted(self) -> str:
        """The URL without its password, for logs and error messages."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()


# --- parsers ----------------------------------------------------------------------------------


def env_var(name: str) -> str:
    """The environment variable of the setting ``name``: ``max-connection-age`` is
    ``MESHCHAT_MAX_CONNECTION_AGE``."""
    return "MESHCHAT_" + name.upper().replace("-", "_")


def parse_int(
    value: str | int, setting: str, minimum: int | None = None, maximum: int | None = None
) -> int:
    """A whole number within ``minimum`` and ``maximum`` (each optional)."""
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{setting}: expected a whole number, got {value!r}") from None
    too_small = minimum is not None and number < minimum
    too_large = maximum is not None and number > maximum
    if minimum is not None and maximum is not None and (too_small or too_large):
        raise ConfigError(f"{setting}: must be {minimum} to {maximum}")
    if too_small:
        raise ConfigError(f"{setting}: must be at least {minimum}")
    if too_large:
        raise ConfigError(f"{setting}: must be at most {maximum}")
    return number


DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(
    value: str | float, setting: str, minimum: float = 0.0, *, positive: bool = False
) -> float:
    """Seconds (``"300"``) or a number with a unit (``"5m"``, ``"30d"``, ``"1.5s"``); never
    negative, at least ``minimum`` seconds, and above zero if ``positive``."""
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip().lower()
        factor = 1.0
        for suffix, unit in DURATION_UNITS.items():  # "ms" before "s"
            if text.endswith(suffix):
                text, factor = text[: -len(suffix)], unit
                break
        try:
            seconds = float(text) * factor
        except ValueError:
            raise ConfigError(
                f"{setting}: expected seconds or a duration like 30s, 5m, 30d; got {value!r}"
            ) from None
    if seconds < 0 or seconds != seconds:
        raise ConfigError(f"{setting}: must not be negative, got {value!r}")
    if seconds < minimum:
        raise ConfigError(f"{setting}: must be at least {minimum:g} seconds")
    if positive and seconds == 0:
        raise ConfigError(f"{setting}: must be positive")
    return seconds


def parse_host_port(value: str, setting: str) -> HostPort:
    """``host:port`` or ``[v6]:port``; port 0 asks the kernel for a free one."""
    host, sep, port_text = value.strip().rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{setting}: expected HOST:PORT, got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"{setting}: port must be 0 to 65535, got {port_text!r}")
    return HostPort(host, int(port_text))


def parse_optional_host_port(value: str, setting: str) -> HostPort | None:
    """Like :func:`parse_host_port`, or None for ``off`` (or nothing)."""
    if value.strip().lower() in ("", "off"):
        return None
    return parse_host_port(value, setting)


def parse_database_url(value: str, setting: str = env_var("database-url")) -> DatabaseUrl:
    """``sqlite:///relative/or/absolute.db`` or ``postgresql://...``."""
    parts = urlsplit(value.strip())
    if parts.scheme == "sqlite":
        if parts.netloc:
            raise ConfigError(f"{setting}: write sqlite:///path/to/file.db (three slashes)")
        path_text = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path_text:
            raise ConfigError(f"{setting}: the sqlite URL names no file")
        return DatabaseUrl(value, "sqlite", Path(path_text))
    if parts.scheme in ("postgresql", "postgres"):
        if not parts.hostname and "host=" not in parts.query:
            raise ConfigError(f"{setting}: the postgresql URL names no host")
        return DatabaseUrl(value, "postgresql")
    raise ConfigError(
        f"{setting}: expected sqlite:///path or postgresql://user@host/db, got {value!r}"
    )


def parse_choice(value: str, setting: str, choices: Sequence[str]) -> str:
    """One of ``choices``, in any case; returned in lower case."""
    if value.strip().lower() not in choices:
        raise ConfigError(f"{setting}: expected one of {', '.join(choices)}, got {value!r}")
    return value.strip().lower()


LOG_LEVELS = ("debug", "info", "warning", "error")


class LogFormat(enum.Enum):
    """How log lines are written to stderr."""

    AUTO = "auto"
    """Text on a terminal, JSON otherwise."""
    JSON = "json"
    """One JSON object per line, for log collectors."""
    TEXT = "text"
    """One readable line per record, for people."""


def parse_log_level(value: str, setting: str) -> str:
    """One of :data:`LOG_LEVELS`, in any case."""
    return parse_choice(value, setting, LOG_LEVELS)


BOOLEANS = {"true": True, "1": True, "yes": True, "on": True}
BOOLEANS |= {"false": False, "0": False, "no": False, "off": False}


def parse_bool(value: str, setting: str) -> bool:
    """true/false, 1/0, yes/no or on/off, in any case."""
    try:
        return BOOLEANS[value.strip().lower()]
    except KeyError:
        raise ConfigError(f"{setting}: expected true or false, got {value!r}") from None


def parse_text(value: str, setting: str) -> str:
    """Any text that is not blank, as given."""
    if not value.strip():
        raise ConfigError(f"{setting}: must not be empty")
    return value


def parse_names(value: str, setting: str) -> tuple[str, ...]:
    """A comma-separated list of names without blanks or spaces in them; empty for none."""
    names = tuple(name.strip() for name in value.split(",")) if value.strip() else ()
    for name in names:
        if not name or any(c.isspace() for c in name):
            raise ConfigError(f"{setting}: expected names separated by commas, got {value!r}")
    return names


def parse_path(value: str, setting: str) -> Path:
    """A file system path that is not blank."""
    return Path(parse_text(value, setting))


def integer(minimum: int | None = None, maximum: int | None = None) -> Parser[int]:
    """A parser of whole numbers within these bounds (see :func:`parse_int`)."""
    return lambda value, setting: parse_int(value, setting, minimum, maximum)


def duration(minimum: float = 0.0, *, positive: bool = False) -> Parser[float]:
    """A parser of durations within these bounds (see :func:`parse_duration`)."""
    return lambda value, setting: parse_duration(value, setting, minimum, positive=positive)


def choice(kind: type[E]) -> Parser[E]:
    """A parser of the members of an enum whose values are lower-case strings."""
    names = [member.value for member in kind]
    return lambda value, setting: kind(parse_choice(value, setting, names))


# --- declarations -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Setting(Generic[T_co]):
    """One setting, declared once: its flag is ``--name``, its environment variable
    ``MESHCHAT_NAME`` (upper snake case), its value what ``parse`` makes of the text, which
    also enforces its bounds. A setting parsed by :func:`parse_bool` is a ``--name/--no-name``
    switch. ``default`` is None only in a declaration that each service completes with
    :meth:`with_default`. A ``secret`` setting may instead be read from a file, named by
    ``--name-file`` or ``MESHCHAT_NAME_FILE`` (a mounted Kubernetes Secret); giving both is an
    error."""

    name: str
    parse: Parser[T_co]
    default: str | None
    help: str
    secret: bool = False

    @property
    def key(self) -> str:
        """The name as a Python identifier: click's parameter name."""
        return self.name.replace("-", "_")

    @property
    def env(self) -> str:
        """The environment variable."""
        return env_var(self.name)

    @property
    def file_setting(self) -> str:
        """The name of the flag that names a file holding a secret setting's value."""
        return f"{self.name}-file"

    @property
    def file_key(self) -> str:
        """:attr:`file_setting` as click's parameter name."""
        return self.file_setting.replace("-", "_")

    @property
    def file_env(self) -> str:
        """The environment variable that names a file holding a secret setting's value."""
        return env_var(self.file_setting)

    @property
    def is_switch(self) -> bool:
        """Whether the flag is a ``--name/--no-name`` pair."""
        return self.parse is parse_bool

    @property
    def default_text(self) -> str:
        """The default as an operator would write it."""
        if self.default is None:
            raise TypeError(f"the setting {self.name} has no default; use with_default()")
        return self.default

    @property
    def default_value(self) -> T_co:
        """The default, parsed."""
        return self.value(self.default_text)

    def value(self, text: str) -> T_co:
        """Parse ``text`` as this setting (ConfigError naming the environment variable)."""
        return self.parse(text, self.env)

    def with_default(self, default: str) -> Setting[T_co]:
        """The same setting with a service's own default."""
        return replace(self, default=default)

    def from_file(self, path_text: str) -> T_co:
        """Parse the content of the file at ``path_text`` (one trailing line break dropped), for
        :attr:`file_env`; errors name that variable and never repeat the content."""
        path = Path(parse_text(path_text, self.file_env))
        try:
            text = path.read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
        except OSError as exc:
            raise ConfigError(f"{self.file_env}: cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{self.file_env}: {path} is not UTF-8 text") from None
        try:
            return self.parse(text, self.file_env)
        except ConfigError as exc:
            message = str(exc).replace(repr(text), f"the content of {path}")
            raise ConfigError(message) from None

    def resolve(self, text: str | None, path_text: str | None) -> T_co:
        """The value from the setting's own text, else from the file a secret setting names,
        else the default; both given is an error."""
        if text is not None and path_text is not None:
            raise ConfigError(f"{self.env} and {self.file_env}: give one of them, not both")
        if path_text is not None:
            return self.from_file(path_text)
        return self.value(self.default_text if text is None else text)


class SettingValues:
    """The parsed values of a table of settings, read back by setting: ``values[LISTEN]``."""

    def __init__(self, values: Mapping[str, object]) -> None:
        self._values = dict(values)

    def __getitem__(self, setting: Setting[T]) -> T:
        # parse_settings stored what setting.parse returned under setting.key.
        return cast(T, self._values[setting.key])


def parse_settings(
    settings: Iterable[Setting[object]], texts: Mapping[str, str | bool | None]
) -> SettingValues:
    """Parse each setting's text (by key, as click collects it; a switch's is a bool; a secret
    setting's is None when not given, and its file's path is under :attr:`Setting.file_key`), in
    the order of the table, so that the first bad one is reported."""
    values: dict[str, object] = {}
    for setting in settings:
        text = texts[setting.key]
        if isinstance(text, bool):
            text = str(text).lower()
        path_text = texts.get(setting.file_key) if setting.secret else None
        if path_text is not None and not isinstance(path_text, str):
            raise TypeError(f"{setting.file_key}: expected a path, got {path_text!r}")
        values[setting.key] = setting.resolve(text, path_text)
    return SettingValues(values)


# --- the settings every service has ---------------------------------------------------------

LISTEN = Setting(
    "listen",
    parse_host_port,
    None,
    "gRPC address (HOST:PORT). Keep loopback unless a sidecar or the network must reach "
    "the app directly.",
)
METRICS_LISTEN = Setting(
    "metrics-listen",
    parse_optional_host_port,
    None,
    "Prometheus /metrics address (HOST:PORT), or 'off'.",
)
DATABASE_URL = Setting(
    "database-url",
    parse_database_url,
    None,
    "sqlite:///path/file.db (embedded) or postgresql://user:pass@host:port/db.",
    secret=True,
)
GRACE_PERIOD = Setting(
    "grace-period",
    duration(),
    "10s",
    "On SIGTERM, how long in-flight RPCs may run before they are cancelled.",
)
MAX_RECEIVE_MESSAGE_BYTES = Setting(
    "max-receive-message-bytes",
    integer(minimum=1024),
    "4194304",
    "Largest request message accepted.",
)
MAX_CONCURRENT_STREAMS = Setting(
    "max-concurrent-streams",
    integer(minimum=1),
    "1000",
    "HTTP/2 streams one connection may have open at once.",
)
MAX_CONNECTION_AGE = Setting(
    "max-connection-age",
    duration(),
    "4h",
    "Connections older than this are asked to reconnect (balances replicas); streams get "
    "5 minutes more, then resume on a new connection.",
)
LOG_LEVEL = Setting(
    "log-level",
    parse_log_level,
    "info",
    "Least severe log level written (on stderr, as --log-format says).",
)

LOG_FORMAT = Setting(
    "log-format",
    choice(LogFormat),
    "auto",
    "Log lines on stderr: json, text (readable), or auto (text on a terminal, else json).",
)


SHARED_SETTINGS: tuple[Setting[object], ...] = (
    GRACE_PERIOD,
    MAX_RECEIVE_MESSAGE_BYTES,
    MAX_CONCURRENT_STREAMS,
    MAX_CONNECTION_AGE,
    LOG_LEVEL,
    LOG_FORMAT,
)
"""The settings every service has with the same default; with :data:`LISTEN`,
:data:`METRICS_LISTEN` and :data:`DATABASE_URL`, to which each service gives its own."""


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """How a service's gRPC and metrics servers run. Limits are explicit, not grpc's defaults;
    those without a setting are fixed here."""

    listen: HostPort
    metrics_listen: HostPort | None
    grace_period: float = GRACE_PERIOD.default_value
    max_receive_message_bytes: int = MAX_RECEIVE_MESSAGE_BYTES.default_value
    max_send_message_bytes: int = 4 * 1024 * 1024
    max_concurrent_streams: int = MAX_CONCURRENT_STREAMS.default_value
    keepalive_time: float = 60.0
    keepalive_timeout: float = 20.0
    min_client_ping_interval: float = 10.0
    max_connection_idle: float = 3600.0
    max_connection_age: float = MAX_CONNECTION_AGE.default_value
    max_connection_age_grace: float = 300.0
    dependency_check_interval: float = 2.0

    def grpc_options(self) -> list[tuple[str, int]]:
        """The channel arguments that carry these limits."""

        def ms(seconds: float) -> int:
            return int(seconds * 1000)

        return [
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", self.max_receive_message_bytes),
            ("grpc.max_send_message_length", self.max_send_message_bytes),
            ("grpc.max_concurrent_streams", self.max_concurrent_streams),
            ("grpc.keepalive_time_ms", ms(self.keepalive_time)),
            ("grpc.keepalive_timeout_ms", ms(self.keepalive_timeout)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", ms(self.min_client_ping_interval)),
            ("grpc.http2.max_ping_strikes", 2),
            ("grpc.max_connection_idle_ms", ms(self.max_connection_idle)),
            ("grpc.max_connection_age_ms", ms(self.max_connection_age)),
            ("grpc.max_connection_age_grace_ms", ms(self.max_connection_age_grace)),
        ]


def server_config(values: SettingValues) -> ServerSettings:
    """ServerSettings from values that include :data:`LISTEN`, :data:`METRICS_LISTEN` and
    :data:`SHARED_SETTINGS`."""
    return ServerSettings(
        listen=values[LISTEN],
        metrics_listen=values[METRICS_LISTEN],
        grace_period=values[GRACE_PERIOD],
        max_receive_message_bytes=values[MAX_RECEIVE_MESSAGE_BYTES],
        max_concurrent_streams=values[MAX_CONCURRENT_STREAMS],
        max_connection_age=values[MAX_CONNECTION_AGE],
    )
