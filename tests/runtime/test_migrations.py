"""Migrations on PostgreSQL: replicas starting together apply each migration once."""

from __future__ import annotations

import asyncio

import psycopg

from meshchat_auth.bootstrap import open_store
from meshchat_runtime.database import split_statements
from meshchat_runtime.settings import parse_database_url


async def test_concurrent_starts_migrate_once(postgres_url: str) -> None:
    stores = await asyncio.gather(*(open_store(parse_database_url(postgres_url)) for _ in range(5)))
    for store in stores:
        await store.close()
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        cur = await conn.execute("SELECT version, name FROM schema_migrations ORDER BY version")
        rows = await cur.fetchall()
    assert rows == [(1, "0001_users_and_tokens.sql")]


def test_a_comment_before_a_statement_does_not_hide_it() -> None:
    sql = "-- the users\nCREATE TABLE a (x INT);\n-- and more\nCREATE INDEX i ON a (x);\n"
    assert split_statements(sql) == ["CREATE TABLE a (x INT)", "CREATE INDEX i ON a (x);"]
