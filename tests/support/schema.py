"""What a database holds, schema and rows, to compare before and after a change."""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg

from meshchat_runtime.settings import parse_database_url

__all__ = ["Snapshot", "snapshot"]

Snapshot = dict[str, list[tuple[Any, ...]]]

_POSTGRES_SCHEMA = {
    "columns": "SELECT table_name, column_name, data_type, is_nullable, column_default "
    "FROM information_schema.columns WHERE table_schema = 'public' "
    "ORDER BY table_name, ordinal_position",
    "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes "
    "WHERE schemaname = 'public' ORDER BY indexname",
    "constraints": "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
    "FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY conname",
    "triggers": "SELECT event_object_table, trigger_name, action_statement "
    "FROM information_schema.triggers WHERE trigger_schema = 'public' ORDER BY trigger_name",
}


async def snapshot(url: str) -> Snapshot:
    """The schema (as the database describes it) and every row of every table, sorted."""
    parsed = parse_database_url(url)
    if parsed.dialect == "sqlite":
        assert parsed.sqlite_path is not None
        return _sqlite_snapshot(str(parsed.sqlite_path))
    return await _postgres_snapshot(url)


def _sqlite_snapshot(path: str) -> Snapshot:
    with sqlite3.connect(path) as conn:
        schema = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name"
        ).fetchall()
        tables = [name for kind, name, _, _ in schema if kind == "table"]
        taken: Snapshot = {"schema": schema}
        for table in tables:
            rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()  # noqa: S608
            taken[table] = sorted(rows, key=repr)
    return taken


async def _postgres_snapshot(url: str) -> Snapshot:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        taken: Snapshot = {}
        for name, query in _POSTGRES_SCHEMA.items():
            taken[name] = await (await conn.execute(query)).fetchall()
        tables = {row[0] for row in taken["columns"]}
        for table in sorted(tables):
            rows = await (await conn.execute(f'SELECT * FROM "{table}"')).fetchall()  # noqa: S608
            taken[table] = sorted(rows, key=repr)
    return taken
