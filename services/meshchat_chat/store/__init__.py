"""The chat service's storage: the Store protocol, and open_store, which opens the backend
that a database URL names (``sqlite.py``, ``postgres.py`` beside this module; neither imports
this one)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from meshchat_chat.domain import (
    AccountChange,
    AddOutcome,
    AppliedChange,
    ChangeResult,
    Chat,
    ChatCursor,
    Departure,
    Entry,
    KeySet,
    Member,
    Message,
    NewChange,
    NewMessage,
    ReadState,
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

    async def delete_chat(self, chat_id: str, by_username: str, at: datetime) -> bool:
        """Delete the chat with its members and messages, keeping a departure (CHAT_DELETED
        by ``by_username``) for each member; False when it did not exist."""
        ...

    async def add_member(self, chat_id: str, member: Member, max_members: int) -> AddOutcome:
        """Add a member unless already one or the chat has ``max_members`` (the count and
        the insert are one atomic step), forgetting their departure. NotFound when the chat is gone."""
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
