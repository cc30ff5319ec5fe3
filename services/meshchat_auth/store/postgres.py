"""AuthStore on PostgreSQL through psycopg 3."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from meshchat_auth.domain import LoginFailures, NewUser, RefreshToken, User, UserChanges
from meshchat_runtime.database import PostgresDatabase, load_migrations
from meshchat_runtime.errors import AlreadyExists
from meshchat_runtime.identity import Role
from meshchat_runtime.metrics import DatabaseMetrics
from meshchat_runtime.settings import DatabaseUrl

__all__ = ["MIGRATION_LOCK", "PostgresAuthStore"]

# The advisory lock under which replicas starting together apply the migrations one at a time.
MIGRATION_LOCK = "meshchat_auth.migrations"

_USERS = "SELECT id::text, username, email, role, password_hash, created_at, updated_at FROM users "


def _user(row: dict[str, Any]) -> User:
    return User(
        id=row["id"],
        username=row["username"],
        email=row["email"],
        role=Role(row["role"]),
        password_hash=row["password_hash"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _duplicate(error: psycopg.errors.UniqueViolation) -> AlreadyExists:
    constraint = error.diag.constraint_name or ""
    field = "email" if "email" in constraint else "username"
    return AlreadyExists(f"a user with this {field} already exists")


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class PostgresAuthStore:
    """The AuthStore contract on a PostgreSQL database."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    @classmethod
    async def open(
        cls, url: DatabaseUrl, metrics: DatabaseMetrics | None = None
    ) -> PostgresAuthStore:
        """Open a pool and migrate under the advisory lock."""
        db = PostgresDatabase(url, metrics=metrics)
        await db.open(load_migrations("meshchat_auth", "postgresql"), MIGRATION_LOCK)
        return cls(db)

    async def create_user(self, user: NewUser, now: datetime) -> User:
        """Store a new account with a fresh id."""
        user_id = str(uuid.uuid4())
        try:
            async with self._db.connection() as conn:
                await conn.execute(
                    "INSERT INTO users (id, username, email, role, password_hash, created_at, updated_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (
                        user_id,
                        user.username,
                        user.email,
                        int(user.role),
                        user.password_hash,
                        now,
                        now,
                    ),
                )
        except psycopg.errors.UniqueViolation as exc:
            raise _duplicate(exc) from None
        return User(user_id, user.username, user.email, user.role, user.password_hash, now, now)

    async def get_user(self, user_id: str) -> User | None:
        """The account with this id."""
        if not _is_uuid(user_id):
            return None
        async with self._db.connection() as conn:
            cur = await conn.execute(_USERS + "WHERE id = %s", (user_id,))
            row = await cur.fetchone()
        return _user(row) if row else None

    async def get_user_by_username(self, username: str) -> User | None:
        """The account with this username, ignoring case."""
        async with self._db.connection() as conn:
            cur = await conn.execute(_USERS + "WHERE lower(username) = lower(%s)", (username,))
            row = await cur.fetchone()
        return _user(row) if row else None

    async def update_user(self, user_id: str, changes: UserChanges, now: datetime) -> User | None:
        """Apply ``changes``; None when the account does not exist."""
        if not _is_uuid(user_id):
            return None
        assignments: list[sql.Composable] = [sql.SQL("updated_at = %s")]
        values: list[Any] = [now]
        for column, value in (
            ("email", changes.email),
            ("password_hash", changes.password_hash),
            ("role", int(changes.role) if changes.role is not None else None),
        ):
            if value is not None:
                assignments.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
                values.append(value)
        query = sql.SQL(
            "UPDATE users SET {} WHERE id = %s "
            "RETURNING id::text, username, email, role, password_hash, created_at, updated_at"
        ).format(sql.SQL(", ").join(assignments))
        try:
            async with self._db.connection() as conn:
                cur = await conn.execute(query, (*values, user_id))
                row = await cur.fetchone()
        except psycopg.errors.UniqueViolation as exc:
            raise _duplicate(exc) from None
        return _user(row) if row else None

    async def delete_user(self, user_id: str) -> bool:
        """Delete the account; its refresh tokens go with it (ON DELETE CASCADE)."""
        if not _is_uuid(user_id):
            return False
        async with self._db.connection() as conn:
            cur = await conn.execute("DELETE FROM users WHERE id = %s", (user_id,))
            return cur.rowcount > 0

    async def list_users(self, after_username: str | None, limit: int) -> list[User]:
        """Accounts ordered by lowercase username."""
        async with self._db.connection() as conn:
            cur = await conn.execute(
                _USERS + "WHERE lower(username) > lower(%s) ORDER BY lower(username) LIMIT %s",
                (after_username or "", limit),
            )
            return [_user(row) for row in await cur.fetchall()]

    async def add_refresh_token(self, token: RefreshToken) -> None:
        """Store a new refresh token."""
        async with self._db.connection() as conn:
            await conn.execute(
                "INSERT INTO refresh_tokens (token_hash, family_id, user_id, issued_at, expires_at) "
                "VALUES (%s, %s, %s, %s, %s)",
                (
                    token.token_hash,
                    token.family_id,
                    token.user_id,
                    token.issued_at,
                    token.expires_at,
                ),
            )

    async def get_refresh_token(self, token_hash: str) -> RefreshToken | None:
        """The refresh token with this hash."""
        async with self._db.connection() as conn:
            cur = await conn.execute(
                "SELECT token_hash, family_id::text, user_id::text, issued_at, expires_at, used_at, "
                "revoked_at FROM refresh_tokens WHERE token_hash = %s",
                (token_hash,),
            )
            row = await cur.fetchone()
        return RefreshToken(**row) if row else None

    async def use_refresh_token(self, token_hash: str, now: datetime) -> bool:
        """Mark the token used if it is unused and not revoked."""
        async with self._db.connection() as conn:
            cur = await conn.execute(
                "UPDATE refresh_tokens SET used_at = %s "
                "WHERE token_hash = %s AND used_at IS NULL AND revoked_at IS NULL",
                (now, token_hash),
            )
            return cur.rowcount == 1

    async def revoke_family(self, family_id: str, now: datetime) -> None:
        """Revoke every token of a rotation family."""
        async with self._db.connection() as conn:
            await conn.execute(
                "UPDATE refresh_tokens SET revoked_at = %s WHERE family_id = %s AND revoked_at IS NULL",
                (now, family_id),
            )

    async def count_login_failure(
        self, username_key: str, now: datetime, window_seconds: float
    ) -> LoginFailures:
        """Count one failed login, atomically across replicas."""
        async with self._db.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO login_failures AS f (username_key, window_start, failures) "
                "VALUES (%(key)s, %(now)s, 1) ON CONFLICT (username_key) DO UPDATE SET "
                "window_start = CASE WHEN f.window_start + %(window)s <= %(now)s "
                "THEN %(now)s ELSE f.window_start END, "
                "failures = CASE WHEN f.window_start + %(window)s <= %(now)s "
                "THEN 1 ELSE f.failures + 1 END "
                "RETURNING failures, window_start",
                {"key": username_key, "now": now, "window": timedelta(seconds=window_seconds)},
            )
            row = await cur.fetchone()
        assert row is not None
        return row["failures"], row["window_start"]

    async def login_failures(self, username_key: str) -> LoginFailures | None:
        """The current failure count and its window start."""
        async with self._db.connection() as conn:
            cur = await conn.execute(
                "SELECT failures, window_start FROM login_failures WHERE username_key = %s",
                (username_key,),
            )
            row = await cur.fetchone()
        return (row["failures"], row["window_start"]) if row else None

    async def clear_login_failures(self, username_key: str) -> None:
        """Forget the failures of an account."""
        async with self._db.connection() as conn:
            await conn.execute(
                "DELETE FROM login_failures WHERE username_key = %s", (username_key,)
            )

    async def ping(self) -> bool:
        """Whether the database answers."""
        return await self._db.ping()

    async def close(self) -> None:
        """Close the pool."""
        await self._db.close()
