"""Callers of the chat use cases, as the servicer makes them from a verified token."""

from __future__ import annotations

import time

from meshchat_chat.domain import Caller, UserRef
from meshchat_runtime.identity import Principal, Role
from tests.support.fakes.directory import MemoryUserDirectory

__all__ = ["caller_for", "person"]


def caller_for(user: UserRef, *, admin: bool = False, expires_in: float = 300) -> Caller:
    """A caller acting as ``user`` with a token valid for ``expires_in`` seconds."""
    role = Role.ADMIN if admin else Role.USER
    principal = Principal(user.user_id, user.username, role, time.time() + expires_in)
    return Caller(principal, token=f"token-of-{user.username}")


def person(
    directory: MemoryUserDirectory, username: str, *, admin: bool = False, expires_in: float = 300
) -> Caller:
    """Sign ``username`` up in the directory; the caller acting as them."""
    return caller_for(directory.add(username), admin=admin, expires_in=expires_in)
