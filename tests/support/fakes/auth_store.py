"""The AuthStore contract in memory."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

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
from meshchat_runtime.errors import AlreadyExists

__all__ = ["MemoryAuthStore"]


@dataclasses.dataclass(slots=True)
class _Family:
    family: RefreshFamily
    revoked_at: datetime | None = None


@dataclasses.dataclass(slots=True)
class _Token:
    token: RefreshToken
    used_at: datetime | None = None
    successor_hash: str | None = None
    successor_sealed: bytes | None = None


class MemoryAuthStore:
    """Users, refresh families and tokens, and login attempts in dictionaries.

    Every change runs under one lock, as the real stores run it in one transaction, so a
    change that awaits in the middle can never interleave with another.
    """

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._users: dict[str, User] = {}
        self._families: dict[str, _Family] = {}
        self._tokens: dict[str, _Token] = {}
        self._attempts: dict[str, tuple[int, datetime]] = {}
        self._events: list[AccountEvent] = []
        self._open = True

    def _record(
        self, user_id: str, kind: AccountEventKind, now: datetime, kept_session_id: str = ""
    ) -> None:
        seq = len(self._events) + 1
        self._events.append(AccountEvent(seq, user_id, kind, now, kept_session_id))

    def _check_unique(self, username: str, email: str, except_id: str = "") -> None:
        for other in self._users.values():
            if other.id == except_id:
                continue
            if other.username.lower() == username.lower():
                raise AlreadyExists("a user with this username already exists")
            if email and other.email.lower() == email.lower():
                raise AlreadyExists("a user with this email already exists")

    async def create_user(self, user: NewUser, now: datetime) -> User:
        """Store a new account with a fresh id."""
        async with self._lock:
            self._check_unique(user.username, user.email)
            created = User(
                str(uuid.uuid4()),
                user.username,
                user.email,
                user.role,
                user.password_hash,
                now,
                now,
            )
            self._users[created.id] = created
            return created

    async def get_user(self, user_id: str) -> User | None:
        """The account with this id."""
        return self._users.get(user_id)

    async def get_user_with_session(
        self, user_id: str, session_id: str
    ) -> tuple[User, bool] | None:
        """The account and whether the login ``session_id`` is revoked."""
        user = self._users.get(user_id)
        if user is None:
            return None
        family = self._families.get(session_id)
        return user, family is not None and family.revoked_at is not None

    async def get_user_by_username(self, username: str) -> User | None:
        """The account with this username, ignoring case."""
        key = username.lower()
        return next((u for u in self._users.values() if u.username.lower() == key), None)

    async def get_users_by_usernames(self, usernames: Sequence[str]) -> list[User]:
        """The accounts with these usernames, ignoring case."""
        keys = {u.lower() for u in usernames}
        return [u for u in self._users.values() if u.username.lower() in keys]

    async def update_user(self, user_id: str, changes: UserChanges, now: datetime) -> User | None:
        """Apply ``changes``; None when the account does not exist."""
        async with self._lock:
            user = self._users.get(user_id)
            if user is None:
                return None
            email = user.email if changes.email is None else changes.email
            self._check_unique(user.username, email, except_id=user_id)
            updated = dataclasses.replace(
                user,
                email=email,
                password_hash=(
                    user.password_hash if changes.password_hash is None else changes.password_hash
                ),
                role=user.role if changes.role is None else changes.role,
                updated_at=now,
            )
            self._users[user_id] = updated
            for kind, kept_session in change_events(changes, user.role):
                self._record(user_id, kind, now, kept_session)
            if changes.revoke_families:
                for family in self._families.values():
                    kept = family.family.family_id == changes.keep_family
                    if family.family.user_id == user_id and not kept:
                        family.revoked_at = family.revoked_at or now
            return updated

    async def delete_user(self, user_id: str, now: datetime) -> bool:
        """Delete the account and all of its refresh families, recording the event."""
        async with self._lock:
            if self._users.pop(user_id, None) is None:
                return False
            self._record(user_id, AccountEventKind.DELETED, now)
            for token_hash, token in list(self._tokens.items()):
                if token.token.user_id == user_id:
                    del self._tokens[token_hash]
            for family_id, family in list(self._families.items()):
                if family.family.user_id == user_id:
                    del self._families[family_id]
            return True

    async def list_users(self, after_username: str | None, limit: int) -> list[User]:
        """Accounts ordered by lowercase username, after ``after_username`` when given."""
        after = (after_username or "").lower()
        ordered = sorted(self._users.values(), key=lambda u: u.username.lower())
        return [u for u in ordered if u.username.lower() > after][:limit]

    async def start_family(self, family: RefreshFamily, first: RefreshToken) -> None:
        """Store a new family with its first refresh token."""
        async with self._lock:
            self._families[family.family_id] = _Family(family)
            self._tokens[first.token_hash] = _Token(first)

    async def rotate_refresh_token(
        self,
        token_hash: str,
        successor_hash: str,
        successor_sealed: bytes,
        now: datetime,
        grace_seconds: float,
    ) -> Rotation:
        """Read, decide and apply under the lock."""
        async with self._lock:
            token = self._tokens.get(token_hash)
            if token is None:
                return Rotation(RotationOutcome.UNKNOWN)
            family = self._families[token.token.family_id]
            successor = self._tokens.get(token.successor_hash or "")
            stored = StoredRotation(
                family_id=family.family.family_id,
                user_id=family.family.user_id,
                family_expires_at=family.family.expires_at,
                family_revoked=family.revoked_at is not None,
                used_at=token.used_at,
                successor_sealed=token.successor_sealed,
                successor_used=successor is not None and successor.used_at is not None,
            )
            outcome = decide_rotation(stored, now, grace_seconds)
            if outcome is RotationOutcome.ROTATED:
                for other in self._tokens.values():
                    if other.successor_hash == token_hash:
                        other.successor_sealed = None
                token.used_at = now
                token.successor_hash = successor_hash
                token.successor_sealed = successor_sealed
                self._tokens[successor_hash] = _Token(
                    RefreshToken(successor_hash, stored.family_id, stored.user_id, now)
                )
            elif outcome is RotationOutcome.REUSED:
                family.revoked_at = now
            return Rotation(
                outcome,
                stored.family_id,
                stored.user_id,
                stored.family_expires_at,
                stored.successor_sealed if outcome is RotationOutcome.REPEATED else None,
            )

    async def revoke_family_of(self, token_hash: str, now: datetime) -> None:
        """Revoke the family of this refresh token."""
        async with self._lock:
            token = self._tokens.get(token_hash)
            if token is not None:
                family = self._families[token.token.family_id]
                family.revoked_at = family.revoked_at or now

    async def log_out_everywhere(self, user_id: str, now: datetime) -> bool:
        """Revoke every family of the account and record the event, under the lock."""
        async with self._lock:
            if user_id not in self._users:
                return False
            for family in self._families.values():
                if family.family.user_id == user_id:
                    family.revoked_at = family.revoked_at or now
            self._record(user_id, AccountEventKind.LOGGED_OUT_EVERYWHERE, now)
            return True

    async def reserve_login_attempt(
        self, limits: Sequence[AttemptLimit], now: datetime, window_seconds: float
    ) -> float | None:
        """Check and count every key under the lock; expired records are dropped."""
        window = timedelta(seconds=window_seconds)
        async with self._lock:
            for key, (_, start) in list(self._attempts.items()):
                if start + window <= now:
                    del self._attempts[key]
            counts = {limit.key: self._attempts.get(limit.key, (0, now)) for limit in limits}
            waits = [
                (counts[limit.key][1] + window - now).total_seconds()
                for limit in limits
                if counts[limit.key][0] >= limit.limit
            ]
            if waits:
                return max(waits)
            for key, (count, start) in counts.items():
                self._attempts[key] = (count + 1, start)
            return None

    async def release_login_attempt(self, uncount: Sequence[str], forget: Sequence[str]) -> None:
        """Take a reserved attempt back."""
        async with self._lock:
            for key in uncount:
                if key in self._attempts and self._attempts[key][0] > 0:
                    count, start = self._attempts[key]
                    self._attempts[key] = (count - 1, start)
            for key in forget:
                self._attempts.pop(key, None)

    async def account_events(self, after_seq: int, limit: int) -> list[AccountEvent]:
        """The events after ``after_seq``, oldest first."""
        return self._events[max(after_seq, 0) : max(after_seq, 0) + limit]

    async def last_account_event_seq(self) -> int:
        """The newest event's number."""
        return len(self._events)

    async def ping(self) -> bool:
        """Whether the store is open."""
        return self._open

    async def close(self) -> None:
        """Mark the store closed: ``ping`` answers False from now on."""
        self._open = False
