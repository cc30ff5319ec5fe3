"""Chat's user directory (the auth service's User API) in memory."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from meshchat_chat.domain import Caller, UserRef
from meshchat_runtime.errors import NotFound

__all__ = ["MemoryUserDirectory"]


class MemoryUserDirectory:
    """Users by name, as the auth service would resolve them; records who asked."""

    def __init__(self) -> None:
        self._users: dict[str, UserRef] = {}
        self.lookups: list[tuple[tuple[str, ...], Caller]] = []

    def add(self, username: str) -> UserRef:
        """Sign up a user with a fresh id."""
        user = UserRef(str(uuid.uuid4()), username)
        self._users[username.lower()] = user
        return user

    async def resolve(self, usernames: Sequence[str], caller: Caller) -> list[UserRef]:
        """The users named, in the order given; NotFound naming the missing ones."""
        self.lookups.append((tuple(usernames), caller))
        missing = [u for u in usernames if u.lower() not in self._users]
        if missing:
            raise NotFound(f"users not found: {', '.join(repr(u) for u in missing)}")
        return [self._users[u.lower()] for u in usernames]
