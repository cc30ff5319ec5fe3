"""The AuthStore contract in memory."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import datetime, timedelta

from meshchat_auth.domain import LoginFailures, NewUser, RefreshToken, User, UserChanges
from meshchat_runtime.errors import AlreadyExists

__all__ = ["MemoryAuthStore"]


class MemoryAuthStore:
    """Users, refresh tokens and login failures in dictionaries.

    Every change runs under one lock, as the real stores run it in one transaction, so a
    change that awaits in the middle can never interleave with another.
    """

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._users: dict[str, User] = {}
        self._tokens: dict[str, RefreshToken] = {}
        self._failures: dict[str, LoginFailures] = {}
        self._open = True

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

    async def get_user_by_username(self, username: str) -> User | None:
        """The account with this username, ignoring case."""
        key = username.lower()
        return next((u for u in self._users.values() if u.username.lower() == key), None)

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
            return updated

    async def delete_user(self, user_id: str) -> bool:
        """Delete the account and all of its refresh tokens."""
        async with self._lock:
            if self._users.pop(user_id, None) is None:
                return False
            for token_hash, token in list(self._tokens.items()):
                if token.user_id == user_id:
                    del self._tokens[token_hash]
            return True

    async def list_users(self, after_username: str | None, limit: int) -> list[User]:
        """Accounts ordered by lowercase username, after ``after_username`` when given."""
        after = (after_username or "").lower()
        ordered = sorted(self._users.values(), key=lambda u: u.username.lower())
        return [u for u in ordered if u.username.lower() > after][:limit]

    async def add_refresh_token(self, token: RefreshToken) -> None:
        """Store a new refresh token."""
        async with self._lock:
            self._tokens[token.token_hash] = token

    async def get_refresh_token(self, token_hash: str) -> RefreshToken | None:
        """The refresh token with this hash."""
        return self._tokens.get(token_hash)

    async def use_refresh_token(self, token_hash: str, now: datetime) -> bool:
        """Mark the token used if it is unused and not revoked."""
        async with self._lock:
            token = self._tokens.get(token_hash)
            if token is None or token.used_at is not None or token.revoked_at is not None:
                return False
            self._tokens[token_hash] = dataclasses.replace(token, used_at=now)
            return True

    async def revoke_family(self, family_id: str, now: datetime) -> None:
        """Revoke every token of a rotation family."""
        async with self._lock:
            for token_hash, token in list(self._tokens.items()):
                if token.family_id == family_id and token.revoked_at is None:
                    self._tokens[token_hash] = dataclasses.replace(token, revoked_at=now)

    async def count_login_failure(
        self, username_key: str, now: datetime, window_seconds: float
    ) -> LoginFailures:
        """Count one failed login, starting a new window when the last one has passed."""
        async with self._lock:
            current = self._failures.get(username_key)
            if current is None or current[1] + timedelta(seconds=window_seconds) <= now:
                counted = (1, now)
            else:
                counted = (current[0] + 1, current[1])
            self._failures[username_key] = counted
            return counted

    async def login_failures(self, username_key: str) -> LoginFailures | None:
        """The current failure count and its window start, if any."""
        return self._failures.get(username_key)

    async def clear_login_failures(self, username_key: str) -> None:
        """Forget the failures of an account."""
        async with self._lock:
            self._failures.pop(username_key, None)

    async def ping(self) -> bool:
        """Whether the store is open."""
        return self._open

    async def close(self) -> None:
        """Mark the store closed: ``ping`` answers False from now on."""
        self._open = False
