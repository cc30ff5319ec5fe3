"""Chat's user directory (the auth service's User API) in memory."""

from __future__ import annotations

import uuid

from meshchat_chat.domain import Caller, UserRef
from meshchat_runtime.errors import NotFound

__all__ = ["MemoryUserDirectory"]


class MemoryUserDirectory:
    """Users by name, as the auth service would resolve them; records who asked."""

    def __init__(self) -> None:
        self._users: dict[str, UserRef] = {}
        self.lookups: list[tuple[str, Caller]] = []

    def add(self, username: str) -> UserRef:
        """Sign up a user with a fresh id."""
        user = UserRef(str(uuid.uuid4()), username)
        self._users[username.lower()] = user
        return user

    async def find(self, username: str, caller: Caller) -> UserRef:
        """The user named ``username``; NotFound naming them when there is none."""
        self.lookups.append((username, caller))
        user = self._users.get(username.lower())
        if user is None:
            raise NotFound(f"user {username!r} not found")
        return user
