"""AuthStore on SQLite, the embedded default. Timestamps are kept as microseconds (UTC)."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from meshchat_auth.domain import LoginFailures, NewUser, RefreshToken, User, UserChanges
from meshchat_runtime.database import SqliteDatabase, load_migrations
from meshchat_runtime.errors import AlreadyExists
from meshchat_runtime.identity import Role
from meshchat_runtime.metrics import DatabaseMetrics
from meshchat_runtime.timestamps import from_micros, to_micros

__all__ = ["SqliteAuthStore"]

_USER_COLUMNS = "id, username, email, role, password_hash, created_at, updated_at"


def _optional(micros: int | None) -> datetime | None:
    return from_micros(micros) if micros is not None else None


def _user(row: Any) -> User:
    return User(
        id=row["id"],
        username=row["username"],
        email=row["email"],
        role=Role(row["role"]),
        password_hash=row["password_hash"],
        created_at=from_micros(row["created_at"]),
        updated_at=from_micros(row["updated_at"]),
    )


def _duplicate(error: sqlite3.IntegrityError) -> AlreadyExists:
    text = str(error)
    field = "email" if "email" in text else "username"
    return AlreadyExists(f"a user with this {field} already exists")


class SqliteAuthStore:
    """The AuthStore contract on one SQLite file."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: Path, metrics: DatabaseMetrics | None = None) -> SqliteAuthStore:
        """Open (creating and migrating) the database file at ``path``."""
        db = SqliteDatabase(path, metrics)
        await db.open(load_migrations("meshchat_auth", "sqlite"))
        return cls(db)

    async def create_user(self, user: NewUser, now: datetime) -> User:
        """Store a new account with a fresh id."""
        user_id = str(uuid.uuid4())
        try:
            async with self._db.transaction() as conn:
                await conn.execute(
                    f"INSERT INTO users ({_USER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                    (
                        user_id,
                        user.username,
                        user.email,
                        int(user.role),
                        user.password_hash,
                        to_micros(now),
                        to_micros(now),
                    ),
                )
        except sqlite3.IntegrityError as exc:
            raise _duplicate(exc) from None
        return User(user_id, user.username, user.email, user.role, user.password_hash, now, now)

    async def _one_user(self, where: str, value: str) -> User | None:
        async with (
            self._db.reading() as conn,
            conn.execute(
                f"SELECT {_USER_COLUMNS} FROM users WHERE {where}",  # noqa: S608 (constant columns and clause)
                (value,),
            ) as cur,
        ):
            row = await cur.fetchone()
        return _user(row) if row is not None else None

    async def get_user(self, user_id: str) -> User | None:
        """The account with this id."""
        return await self._one_user("id = ?", user_id)

    async def get_user_by_username(self, username: str) -> User | None:
        """The account with this username, ignoring case."""
        return await self._one_user("lower(username) = lower(?)", username)

    async def update_user(self, user_id: str, changes: UserChanges, now: datetime) -> User | None:
        """Apply ``changes``; None when the account does not exist."""
        sets = ["updated_at = ?"]
        values: list[Any] = [to_micros(now)]
        if changes.email is not None:
            sets.append("email = ?")
            values.append(changes.email)
        if changes.password_hash is not None:
            sets.append("password_hash = ?")
            values.append(changes.password_hash)
        if changes.role is not None:
            sets.append("role = ?")
            values.append(int(changes.role))
        try:
            async with self._db.transaction() as conn:
                cur = await conn.execute(
                    f"UPDATE users SET {', '.join(sets)} WHERE id = ?",  # noqa: S608
                    (*values, user_id),
                )
                if cur.rowcount == 0:
                    return None
                async with conn.execute(
                    f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?",  # noqa: S608
                    (user_id,),
                ) as c:
                    row = await c.fetchone()
        except sqlite3.IntegrityError as exc:
            raise _duplicate(exc) from None
        return _user(row)

    async def delete_user(self, user_id: str) -> bool:
        """Delete the account and all of its refresh tokens."""
        async with self._db.transaction() as conn:
            await conn.execute("DELETE FROM refresh_tokens WHERE user_id = ?", (user_id,))
            cur = await conn.execute("DELETE FROM users WHERE id = ?", (user_id,))
            return cur.rowcount > 0

    async def list_users(self, after_username: str | None, limit: int) -> list[User]:
        """Accounts ordered by lowercase username."""
        async with (
            self._db.reading() as conn,
            conn.execute(
                f"SELECT {_USER_COLUMNS} FROM users WHERE lower(username) > lower(?) "  # noqa: S608
                "ORDER BY lower(username) LIMIT ?",
                (after_username or "", limit),
            ) as cur,
        ):
            return [_user(row) for row in await cur.fetchall()]

    async def add_refresh_token(self, token: RefreshToken) -> None:
        """Store a new refresh token."""
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO refresh_tokens (token_hash, family_id, user_id, issued_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    token.token_hash,
                    token.family_id,
                    token.user_id,
                    to_micros(token.issued_at),
                    to_micros(token.expires_at),
                ),
            )

    async def get_refresh_token(self, token_hash: str) -> RefreshToken | None:
        """The refresh token with this hash."""
        async with (
            self._db.reading() as conn,
            conn.execute(
                "SELECT token_hash, family_id, user_id, issued_at, expires_at, used_at, revoked_at "
                "FROM refresh_tokens WHERE token_hash = ?",
                (token_hash,),
            ) as cur,
        ):
            row = await cur.fetchone()
        if row is None:
            return None
        return RefreshToken(
            token_hash=row["token_hash"],
            family_id=row["family_id"],
            user_id=row["user_id"],
            issued_at=from_micros(row["issued_at"]),
            expires_at=from_micros(row["expires_at"]),
            used_at=_optional(row["used_at"]),
            revoked_at=_optional(row["revoked_at"]),
        )

    async def use_refresh_token(self, token_hash: str, now: datetime) -> bool:
        """Mark the token used if it is unused and not revoked."""
        async with self._db.transaction() as conn:
            cur = await conn.execute(
                "UPDATE refresh_tokens SET used_at = ? "
                "WHERE token_hash = ? AND used_at IS NULL AND revoked_at IS NULL",
                (to_micros(now), token_hash),
            )
            return cur.rowcount == 1

    async def revoke_family(self, family_id: str, now: datetime) -> None:
        """Revoke every token of a rotation family."""
        async with self._db.transaction() as conn:
            await conn.execute(
                "UPDATE refresh_tokens SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL",
                (to_micros(now), family_id),
            )

    async def count_login_failure(
        self, username_key: str, now: datetime, window_seconds: float
    ) -> LoginFailures:
        """Count one failed login."""
        async with self._db.transaction() as conn:
            async with conn.execute(
                "SELECT window_start, failures FROM login_failures WHERE username_key = ?",
                (username_key,),
            ) as cur:
                row = await cur.fetchone()
            if (
                row is None
                or from_micros(row["window_start"]) + timedelta(seconds=window_seconds) <= now
            ):
                start, failures = now, 1
            else:
                start, failures = from_micros(row["window_start"]), row["failures"] + 1
            await conn.execute(
                "INSERT INTO login_failures (username_key, window_start, failures) VALUES (?, ?, ?) "
                "ON CONFLICT (username_key) DO UPDATE SET window_start = excluded.window_start, "
                "failures = excluded.failures",
                (username_key, to_micros(start), failures),
            )
        return failures, start

    async def login_failures(self, username_key: str) -> LoginFailures | None:
        """The current failure count and its window start."""
        async with (
            self._db.reading() as conn,
            conn.execute(
                "SELECT window_start, failures FROM login_failures WHERE username_key = ?",
                (username_key,),
            ) as cur,
        ):
            row = await cur.fetchone()
        return (row["failures"], from_micros(row["window_start"])) if row else None

    async def clear_login_failures(self, username_key: str) -> None:
        """Forget the failures of an account."""
        async with self._db.transaction() as conn:
            await conn.execute("DELETE FROM login_failures WHERE username_key = ?", (username_key,))

    async def ping(self) -> bool:
        """Whether the database answers."""
        return await self._db.ping()

    async def close(self) -> None:
        """Close the database."""
        await self._db.close()
