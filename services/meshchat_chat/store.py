"""The chat service's storage: the Store protocol that both backends implement."""

from __future__ import annotations

from typing import Protocol

from meshchat_chat.domain import Chat, ChatCursor, Member, Message, NewMessage, SendResult
from meshchat_runtime.metrics import DatabaseMetrics
from meshchat_runtime.settings import DatabaseUrl

__all__ = ["NOTIFY_CHANNEL", "Store", "open_store"]

# The PostgreSQL channel on which a store announces "<chat id>:<seq>" after a message is
# committed and "<chat id>:members" after a chat's membership changed or it was deleted.
NOTIFY_CHANNEL = "meshchat_chat"
MIGRATION_LOCK = "meshchat_chat_migrations"


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

    async def delete_chat(self, chat_id: str) -> bool:
        """Delete the chat with its members and messages; False when it did not exist."""
        ...

    async def add_member(self, chat_id: str, member: Member) -> bool:
        """Add a member; False when already one. NotFound when the chat is gone."""
        ...

    async def remove_member(self, chat_id: str, user_id: str) -> bool:
        """Remove a member; False when not one."""
        ...

    async def send_message(self, message: NewMessage) -> SendResult:
        """Store a message from a member, numbered with the chat's next seq in the same
        transaction; or return the message stored first under the same
        (chat, sender, client_message_id) when that id is not empty."""
        ...

    async def messages_after(self, chat_id: str, after_seq: int, limit: int) -> list[Message]:
        """Up to ``limit`` messages with seq > ``after_seq``, ascending."""
        ...

    async def messages_before(
        self, chat_id: str, before_seq: int | None, limit: int
    ) -> list[Message]:
        """The newest ``limit`` messages with seq < ``before_seq`` (None: no bound), ascending."""
        ...

    async def last_seq(self, chat_id: str) -> int | None:
        """The seq of the chat's newest message (0: none), or None when there is no chat."""
        ...

    async def ping(self) -> bool:
        """Whether the database answers."""
        ...

    async def close(self) -> None:
        """Release the connections."""
        ...


async def open_store(
    url: DatabaseUrl, *, pool_size: int = 10, metrics: DatabaseMetrics | None = None
) -> Store:
    """Connect to the database named by ``url``, apply the migrations, return its store."""
    from meshchat_runtime.database import PostgresDatabase, SqliteDatabase, load_migrations

    if url.dialect == "sqlite":
        from meshchat_chat.sqlite_store import SqliteStore

        assert url.sqlite_path is not None
        sqlite = SqliteDatabase(url.sqlite_path, metrics)
        await sqlite.open(load_migrations("meshchat_chat", "sqlite"))
        return SqliteStore(sqlite)
    from meshchat_chat.postgres_store import PostgresStore

    postgres = PostgresDatabase(
        url, min_size=min(2, pool_size), max_size=pool_size, metrics=metrics
    )
    try:
        await postgres.open(load_migrations("meshchat_chat", "postgresql"), MIGRATION_LOCK)
    except BaseException:
        await postgres.close()
        raise
    return PostgresStore(postgres)
