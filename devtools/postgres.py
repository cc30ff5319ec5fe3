"""A throwaway PostgreSQL server for the tests, the benchmarks and ``make mesh``.

initdb and pg_ctl refuse to run as root, so as root they run as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import psycopg

from devtools.processes import free_port
from devtools.tools import ToolMissing

__all__ = [
    "ExistingPostgres",
    "PostgresNotAvailable",
    "PostgresServer",
    "ThrowawayPostgres",
    "create_database",
    "find_pg_bin",
    "throwaway_postgres",
]


class PostgresServer(Protocol):
    """A server the tests may create databases on."""

    @property
    def admin_url(self) -> str:
        """A superuser URL of its ``postgres`` database."""
        ...

    def create_database(self, prefix: str = "test") -> str:
        """A new empty database; returns its URL."""
        ...


def create_database(admin_url: str, prefix: str = "test") -> str:
    """Create a uniquely named empty database on the server of ``admin_url``; its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    return urlsplit(admin_url)._replace(path=f"/{name}").geturl()


class ExistingPostgres:
    """A server named by MESHCHAT_TEST_DATABASE_URL; each test gets a new database on it."""

    def __init__(self, url: str) -> None:
        self.admin_url = url

    def create_database(self, prefix: str = "test") -> str:
        """A new empty database; returns its URL."""
        return create_database(self.admin_url, prefix)


class PostgresNotAvailable(ToolMissing):
    """PostgreSQL's server binaries are not installed."""


def find_pg_bin() -> Path:
    """The folder holding initdb and pg_ctl."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if not candidates:
        raise PostgresNotAvailable(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: install the postgresql "
            "package (apt-get install postgresql) or set MESHCHAT_TEST_DATABASE_URL"
        )
    return Path(candidates[0]).parent


class ThrowawayPostgres:
    """A PostgreSQL server in a temporary folder on a free loopback port."""

    def __init__(self, bin_dir: Path, workdir: Path, port: int) -> None:
        self.bin_dir = bin_dir
        self.workdir = workdir
        self.datadir = workdir / "data"
        self.port = port
        self._as_postgres = os.geteuid() == 0

    @property
    def admin_url(self) -> str:
        """A URL of the ``postgres`` database as superuser."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        """initdb and start; returns when the server accepts connections."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._as_postgres:
            shutil.chown(self.workdir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start_again()

    def start_again(self) -> None:
        """Start the (initialised, stopped) server; returns when it accepts connections."""
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.workdir} -c max_connections=300 "
            "-c fsync=on -c shared_buffers=128MB"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.datadir),
            "-l",
            str(self.workdir / "log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self) -> None:
        """Stop the server immediately."""
        with contextlib.suppress(subprocess.CalledProcessError, FileNotFoundError):
            self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop")

    def create_database(self, prefix: str = "test") -> str:
        """A new empty database; returns its URL."""
        return create_database(self.admin_url, prefix)


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    """Start a throwaway server, yield it, stop it and delete its files."""
    bin_dir = find_pg_bin()
    workdir = Path(tempfile.mkdtemp(prefix="meshchat-pg-"))
    os.chmod(workdir, 0o755)  # noqa: S103 (the postgres user must reach its data dir)
    server = ThrowawayPostgres(bin_dir, workdir / "pg", free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
