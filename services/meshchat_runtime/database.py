"""Database plumbing shared by the services' stores: connections and versioned migrations.

Each service owns its own database and keeps its migrations in
``<package>/migrations/<dialect>/NNNN_name.sql``. Migrations are applied at start, each in
its own transaction, recorded in ``schema_migrations``; on PostgreSQL they are serialized by
an advisory lock so that replicas starting together do not race.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import select
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from meshchat_runtime.errors import Unavailable
from meshchat_runtime.metrics import DatabaseMetrics
from meshchat_runtime.settings import DATABASE_URL, ConfigError, DatabaseUrl

__all__ = [
    "Migration",
    "PostgresDatabase",
    "SqliteDatabase",
    "check_connection",
    "load_migrations",
]

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema change: its version number, file name and SQL."""

    version: int
    name: str
    sql: str


def load_migrations(package: str, dialect: str) -> list[Migration]:
    """The migrations of ``package`` for ``dialect`` ("sqlite" or "postgresql"), in order."""
    folder = resources.files(package) / "migrations" / dialect
    migrations = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            migrations.append(Migration(int(match.group(1)), entry.name, entry.read_text()))
    migrations.sort(key=lambda m: m.version)
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"{package} {dialect} migrations are not numbered 1..n: {versions}")
    return migrations


@contextlib.asynccontextmanager
async def _timed(metrics: DatabaseMetrics | None) -> AsyncIterator[None]:
    """Observe the block as one store operation, when there are metrics."""
    if metrics is None:
        yield
        return
    with metrics.operation():
        yield


def split_statements(sql: str) -> list[str]:
    """The statements of a migration file; full-line ``--`` comments are dropped first, so a
    comment before a statement does not hide it."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";\n") if s.strip()]


class SqliteDatabase:
    """One aiosqlite connection in WAL mode; writes are serialized by a lock, which is what
    SQLite does anyway, so that transactions of concurrent coroutines never interleave."""

    def __init__(self, path: Path, metrics: DatabaseMetrics | None = None) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._metrics = metrics

    async def open(self, migrations: list[Migration]) -> None:
        """Create the file (mode 0600, folder 0700) if needed, then migrate; the connection
        is closed again when that fails."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
        except OSError as exc:
            raise ConfigError(
                f"{DATABASE_URL.env}: cannot create {self.path}: {exc.strerror}"
            ) from None
        self._conn = await aiosqlite.connect(self.path, isolation_level=None)
        self._conn.row_factory = aiosqlite.Row
        try:
            for pragma in (
                "PRAGMA journal_mode=WAL",
                "PRAGMA foreign_keys=ON",
                "PRAGMA busy_timeout=5000",
                "PRAGMA synchronous=NORMAL",
            ):
                await self._conn.execute(pragma)
            await self._migrate(migrations)
        except BaseException:
            await self.close()
            raise

    async def _migrate(self, migrations: list[Migration]) -> None:
        async with self.transaction() as conn:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            async with conn.execute("SELECT version FROM schema_migrations") as cur:
                applied = {row[0] for row in await cur.fetchall()}
            for migration in migrations:
                if migration.version in applied:
                    continue
                for statement in split_statements(migration.sql):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, datetime('now'))",
                    (migration.version, migration.name),
                )
                log.info("migration applied", extra={"migration": migration.name})

    @property
    def conn(self) -> aiosqlite.Connection:
        """The open connection."""
        if self._conn is None:
            raise RuntimeError("the database is not open")
        return self._conn

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction (BEGIN IMMEDIATE), committed on success, rolled back on error."""
        async with _timed(self._metrics), self._lock:
            conn = self.conn
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection for reads, never in the middle of another coroutine's transaction."""
        async with _timed(self._metrics), self._lock:
            yield self.conn

    async def ping(self) -> bool:
        """Whether the database answers."""
        async with self.reading() as conn, conn.execute("SELECT 1") as cur:
            return (await cur.fetchone()) is not None

    async def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            await self._conn.close()
            self._conn = None


# Seconds a connection attempt may take (a server that does not answer at all).
CONNECT_TIMEOUT = 10
# What "the server is not there (yet)" looks like: refused, unreachable, shutting down.
_UNREACHABLE = (psycopg.OperationalError, PoolTimeout, OSError)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff between connection attempts: ``first``, doubling, at most ``most``
    seconds."""

    first: float = 0.5
    most: float = 10.0

    def after(self, delay: float) -> float:
        """The delay after one of ``delay``."""
        return min(delay * 2, self.most)


def _has_input(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether the server sent anything to an idle connection (or closed it)."""
    if conn.closed:
        return True
    readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    return bool(readable)


async def check_connection(conn: psycopg.AsyncConnection[Any]) -> None:
    """The pool's check of a connection it hands out: raise when it is dead.

    An idle connection of the pool is never sent anything unless the server is going away
    (a stopping or restarted server closes it, or sends its termination notice first), so a
    connection with nothing to read is in use at once; one that has input gets the round
    trip of psycopg's own check (an empty query), which fails on a dead connection. Checking
    every connection with the round trip cost a third of a cached read's CPU.
    """
    if _has_input(conn):
        await AsyncConnectionPool.check_connection(conn)


