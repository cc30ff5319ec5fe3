"""Validated configuration values shared by both services."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

__all__ = [
    "ConfigError",
    "DatabaseUrl",
    "HostPort",
    "ServerSettings",
    "parse_database_url",
    "parse_duration",
    "parse_host_port",
]


class ConfigError(Exception):
    """A setting is invalid; the message is one line naming the setting."""


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


def parse_host_port(value: str, setting: str) -> HostPort:
    """Parse ``host:port`` or ``[v6]:port``; port 0 asks the kernel for a free one."""
    host, sep, port_text = value.strip().rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{setting}: expected HOST:PORT, got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"{setting}: port must be 0 to 65535, got {port_text!r}")
    return HostPort(host, int(port_text))


def parse_duration(value: str | float, setting: str) -> float:
    """Parse seconds (``"300"``) or a number with a unit (``"5m"``, ``"30d"``, ``"1.5s"``)."""
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip().lower()
        units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
        factor = 1.0
        for suffix in ("ms", "s", "m", "h", "d"):
            if text.endswith(suffix):
                text, factor = text[: -len(suffix)], units[suffix]
                break
        try:
            seconds = float(text) * factor
        except ValueError:
            raise ConfigError(
                f"{setting}: expected seconds or a duration like 30s, 5m, 30d; got {value!r}"
            ) from None
    if seconds < 0 or seconds != seconds:
        raise ConfigError(f"{setting}: must not be negative, got {value!r}")
    return seconds


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


def parse_database_url(value: str, setting: str = "MESHCHAT_DATABASE_URL") -> DatabaseUrl:
    """Accept ``sqlite:///relative/or/absolute.db`` or ``postgresql://...``."""
    parts = urlsplit(value.strip())
    if parts.scheme == "sqlite":
        if parts.netloc:
            raise ConfigError(f"{setting}: write sqlite:///path/to/file.db (three slashes)")
        path_text = parts.path[1:] if parts.path.startswith("/") else parts.path
        if parts.path.startswith("//"):
            path_text = parts.path[1:]
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


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """How a service's gRPC and metrics servers run. Limits are explicit, not grpc's defaults."""

    listen: HostPort
    metrics_listen: HostPort | None
    grace_period: float = 10.0
    max_receive_message_bytes: int = 4 * 1024 * 1024
    max_send_message_bytes: int = 4 * 1024 * 1024
    max_concurrent_streams: int = 1000
    keepalive_time: float = 60.0
    keepalive_timeout: float = 20.0
    min_client_ping_interval: float = 10.0
    max_connection_idle: float = 3600.0
    max_connection_age: float = 4 * 3600.0
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
