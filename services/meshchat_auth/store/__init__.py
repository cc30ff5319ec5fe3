"""The auth service's storage: the AuthStore protocol, and open_store, which opens the backend
that a database URL names (``sqlite.py``, ``postgres.py`` beside this module; neither imports
this one)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from meshchat_auth.domain import (
    AccountEvent,
    AttemptLimit,
    NewUser,
    RefreshFamily,
    RefreshToken,
    Rotation,
    User,
    UserChanges,
)
from meshchat_auth.store.postgres import PostgresAuthStore
from meshchat_auth.store.sqlite import SqliteAuthStore
from meshchat_runtime.metrics import DatabaseMetrics
from meshchat_runtime.settings import DatabaseUrl

__all__ = ["AuthStore", "open_store"]


class AuthStore(Protocol):
    """Users, refresh-token families and failed-login counters.

    Usernames and emails are unique regardless of case. Methods raise AlreadyExists for a
    duplicate username or email; they never half-apply a change.
    """

    async def create_user(self, user: NewUser, now: datetime) -> User:
        """Store a new account with a fresh id."""
        ...

    async def get_user(self, user_id: str) -> User | None:
        """The account with this id."""
        ...

    async def get_user_with_session(
        self, user_id: str, session_id: str
    ) -> tuple[User, bool] | None:
        """The account with this id and whether its login (refresh family) ``session_id``
        is revoked (False for an empty or unknown id), in one read; None when there is no
        such account."""
        ...

    async def get_user_by_username(self, username: str) -> User | None:
        """The account with this username, ignoring case."""
        ...

    async def get_users_by_usernames(self, usernames: Sequence[str]) -> list[User]:
        """The accounts with these usernames, ignoring case, each once, in no order."""
        ...

    async def update_user(self, user_id: str, changes: UserChanges, now: datetime) -> User | None:
        """Apply ``changes`` (revoking families when they say so) and record the account
        events of :func:`~meshchat_auth.domain.change_events` in one step; None when the
        account does not exist."""
        ...

    async def delete_user(self, user_id: str, now: datetime) -> bool:
        """Delete the account and all of its refresh families, and record its DELETED event;
        False when there was none."""
        ...

    async def list_users(self, after_username: str | None, limit: int) -> list[User]:
        """Accounts ordered by lowercase username, after ``after_username`` when given."""
        ...

    async def start_family(self, family: RefreshFamily, first: RefreshToken) -> None:
        """Store a new family (a login) with its first refresh token."""
        ...

    async def rotate_refresh_token(
        self,
        token_hash: str,
        successor_hash: str,
        successor_sealed: bytes,
        now: datetime,
        grace_seconds: float,
    ) -> Rotation:
        """Present a refresh token, as one atomic step: read it and its family under the
        family's lock, decide with :func:`~meshchat_auth.domain.decide_rotation`, and apply
        the outcome: ROTATED marks it used, keeps ``successor_sealed`` with it and stores
        the successor (issued ``now``) in its family, whose older sealed copy is no longer
        needed and is dropped; REUSED revokes the family. A revoked family never gains a
        token."""
        ...

    async def revoke_family_of(self, token_hash: str, now: datetime) -> None:
        """Revoke the family of this refresh token (nothing when it is unknown)."""
        ...

    async def log_out_everywhere(self, user_id: str, now: datetime) -> bool:
        """Revoke every refresh family of the account and record its LOGGED_OUT_EVERYWHERE
        event, in one step that no rotation of those families interleaves with (a revoked
        family never gains a token); False when there is no such account."""
        ...

    async def reserve_login_attempt(
        self, limits: Sequence[AttemptLimit], now: datetime, window_seconds: float
    ) -> float | None:
        """Count one password check under every key, atomically, before it is made: None
        when every count stays within its limit; otherwise nothing is counted and the
        seconds until the exhausted windows end are returned. A key's window starts at its
        first count and lasts ``window_seconds``; expired records are pruned on the way."""
        ...

    async def release_login_attempt(self, uncount: Sequence[str], forget: Sequence[str]) -> None:
        """Take a reserved attempt back: one count off each key of ``uncount``, the keys of
        ``forget`` deleted (a successful login clears its own account-and-address record)."""
        ...

    async def account_events(self, after_seq: int, limit: int) -> list[AccountEvent]:
        """Up to ``limit`` account events after ``after_seq``, oldest first. Events become
        visible in the order of their numbers: none is ever seen after a later one."""
        ...

    async def last_account_event_seq(self) -> int:
        """The newest account event's sequence number; 0 before the first."""
        ...

    async def ping(self) -> bool:
        """Whether the database answers."""
        ...

    async def close(self) -> None:
        """Release the database."""
        ...


async def open_store(url: DatabaseUrl, metrics: DatabaseMetrics | None = None) -> AuthStore:
    """Connect to the database named by ``url``, apply the migrations, return its store
    (timing its operations into ``metrics`` when given)."""
    if url.dialect == "sqlite":
        assert url.sqlite_path is not None
        return await SqliteAuthStore.open(url.sqlite_path, metrics)
    return await PostgresAuthStore.open(url, metrics)