class PostgresDatabase:
    """A psycopg 3 async connection pool with dict rows.

    Each checkout checks its connection (:func:`check_connection`), and a dead one has every
    idle connection checked, so the first call after a PostgreSQL restart gets a fresh
    connection at once instead of a dead one. A server
    that is not there at start (not started yet, restarting) does not stop the service: it
    goes on trying in the background with backoff, logging why, while calls answer
    UNAVAILABLE and :meth:`ping` says False (health NOT_SERVING).
    """

    def __init__(
        self,
        url: DatabaseUrl,
        *,
        min_size: int = 2,
        max_size: int = 10,
        metrics: DatabaseMetrics | None = None,
    ) -> None:
        self.url = url
        self._metrics = metrics
        self.pool: AsyncConnectionPool[psycopg.AsyncConnection[dict[str, Any]]] = (
            AsyncConnectionPool(
                url.url,
                min_size=min_size,
                max_size=max_size,
                open=False,
                kwargs={"row_factory": dict_row, "autocommit": True},
                connection_class=psycopg.AsyncConnection[dict[str, Any]],
                check=self._check_connection,
            )
        )
        self._retry = Backoff()
        self._ready = asyncio.Event()
        self._problem = "not connected yet"
        self._connecting: asyncio.Task[None] | None = None
        if metrics is not None:
            metrics.track_pool(self.pool.get_stats)

    async def _check_connection(self, conn: psycopg.AsyncConnection[dict[str, Any]]) -> None:
        """The check of each connection the pool hands out. A dead one means the server
        restarted, and every idle connection is as dead: they are all checked now. Found one
        by one, each would cost a longer pause (the pool waits 1 s before its next check,
        doubling each time: seconds after a restart until a call got a connection)."""
        try:
            await check_connection(conn)
        except Exception:
            await self.pool.check()
            raise

    async def open(self, migrations: list[Migration], lock_name: str) -> None:
        """Connect, open the pool and migrate under the advisory lock ``lock_name``. When
        the server cannot be reached, return at once and go on trying in the background;
        any other failure (a broken migration) closes the pool and is raised."""
        try:
            await self._connect(migrations, lock_name)
        except _UNREACHABLE as exc:
            self._waiting(exc, self._retry.first)
            self._connecting = asyncio.create_task(
                self._keep_trying(migrations, lock_name), name=f"connect {self.url.redacted}"
            )
        except BaseException:
            await self.close()
            raise

    async def _connect(self, migrations: list[Migration], lock_name: str) -> None:
        # One plain connection first: it fails at once when the server is not there,
        # where the pool would wait out its timeout retrying.
        probe = await psycopg.AsyncConnection.connect(self.url.url, connect_timeout=CONNECT_TIMEOUT)
        await probe.close()
        await self.pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        await self._migrate(migrations, lock_name)
        self._ready.set()

    def _waiting(self, exc: BaseException, delay: float) -> None:
        self._problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning(
            "the database is not available yet: %s; trying again in %.1f s",
            self._problem,
            delay,
            extra={"database": self.url.redacted},
        )

    async def _keep_trying(self, migrations: list[Migration], lock_name: str) -> None:
        delay = self._retry.first
        while not self._ready.is_set():
            await asyncio.sleep(delay)  # the backoff between attempts
            delay = self._retry.after(delay)
            try:
                await self._connect(migrations, lock_name)
            except Exception as exc:
                self._waiting(exc, delay)
        log.info("connected to the database", extra={"database": self.url.redacted})

    async def _migrate(self, migrations: list[Migration], lock_name: str) -> None:
        lock_key = int.from_bytes(
            hashlib.sha256(lock_name.encode()).digest()[:8], "big", signed=True
        )
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                "name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            cur = await conn.execute("SELECT version FROM schema_migrations")
            applied = {row["version"] for row in await cur.fetchall()}
            for migration in migrations:
                if migration.version in applied:
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql.encode())
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                log.info("migration applied", extra={"migration": migration.name})

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
        """A pooled connection; a lost database becomes Unavailable (clients retry) rather
        than an unexpected error."""
        if not self._ready.is_set():
            raise Unavailable(
                f"the database at {self.url.redacted} is not available yet: {self._problem}"
            )
        try:
            async with _timed(self._metrics), self.pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise Unavailable(f"the database is unavailable: {exc}".splitlines()[0]) from exc

    async def ping(self) -> bool:
        """Whether the database is ready and a pooled connection answers within a few
        seconds."""
        if not self._ready.is_set():
            return False
        try:
            async with asyncio.timeout(5):
                async with self.pool.connection(timeout=5) as conn:
                    await conn.execute("SELECT 1")
        except Exception:
            return False
        return True

    async def close(self) -> None:
        """Stop trying to connect, and close the pool."""
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        await self.pool.close()
