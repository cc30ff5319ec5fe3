"""In-memory fakes of the services' ports, for the unit tier. Each one also runs through the
contract suite of the real implementations, so it cannot drift from them."""

from __future__ import annotations

from tests.support.fakes.auth_store import MemoryAuthStore
from tests.support.fakes.chat_store import MemoryChatStore
from tests.support.fakes.directory import MemoryUserDirectory

__all__ = ["MemoryAuthStore", "MemoryChatStore", "MemoryUserDirectory"]
