"""AuthStore on PostgreSQL through psycopg 3."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

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
from meshchat_runtime.database import PostgresDatabase, load_migrations
from meshchat_runtime.errors import AlreadyExists
from meshchat_runtime.identity import Role
from meshchat_runtime.metrics import DatabaseMetrics
from meshchat_runtime.settings import DatabaseUrl

__all__ = ["MIGRATION_LOCK", "PostgresAuthStore"]

# The advisory lock under which replicas starting together apply the migrations one at a time.
MIGRATION_LOCK = "meshchat_auth.migrations"
# The advisory lock that orders the commits of account events.
EVENTS_LOCK = "meshchat_auth.account_events"
# Expired failed-login records deleted per reservation: more than one reservation creates,
# so the table stays bounded by the records of one window.
PRUNE_BATCH = 100

_USERS = "SELECT id::text, username, email, role, password_hash, created_at, updated_at FROM users "

# The failed-login counters commit without waiting for their WAL flush. Every check from one
# address or for one account updates the same rows, so each waited for the previous one's
# fsync while holding a pooled connection: under a login storm on a busy disk the pool ran
# dry and unrelated calls (GetUser) waited seconds. A database crash may lose the last
# fraction of a second of counts (a few guesses more for an attacker who cannot cause it);
# atomicity, and the order of reservations, are unchanged.
_NOT_DURABLE = "SET LOCAL synchronous_commit = off"

# The lock of a change to an account that then revokes its families. NO KEY UPDATE, not
# UPDATE: a rotation holds its family's row and then inserts a token, whose reference to
# the user takes KEY SHARE on the user's row, which UPDATE would block (a deadlock).
_LOCK_USER = "SELECT role FROM users WHERE id = %s FOR NO KEY UPDATE"


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


async def _record_event(
    conn: psycopg.AsyncConnection[Any],
    user_id: str,
    kind: AccountEventKind,
    now: datetime,
    kept_session_id: str = "",
) -> None:
    # Held until the commit: events commit in the order of their numbers, so a reader never
    # sees a number while an earlier one is still to come.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (EVENTS_LOCK,))
    await conn.execute(
        "INSERT INTO account_events (user_id, kind, occurred_at, kept_session_id) "
        "VALUES (%s, %s, %s, %s)",
        (user_id, int(kind), now, kept_session_id),
    )


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

    async def get_user_with_session(
        self, user_id: str, session_id: str
    ) -> tuple[User, bool] | None:
        """The account and whether the login ``session_id`` is revoked, in one query."""
        if not _is_uuid(user_id):
            return None
        family = session_id if _is_uuid(session_id) else None
        async with self._db.connection() as conn:
            cur = await conn.execute(
                "SELECT id::text, username, email, role, password_hash, created_at, updated_at, "
                "EXISTS (SELECT 1 FROM refresh_families WHERE family_id = %s::uuid "
                "AND revoked_at IS NOT NULL) AS session_revoked FROM users WHERE id = %s",
                (family, user_id),
            )
            row = await cur.fetchone()
        return (_user(row), bool(row["session_revoked"])) if row else None

    async def get_user_by_username(self, username: str) -> User | None:
        """The account with this username, ignoring case."""
        async with self._db.connection() as conn:
            cur = await conn.execute(_USERS + "WHERE lower(username) = lower(%s)", (username,))
            row = await cur.fetchone()
        return _user(row) if row else None

    async def get_users_by_usernames(self, usernames: Sequence[str]) -> list[User]:
        """The accounts with these usernames, ignoring case."""
        keys = sorted({u.lower() for u in usernames})
        async with self._db.connection() as conn:
            cur = await conn.execute(_USERS + "WHERE lower(username) = ANY(%s)", (keys,))
            rows = await cur.fetchall()
        return [_user(row) for row in rows]

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
        keep = (
            changes.keep_family if changes.keep_family and _is_uuid(changes.keep_family) else None
        )
        try:
            async with self._db.connection() as conn, conn.transaction():
                cur = await conn.execute(_LOCK_USER, (user_id,))
                old = await cur.fetchone()
                if old is None:
                    return None
                cur = await conn.execute(query, (*values, user_id))
                row = await cur.fetchone()
                for kind, kept in change_events(changes, Role(old["role"])):
                    await _record_event(conn, user_id, kind, now, kept)
                if row is not None and changes.revoke_families:
                    await conn.execute(
                        "UPDATE refresh_families SET revoked_at = %s WHERE user_id = %s "
                        "AND revoked_at IS NULL AND family_id IS DISTINCT FROM %s::uuid",
                        (now, user_id, keep),
                    )
        except psycopg.errors.UniqueViolation as exc:
            raise _duplicate(exc) from None
        return _user(row) if row else None

    async def delete_user(self, user_id: str, now: datetime) -> bool:
        """Delete the account, recording the event; its refresh families and tokens go with
        it (ON DELETE CASCADE)."""
        if not _is_uuid(user_id):
            return False
        async with self._db.connection() as conn, conn.transaction():
            cur = await conn.execute("DELETE FROM users WHERE id = %s", (user_id,))
            if cur.rowcount == 0:
                return False
            await _record_event(conn, user_id, AccountEventKind.DELETED, now)
            return True

    async def list_users(self, after_username: str | None, limit: int) -> list[User]:
        """Accounts ordered by lowercase username."""
        async with self._db.connection() as conn:
            cur = await conn.execute(
                _USERS + "WHERE lower(username) > lower(%s) ORDER BY lower(username) LIMIT %s",
                (after_username or "", limit),
            )
            return [_user(row) for row in await cur.fetchall()]

    async def start_family(self, family: RefreshFamily, first: RefreshToken) -> None:
        """Store a new family with its first refresh token."""
        async with self._db.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO refresh_families (family_id, user_id, created_at, expires_at) "
                "VALUES (%s, %s, %s, %s)",
                (family.family_id, family.user_id, family.created_at, family.expires_at),
            )
            await conn.execute(
                "INSERT INTO refresh_tokens (token_hash, family_id, user_id, issued_at) "
                "VALUES (%s, %s, %s, %s)",
                (first.token_hash, first.family_id, first.user_id, first.issued_at),
            )

    async def rotate_refresh_token(
        self,
        token_hash: str,
        successor_hash: str,
        successor_sealed: bytes,
        now: datetime,
        grace_seconds: float,
    ) -> Rotation:
        """One transaction holding the family row's lock, which every rotation and
        revocation of the family takes: they run one after the other."""
        async with self._db.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT f.family_id FROM refresh_families f JOIN refresh_tokens t "
                "ON t.family_id = f.family_id WHERE t.token_hash = %s FOR UPDATE OF f",
                (token_hash,),
            )
            if await cur.fetchone() is None:
                return Rotation(RotationOutcome.UNKNOWN)
            # Read after the lock, in a statement of its own: under READ COMMITTED it sees
            # every rotation that committed before the lock was granted.
            cur = await conn.execute(
                "SELECT t.family_id::text, t.user_id::text, t.used_at, t.successor_sealed, "
                "f.expires_at, f.revoked_at, s.used_at AS successor_used_at "
                "FROM refresh_tokens t JOIN refresh_families f ON f.family_id = t.family_id "
                "LEFT JOIN refresh_tokens s ON s.token_hash = t.successor_hash "
                "WHERE t.token_hash = %s",
                (token_hash,),
            )
            row = await cur.fetchone()
            assert row is not None  # tokens are deleted only with their family's user
            stored = StoredRotation(
                family_id=row["family_id"],
                user_id=row["user_id"],
                family_expires_at=row["expires_at"],
                family_revoked=row["revoked_at"] is not None,
                used_at=row["used_at"],
                successor_sealed=row["successor_sealed"],
                successor_used=row["successor_used_at"] is not None,
            )
            outcome = decide_rotation(stored, now, grace_seconds)
            if outcome is RotationOutcome.ROTATED:
                await conn.execute(
                    "UPDATE refresh_tokens SET successor_sealed = NULL WHERE successor_hash = %s",
                    (token_hash,),
                )
                await conn.execute(
                    "UPDATE refresh_tokens SET used_at = %s, successor_hash = %s, "
                    "successor_sealed = %s WHERE token_hash = %s",
                    (now, successor_hash, successor_sealed, token_hash),
                )
                await conn.execute(
                    "INSERT INTO refresh_tokens (token_hash, family_id, user_id, issued_at) "
                    "VALUES (%s, %s, %s, %s)",
                    (successor_hash, stored.family_id, stored.user_id, now),
                )
            elif outcome is RotationOutcome.REUSED:
                await conn.execute(
                    "UPDATE refresh_families SET revoked_at = %s WHERE family_id = %s",
                    (now, stored.family_id),
                )
        return Rotation(
            outcome,
            stored.family_id,
            stored.user_id,
            stored.family_expires_at,
            bytes(stored.successor_sealed)
            if outcome is RotationOutcome.REPEATED and stored.successor_sealed is not None
            else None,
        )

    async def revoke_family_of(self, token_hash: str, now: datetime) -> None:
        """Revoke the family of this refresh token."""
        async with self._db.connection() as conn:
            await conn.execute(
                "UPDATE refresh_families SET revoked_at = %s WHERE revoked_at IS NULL AND "
                "family_id = (SELECT family_id FROM refresh_tokens WHERE token_hash = %s)",
                (now, token_hash),
            )

    async def log_out_everywhere(self, user_id: str, now: datetime) -> bool:
        """One transaction that locks the account's row (see ``_LOCK_USER``), then every
        family row of it (the lock each rotation of a family takes), and records the event."""
        if not _is_uuid(user_id):
            return False
        async with self._db.connection() as conn, conn.transaction():
            cur = await conn.execute(_LOCK_USER, (user_id,))
            if await cur.fetchone() is None:
                return False
            await conn.execute(
                "UPDATE refresh_families SET revoked_at = %s "
                "WHERE user_id = %s AND revoked_at IS NULL",
                (now, user_id),
            )
            await _record_event(conn, user_id, AccountEventKind.LOGGED_OUT_EVERYWHERE, now)
        return True

    async def reserve_login_attempt(
        self, limits: Sequence[AttemptLimit], now: datetime, window_seconds: float
    ) -> float | None:
        """One upsert counts every key (in key order, so that concurrent reservations lock
        rows in the same order and never deadlock); when a count passes its limit, the
        transaction is rolled back and nothing was counted."""
        window = timedelta(seconds=window_seconds)
        cutoff = now - window
        by_key = {limit.key: limit.limit for limit in limits}
        waits: list[float] = []
        async with self._db.connection() as conn:
            # Its own transaction, and SKIP LOCKED: pruning never waits for, or holds up, a
            # reservation.
            await conn.execute(
                "DELETE FROM login_failures WHERE attempt_key IN (SELECT attempt_key FROM "
                "login_failures WHERE window_start <= %s LIMIT %s FOR UPDATE SKIP LOCKED)",
                (cutoff, PRUNE_BATCH),
            )
            async with conn.transaction():
                await conn.execute(_NOT_DURABLE)
                cur = await conn.execute(
                    "INSERT INTO login_failures AS f (attempt_key, window_start, failures) "
                    "SELECT k, %(now)s, 1 FROM unnest(%(keys)s::text[]) AS k ORDER BY k "
                    "ON CONFLICT (attempt_key) DO UPDATE SET "
                    "window_start = CASE WHEN f.window_start <= %(cutoff)s "
                    "THEN %(now)s ELSE f.window_start END, "
                    "failures = CASE WHEN f.window_start <= %(cutoff)s "
                    "THEN 1 ELSE f.failures + 1 END "
                    "RETURNING attempt_key, window_start, failures",
                    {"now": now, "keys": sorted(by_key), "cutoff": cutoff},
                )
                for row in await cur.fetchall():
                    if row["failures"] > by_key[row["attempt_key"]]:
                        waits.append((row["window_start"] + window - now).total_seconds())
                if waits:
                    raise psycopg.Rollback()
        return max(waits) if waits else None

    async def release_login_attempt(self, uncount: Sequence[str], forget: Sequence[str]) -> None:
        """Take a reserved attempt back."""
        async with self._db.connection() as conn, conn.transaction():
            await conn.execute(_NOT_DURABLE)
            await conn.execute(
                "UPDATE login_failures SET failures = failures - 1 "
                "WHERE attempt_key = ANY(%s) AND failures > 0",
                (list(uncount),),
            )
            await conn.execute(
                "DELETE FROM login_failures WHERE attempt_key = ANY(%s)", (list(forget),)
            )

    async def account_events(self, after_seq: int, limit: int) -> list[AccountEvent]:
        """The events after ``after_seq``, oldest first."""
        async with self._db.connection() as conn:
            cur = await conn.execute(
                "SELECT seq, user_id::text, kind, occurred_at, kept_session_id "
                "FROM account_events WHERE seq > %s ORDER BY seq LIMIT %s",
                (after_seq, limit),
            )
            rows = await cur.fetchall()
        return [
            AccountEvent(
                seq=row["seq"],
                user_id=row["user_id"],
                kind=AccountEventKind(row["kind"]),
                occurred_at=row["occurred_at"],
                kept_session_id=row["kept_session_id"],
            )
            for row in rows
        ]

    async def last_account_event_seq(self) -> int:
        """The newest event's sequence number; 0 before the first."""
        async with self._db.connection() as conn:
            cur = await conn.execute("SELECT coalesce(max(seq), 0) AS seq FROM account_events")
            row = await cur.fetchone()
        return int(row["seq"]) if row is not None else 0

    async def ping(self) -> bool:
        """Whether the database answers."""
        return await self._db.ping()

    async def close(self) -> None:
        """Close the pool."""
        await self._db.close()
