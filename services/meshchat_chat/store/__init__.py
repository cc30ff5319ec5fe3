"""The chat service's storage: the Store protocol, and open_store, which opens the backend
that a database URL names (``sqlite.py``, ``postgres.py`` beside this module; neither imports
this one)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from meshchat_chat.domain import (
    ChangeResult,
    Chat,
    ChatCursor,
    Departure,
    Entry,
    Member,
    Message,
    NewChange,
    NewMessage,
    ReadState,
    SendResult,
)
from meshchat_chat.store.postgres import PostgresStore
from meshchat_chat.store.sqlite import SqliteStore
from meshchat_runtime.settings import DatabaseUrl

__all__ = ["Store", "open_store"]


class Store(Protocol):
    """Chats, members and messages. Every method is atomic; none checks permissions."""

    async def create_chat(self, chat: Chat) -> None:
        """Store a new chat with its members (``last_seq`` is 0)."""
        ...

    async def get_chat(self, chat_id: str) -> Chat | None:
        """The chat with its members, or None."""
        ...

    async def list_chats(self, user_id: str, limit: int, after: ChatCursor | None) -> list[Chat]:
        """Up to ``limit`` chats of which ``user_id`` is a member, newest first, after
        ``after`` in that order."""
        ...

    async def delete_chat(self, chat_id: str, by_username: str, at: datetime) -> bool:
        """Delete the chat with its members and messages, keeping a departure (CHAT_DELETED
        by ``by_username``) for each member; False when it did not exist."""
        ...

    async def add_member(self, chat_id: str, member: Member) -> bool:
        """Add a member (forgetting their departure); False when already one. NotFound
        when the chat is gone."""
        ...

    async def remove_member(self, departure: Departure) -> bool:
        """Remove the departing member and keep ``departure``; False when not a member."""
        ...

    async def departure(self, chat_id: str, user_id: str) -> Departure | None:
        """Why ``user_id`` is no longer a member of the chat, when they were one."""
        ...

    async def send_message(self, message: NewMessage) -> SendResult:
        """Store a message from a member, numbered with the chat's next seq in the same
        transaction; or return the message stored first under the same
        (chat, sender, client_message_id) when that id is not empty."""
        ...

    async def change_message(self, change: NewChange) -> ChangeResult:
        """Edit or delete a message, the change numbered with the chat's next seq in the same
        transaction (a deletion erases the text). Nothing is stored unless CHANGED."""
        ...

    async def get_message(self, chat_id: str, seq: int) -> Message | None:
        """The message with this seq (not a change), or None."""
        ...

    async def log_after(self, chat_id: str, after_seq: int, limit: int) -> list[Entry]:
        """Up to ``limit`` entries (messages and changes) with seq > ``after_seq``,
        ascending; every change carries its message as it stands now."""
        ...

    async def messages_after(self, chat_id: str, after_seq: int, limit: int) -> list[Message]:
        """Up to ``limit`` messages (not changes) with seq > ``after_seq``, ascending."""
        ...

    async def messages_before(
        self, chat_id: str, before_seq: int | None, limit: int
    ) -> list[Message]:
        """The newest ``limit`` messages (not changes) with seq < ``before_seq`` (None: no
        bound), ascending."""
        ...

    async def mark_read(self, chat_id: str, user_id: str, seq: int) -> int | None:
        """Move the member's read position to ``seq`` unless it is beyond already (an atomic
        maximum); the position after that, or None when not a member."""
        ...

    async def read_states(self, user_id: str, chat_ids: Sequence[str]) -> dict[str, ReadState]:
        """The member's read state in each of the chats of which they are a member."""
        ...

    async def last_seq(self, chat_id: str) -> int | None:
        """The seq of the chat's newest entry (0: none), or None when there is no chat."""
        ...

    async def ping(self) -> bool:
        """Whether the database answers."""
        ...

    async def close(self) -> None:
        """Release the connections."""
        ...


async def open_store(url: DatabaseUrl, *, pool_size: int = 10) -> Store:
    """Connect to the database named by ``url``, apply the migrations, return its store."""
    if url.dialect == "sqlite":
        assert url.sqlite_path is not None
        return await SqliteStore.open(url.sqlite_path)
    return await PostgresStore.open(url, pool_size=pool_size)
