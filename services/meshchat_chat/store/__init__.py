"""The chat service's storage: the Store protocol, and open_store, which opens the backend
that a database URL names (``sqlite.py``, ``postgres.py`` beside this module; neither imports
this one)."""

from __future__ import annotations

from typing import Protocol

from meshchat_chat.domain import (
    AccountChange,
    AddOutcome,
    AppliedChange,
    Chat,
    ChatCursor,
    KeySet,
    Member,
    Message,
    NewMessage,
    Revocation,
    SendResult,
)
from meshchat_chat.store.postgres import PostgresStore
from meshchat_chat.store.sqlite import SqliteStore
from meshchat_runtime.metrics import DatabaseMetrics
from meshchat_runtime.settings import DatabaseUrl

__all__ = ["Store", "open_store"]


class Store(Protocol):
    """Chats, members and messages. Every method is atomic; none checks permissions."""

    async def create_chat(self, chat: Chat, max_owned: int) -> bool:
        """Store a new chat with its members (``last_seq`` is 0), unless its owner owns
        ``max_owned`` chats already (False); the count and the insert are one atomic step."""
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

    async def add_member(self, chat_id: str, member: Member, max_members: int) -> AddOutcome:
        """Add a member unless already one or the chat has ``max_members`` (the count and
        the insert are one atomic step). NotFound when the chat is gone."""
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

    async def apply_account_change(self, change: AccountChange) -> AppliedChange:
        """Apply an account event in one transaction: merge its revocation into the user's
        (:meth:`~meshchat_chat.domain.Revocation.merged`); for a deleted user, remove their
        memberships and hand each chat they owned to its earliest remaining member (by
        joined time, then username), deleting the chat when none remains; and move the
        position to ``change.seq`` (never back). Applying it again changes nothing."""
        ...

    async def revocations(self) -> list[Revocation]:
        """Every user's revocation."""
        ...

    async def account_event_position(self) -> int:
        """The number of the last account event applied; 0 before the first."""

    async def save_key_set(self, key_set: KeySet) -> None:
        """Keep the auth service's key set, unless the one kept was fetched later."""
        ...

    async def load_key_set(self) -> KeySet | None:
        """The key set kept last, or None."""
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
    """Connect to the database named by ``url``, apply the migrations, return its store
    (timing its operations into ``metrics`` when given)."""
    if url.dialect == "sqlite":
        assert url.sqlite_path is not None
        return await SqliteStore.open(url.sqlite_path, metrics)
    return await PostgresStore.open(url, pool_size=pool_size, metrics=metrics)
