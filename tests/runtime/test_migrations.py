"""Migrations: replicas starting together apply each migration once, and a migration keeps
the rows it converts."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from meshchat_auth.store import open_store
from meshchat_runtime.database import (
    Migration,
    PostgresDatabase,
    SqliteDatabase,
    load_migrations,
    split_statements,
)
from meshchat_runtime.settings import parse_database_url
from meshchat_runtime.timestamps import to_micros


async def test_concurrent_starts_migrate_once(postgres_url: str) -> None:
    stores = await asyncio.gather(*(open_store(parse_database_url(postgres_url)) for _ in range(5)))
    for store in stores:
        await store.close()
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        cur = await conn.execute("SELECT version, name FROM schema_migrations ORDER BY version")
        rows = await cur.fetchall()
    assert rows == [
        (1, "0001_users_and_tokens.sql"),
        (2, "0002_refresh_families_and_attempts.sql"),
        (3, "0003_account_events.sql"),
    ]


def test_a_comment_before_a_statement_does_not_hide_it() -> None:
    sql = "-- the users\nCREATE TABLE a (x INT);\n-- and more\nCREATE INDEX i ON a (x);\n"
    assert split_statements(sql) == ["CREATE TABLE a (x INT)", "CREATE INDEX i ON a (x);"]


USER_ID = "6f1c1f3e-9a43-4d55-8f0e-2d7c3b1a9e10"
FAMILY_ID = "0b8e5a52-3c1d-4f7a-9e2b-5d6c7a8b9c0d"
ISO_ROWS = {
    "created": datetime(2026, 11, 24, 12, 0, 0, 999999, tzinfo=UTC),
    "updated": datetime(2026, 11, 24, 13, 0, tzinfo=timezone(timedelta(hours=1))),
    "issued": datetime(2026, 11, 24, 12, 0, 0, 5, tzinfo=UTC),
    "expires": datetime(
        2026, 12, 24, 6, 30, 0, 123456, tzinfo=timezone(timedelta(hours=-5, minutes=-30))
    ),
    "used": datetime(2026, 11, 24, 12, 1, tzinfo=UTC),
    "window": datetime(2026, 11, 24, 12, 2, 0, 1, tzinfo=UTC),
}


def _write_auth_database_of_0001(path: Path) -> None:
    """An auth database as the code of migration 0001 wrote it: timestamps as ISO text."""
    first = load_migrations("meshchat_auth", "sqlite")[0]
    iso = {name: moment.isoformat() for name, moment in ISO_ROWS.items()}
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "CREATE TABLE schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        for statement in split_statements(first.sql):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations VALUES (1, ?, datetime('now'))", (first.name,))
        conn.execute(
            "INSERT INTO users VALUES (?, 'alice', 'a@example.org', 1, '$argon2id$hash', ?, ?)",
            (USER_ID, iso["created"], iso["updated"]),
        )
        conn.execute(
            "INSERT INTO refresh_tokens VALUES ('used', ?, ?, ?, ?, ?, NULL)",
            (FAMILY_ID, USER_ID, iso["issued"], iso["expires"], iso["used"]),
        )
        conn.execute(
            "INSERT INTO refresh_tokens VALUES ('fresh', ?, ?, ?, ?, NULL, NULL)",
            (FAMILY_ID, USER_ID, iso["issued"], iso["expires"]),
        )
        conn.execute("INSERT INTO login_failures VALUES ('alice', ?, 3)", (iso["window"],))


async def test_auth_sqlite_timestamps_of_0001_become_microseconds(tmp_path: Path) -> None:
    """0002 turns ISO text into microseconds; 0003 moves each token family into a row of its
    own (taking the tokens' expiry) and starts the failed-login counters afresh."""
    path = tmp_path / "auth.db"
    _write_auth_database_of_0001(path)
    store = await open_store(parse_database_url(f"sqlite:///{path}"))
    try:
        user = await store.get_user(USER_ID)
        assert user is not None
        assert (user.username, user.created_at, user.updated_at) == (
            "alice",
            ISO_ROWS["created"],
            ISO_ROWS["updated"],
        )
    finally:
        await store.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        tokens = conn.execute(
            "SELECT token_hash, family_id, user_id, issued_at, used_at FROM refresh_tokens "
            "ORDER BY token_hash"
        ).fetchall()
        families = conn.execute(
            "SELECT family_id, user_id, created_at, expires_at, revoked_at FROM refresh_families"
        ).fetchall()
        failures = conn.execute("SELECT count(*) FROM login_failures").fetchone()
        kinds = conn.execute(
            "SELECT DISTINCT typeof(u.created_at), typeof(u.updated_at), typeof(t.issued_at), "
            "typeof(f.expires_at) FROM users u, refresh_tokens t, refresh_families f"
        ).fetchall()
        references = conn.execute("PRAGMA foreign_key_list(refresh_tokens)").fetchall()
        versions = conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
        # The rebuilt tokens table still belongs to the users table: a deleted user's go too.
        conn.execute("PRAGMA foreign_keys=ON")
        with conn:
            conn.execute("DELETE FROM users")
        tokens_left = conn.execute("SELECT count(*) FROM refresh_tokens").fetchone()
        families_left = conn.execute("SELECT count(*) FROM refresh_families").fetchone()
    issued = to_micros(ISO_ROWS["issued"])
    assert tokens == [
        ("fresh", FAMILY_ID, USER_ID, issued, None),
        ("used", FAMILY_ID, USER_ID, issued, to_micros(ISO_ROWS["used"])),
    ]
    assert families == [(FAMILY_ID, USER_ID, issued, to_micros(ISO_ROWS["expires"]), None)]
    assert failures == (0,)
    assert kinds == [("integer",) * 4]
    assert [(row[2], row[3], row[4], row[6]) for row in references] == [
        ("users", "user_id", "id", "CASCADE")
    ]
    assert versions == [(1,), (2,), (3,), (4,)]
    assert tokens_left == families_left == (0,)


BROKEN = [Migration(1, "0001_broken.sql", "CREATE TABLE a (x INT);\nTHIS IS NOT SQL;\n")]


async def test_a_failed_postgres_migration_closes_the_pool(postgres_url: str) -> None:
    db = PostgresDatabase(parse_database_url(postgres_url))
    with pytest.raises(psycopg.errors.SyntaxError):
        await db.open(BROKEN, "meshchat_test.migrations")
    assert db.pool.closed


async def test_a_failed_sqlite_migration_closes_the_connection(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "broken.db")
    with pytest.raises(sqlite3.OperationalError):
        await db.open(BROKEN)
    with pytest.raises(RuntimeError, match="not open"):
        db.conn  # noqa: B018 (the property raises once the connection is closed)
