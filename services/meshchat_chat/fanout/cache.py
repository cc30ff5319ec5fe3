"""The replica's cache of chats and their members, kept exact by the invalidations the hub
receives: this replica's own changes, and on PostgreSQL the announcements of every replica's
changes (``<chat id>:members``, ``<chat id>:<seq>``) that the listener hands over.

While announcements may be missed (the PostgreSQL listener is not connected) the cache is
suspended: every read goes to the store, and the cache starts empty once the listener is back.
A read from the store that overlaps an invalidation is not cached, so an invalidation is never
undone by an older read that finishes after it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

from meshchat_chat.domain import Chat

__all__ = ["ChatCache"]

DEFAULT_CAPACITY = 10_000


class ChatCache:
    """Chats by id, with their members and the seq of their newest message."""

    def __init__(self, *, active: bool, capacity: int = DEFAULT_CAPACITY) -> None:
        self._chats: dict[str, Chat] = {}
        self._active = active
        self._capacity = capacity
        # Bumped by every invalidation: a read that started before one is not cached.
        self._generation = 0
        self.hits = 0
        self.misses = 0

    async def get(self, chat_id: str, read: Callable[[str], Awaitable[Chat | None]]) -> Chat | None:
        """The chat, from the cache or else from ``read`` (the store)."""
        chat = self._chats.get(chat_id)
        if chat is not None:
            self.hits += 1
            return chat
        self.misses += 1
        generation = self._generation
        chat = await read(chat_id)
        if chat is not None and self._active and generation == self._generation:
            if len(self._chats) >= self._capacity:
                del self._chats[next(iter(self._chats))]
            self._chats[chat_id] = chat
        return chat

    def peek(self, chat_id: str) -> Chat | None:
        """The cached chat, or None when it is not cached."""
        return self._chats.get(chat_id)

    def forget(self, chat_id: str) -> None:
        """The chat's members changed or it was deleted."""
        self._generation += 1
        self._chats.pop(chat_id, None)

    def note_seq(self, chat_id: str, seq: int) -> None:
        """A message with ``seq`` was committed in the chat."""
        chat = self._chats.get(chat_id)
        if chat is None:
            # A read in flight may have seen the chat before this message.
            self._generation += 1
        elif seq > chat.last_seq:
            self._chats[chat_id] = dataclasses.replace(chat, last_seq=seq)

    def suspend(self) -> None:
        """Invalidations may be missed from now on: stop caching."""
        self._active = False
        self.forget_all()

    def resume(self) -> None:
        """Invalidations arrive again (and what was missed is unknown): start afresh."""
        self.forget_all()
        self._active = True

    def forget_all(self) -> None:
        """Drop every entry."""
        self._generation += 1
        self._chats.clear()
