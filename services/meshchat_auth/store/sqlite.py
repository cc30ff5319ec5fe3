"""AuthStore on SQLite, the embedded default. Timestamps are kept as microseconds (UTC)."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from meshchat_auth.domain import (
    AccountEvent,
    AccountEventKind,
    AttemptLimit,
    NewUser,
    RefreshFamily,
    RefreshToken,
    Rotation,
    RotationOutcome,
    StoredRotation,
    User,
    UserChanges,
    change_events,
    decide_rotation,
)
from meshchat_runtime.database import SqliteDatabase, load_migrations
from meshchat_runtime.errors import AlreadyExists
from meshchat_runtime.identity import Role
from meshchat_runtime.metrics import DatabaseMetrics
from meshchat_runtime.timestamps import from_micros, to_micros

__all__ = ["SqliteAuthStore"]

# Expired failed-login records deleted per reservation: more than one reservation creates,
# so the table stays bounded by the records of one window.
PRUNE_BATCH = 100

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


async def _record_event(
    conn: Any, user_id: str, kind: AccountEventKind, now: datetime, kept_session_id: str = ""
) -> None:
    await conn.execute(
        "INSERT INTO account_events (user_id, kind, occurred_at, kept_session_id) "
        "VALUES (?, ?, ?, ?)",
        (user_id, int(kind), to_micros(now), kept_session_id),
    )


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

    async def get_user_with_session(
        self, user_id: str, session_id: str
    ) -> tuple[User, bool] | None:
        """The account and whether the login ``session_id`` is revoked, in one query."""
        async with (
            self._db.reading() as conn,
            conn.execute(
                f"SELECT {_USER_COLUMNS}, EXISTS (SELECT 1 FROM refresh_families "  # noqa: S608 (constant columns)
                "WHERE family_id = ? AND revoked_at IS NOT NULL) AS session_revoked "
                "FROM users WHERE id = ?",
                (session_id, user_id),
            ) as cur,
        ):
            row = await cur.fetchone()
        return (_user(row), bool(row["session_revoked"])) if row is not None else None

    async def get_user_by_username(self, username: str) -> User | None:
        """The account with this username, ignoring case."""
        return await self._one_user("lower(username) = lower(?)", username)

    async def get_users_by_usernames(self, usernames: Sequence[str]) -> list[User]:
        """The accounts with these usernames, ignoring case."""
        keys = sorted({u.lower() for u in usernames})
        marks = ", ".join("?" * len(keys))
        async with (
            self._db.reading() as conn,
            conn.execute(
                f"SELECT {_USER_COLUMNS} FROM users WHERE lower(username) IN ({marks})",  # noqa: S608 (placeholders only)
                keys,
            ) as cur,
        ):
            rows = await cur.fetchall()
        return [_user(row) for row in rows]

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
                async with conn.execute("SELECT role FROM users WHERE id = ?", (user_id,)) as c:
                    old = await c.fetchone()
                if old is None:
                    return None
                await conn.execute(
                    f"UPDATE users SET {', '.join(sets)} WHERE id = ?",  # noqa: S608
                    (*values, user_id),
                )
                for kind, kept in change_events(changes, Role(old["role"])):
                    await _record_event(conn, user_id, kind, now, kept)
                if changes.revoke_families:
                    await conn.execute(
                        "UPDATE refresh_families SET revoked_at = ? WHERE user_id = ? "
                        "AND revoked_at IS NULL AND family_id IS NOT ?",
                        (to_micros(now), user_id, changes.keep_family),
                    )
                async with conn.execute(
                    f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?",  # noqa: S608
                    (user_id,),
                ) as c:
                    row = await c.fetchone()
        except sqlite3.IntegrityError as exc:
            raise _duplicate(exc) from None
        return _user(row)

    async def delete_user(self, user_id: str, now: datetime) -> bool:
        """Delete the account and all of its refresh families, recording the event."""
        async with self._db.transaction() as conn:
            await conn.execute("DELETE FROM refresh_tokens WHERE user_id = ?", (user_id,))
            await conn.execute("DELETE FROM refresh_families WHERE user_id = ?", (user_id,))
            cur = await conn.execute("DELETE FROM users WHERE id = ?", (user_id,))
            if cur.rowcount == 0:
                return False
            await _record_event(conn, user_id, AccountEventKind.DELETED, now)
            return True

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

    async def start_family(self, family: RefreshFamily, first: RefreshToken) -> None:
        """Store a new family with its first refresh token."""
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO refresh_families (family_id, user_id, created_at, expires_at) "
                "VALUES (?, ?, ?, ?)",
                (
                    family.family_id,
                    family.user_id,
                    to_micros(family.created_at),
                    to_micros(family.expires_at),
                ),
            )
            await conn.execute(
                "INSERT INTO refresh_tokens (token_hash, family_id, user_id, issued_at) "
                "VALUES (?, ?, ?, ?)",
                (first.token_hash, first.family_id, first.user_id, to_micros(first.issued_at)),
            )

    async def rotate_refresh_token(
        self,
        token_hash: str,
        successor_hash: str,
        successor_sealed: bytes,
        now: datetime,
        grace_seconds: float,
    ) -> Rotation:
        """One BEGIN IMMEDIATE transaction: no other writer, in this process or another,
        runs between the read and the writes."""
        async with self._db.transaction() as conn:
            async with conn.execute(
                "SELECT t.family_id, t.user_id, t.used_at, t.successor_sealed, f.expires_at, "
                "f.revoked_at, s.used_at AS successor_used_at FROM refresh_tokens t "
                "JOIN refresh_families f ON f.family_id = t.family_id "
                "LEFT JOIN refresh_tokens s ON s.token_hash = t.successor_hash "
                "WHERE t.token_hash = ?",
                (token_hash,),
            ) as cur:
                row = await cur.fetchone()
            stored = None
            if row is not None:
                stored = StoredRotation(
                    family_id=row["family_id"],
                    user_id=row["user_id"],
                    family_expires_at=from_micros(row["expires_at"]),
                    family_revoked=row["revoked_at"] is not None,
                    used_at=_optional(row["used_at"]),
                    successor_sealed=row["successor_sealed"],
                    successor_used=row["successor_used_at"] is not None,
                )
            outcome = decide_rotation(stored, now, grace_seconds)
            if stored is None:
                return Rotation(outcome)
            if outcome is RotationOutcome.ROTATED:
                await conn.execute(
                    "UPDATE refresh_tokens SET successor_sealed = NULL WHERE successor_hash = ?",
                    (token_hash,),
                )
                await conn.execute(
                    "UPDATE refresh_tokens SET used_at = ?, successor_hash = ?, "
                    "successor_sealed = ? WHERE token_hash = ?",
                    (to_micros(now), successor_hash, successor_sealed, token_hash),
                )
                await conn.execute(
                    "INSERT INTO refresh_tokens (token_hash, family_id, user_id, issued_at) "
                    "VALUES (?, ?, ?, ?)",
                    (successor_hash, stored.family_id, stored.user_id, to_micros(now)),
                )
            elif outcome is RotationOutcome.REUSED:
                await conn.execute(
                    "UPDATE refresh_families SET revoked_at = ? WHERE family_id = ?",
                    (to_micros(now), stored.family_id),
                )
        return Rotation(
            outcome,
            stored.family_id,
            stored.user_id,
            stored.family_expires_at,
            stored.successor_sealed if outcome is RotationOutcome.REPEATED else None,
        )

    async def revoke_family_of(self, token_hash: str, now: datetime) -> None:
        """Revoke the family of this refresh token."""
        async with self._db.transaction() as conn:
            await conn.execute(
                "UPDATE refresh_families SET revoked_at = ? WHERE revoked_at IS NULL AND "
                "family_id = (SELECT family_id FROM refresh_tokens WHERE token_hash = ?)",
                (to_micros(now), token_hash),
            )

    async def log_out_everywhere(self, user_id: str, now: datetime) -> bool:
        """One BEGIN IMMEDIATE transaction, which excludes every rotation meanwhile."""
        async with self._db.transaction() as conn:
            async with conn.execute("SELECT 1 FROM users WHERE id = ?", (user_id,)) as cur:
                if await cur.fetchone() is None:
                    return False
            await conn.execute(
                "UPDATE refresh_families SET revoked_at = ? "
                "WHERE user_id = ? AND revoked_at IS NULL",
                (to_micros(now), user_id),
            )
            await _record_event(conn, user_id, AccountEventKind.LOGGED_OUT_EVERYWHERE, now)
        return True

    async def reserve_login_attempt(
        self, limits: Sequence[AttemptLimit], now: datetime, window_seconds: float
    ) -> float | None:
        """Read, check and count every key in one BEGIN IMMEDIATE transaction."""
        window = timedelta(seconds=window_seconds)
        cutoff = to_micros(now - window)
        async with self._db.transaction() as conn:
            await conn.execute(
                "DELETE FROM login_failures WHERE attempt_key IN (SELECT attempt_key FROM "
                "login_failures WHERE window_start <= ? LIMIT ?)",
                (cutoff, PRUNE_BATCH),
            )
            counts: list[tuple[str, int, int]] = []
            waits: list[float] = []
            for limit in limits:
                async with conn.execute(
                    "SELECT window_start, failures FROM login_failures WHERE attempt_key = ?",
                    (limit.key,),
                ) as cur:
                    row = await cur.fetchone()
                if row is None or row["window_start"] <= cutoff:
                    start, count = to_micros(now), 0
                else:
                    start, count = row["window_start"], row["failures"]
                if count >= limit.limit:
                    waits.append((from_micros(start) + window - now).total_seconds())
                counts.append((limit.key, start, count + 1))
            if waits:
                return max(waits)
            await conn.executemany(
                "INSERT INTO login_failures (attempt_key, window_start, failures) "
                "VALUES (?, ?, ?) ON CONFLICT (attempt_key) DO UPDATE SET "
                "window_start = excluded.window_start, failures = excluded.failures",
                counts,
            )
        return None

    async def release_login_attempt(self, uncount: Sequence[str], forget: Sequence[str]) -> None:
        """Take a reserved attempt back."""
        async with self._db.transaction() as conn:
            await conn.executemany(
                "UPDATE login_failures SET failures = failures - 1 "
                "WHERE attempt_key = ? AND failures > 0",
                [(key,) for key in uncount],
            )
            await conn.executemany(
                "DELETE FROM login_failures WHERE attempt_key = ?", [(key,) for key in forget]
            )

    async def account_events(self, after_seq: int, limit: int) -> list[AccountEvent]:
        """The events after ``after_seq``, oldest first."""
        async with (
            self._db.reading() as conn,
            conn.execute(
                "SELECT seq, user_id, kind, occurred_at, kept_session_id FROM account_events "
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ) as cur,
        ):
            rows = await cur.fetchall()
        return [
            AccountEvent(
                seq=row["seq"],
                user_id=row["user_id"],
                kind=AccountEventKind(row["kind"]),
                occurred_at=from_micros(row["occurred_at"]),
                kept_session_id=row["kept_session_id"],
            )
            for row in rows
        ]

    async def last_account_event_seq(self) -> int:
        """The newest event's sequence number; 0 before the first."""
        async with (
            self._db.reading() as conn,
            conn.execute("SELECT coalesce(max(seq), 0) AS seq FROM account_events") as cur,
        ):
            row = await cur.fetchone()
        return int(row["seq"]) if row is not None else 0

    async def ping(self) -> bool:
        """Whether the database answers."""
        return await self._db.ping()

    async def close(self) -> None:
        """Close the database."""
        await self._db.close()
