"""The auth service's storage: the AuthStore protocol, and open_store, which opens the backend
that a database URL names (``sqlite.py``, ``postgres.py`` beside this module; neither imports
this one)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from meshchat_auth.domain import LoginFailures, NewUser, RefreshToken, User, UserChanges
from meshchat_auth.store.postgres import PostgresAuthStore
from meshchat_auth.store.sqlite import SqliteAuthStore
from meshchat_runtime.metrics import DatabaseMetrics
from meshchat_runtime.settings import DatabaseUrl

__all__ = ["AuthStore", "open_store"]


class AuthStore(Protocol):
    """Users, refresh tokens and failed-login counters.

    Usernames and emails are unique regardless of case. Methods raise AlreadyExists for a
    duplicate username or email; they never half-apply a change.
    """

    async def create_user(self, user: NewUser, now: datetime) -> User:
        """Store a new account with a fresh id."""
        ...

    async def get_user(self, user_id: str) -> User | None:
        """The account with this id."""
        ...

    async def get_user_by_username(self, username: str) -> User | None:
        """The account with this username, ignoring case."""
        ...

    async def update_user(self, user_id: str, changes: UserChanges, now: datetime) -> User | None:
        """Apply ``changes``; None when the account does not exist."""
        ...

    async def delete_user(self, user_id: str) -> bool:
        """Delete the account and all of its refresh tokens; False when there was none."""
        ...

    async def list_users(self, after_username: str | None, limit: int) -> list[User]:
        """Accounts ordered by lowercase username, after ``after_username`` when given."""
        ...

    async def add_refresh_token(self, token: RefreshToken) -> None:
        """Store a new refresh token."""
        ...

    async def get_refresh_token(self, token_hash: str) -> RefreshToken | None:
        """The refresh token with this hash."""
        ...

    async def use_refresh_token(self, token_hash: str, now: datetime) -> bool:
        """Mark the token used, atomically: True only for the one call that used it while
        it was unused and not revoked."""
        ...

    async def revoke_family(self, family_id: str, now: datetime) -> None:
        """Revoke every token of a rotation family."""
        ...

    async def count_login_failure(
        self, username_key: str, now: datetime, window_seconds: float
    ) -> LoginFailures:
        """Count one failed login, starting a new window when the last one has passed."""
        ...

    async def login_failures(self, username_key: str) -> LoginFailures | None:
        """The current failure count and its window start, if any."""
        ...

    async def clear_login_failures(self, username_key: str) -> None:
        """Forget the failures of an account (after a successful login)."""
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
