"""Chats written straight into a chat store, for the store contract and the hub's tests."""

from __future__ import annotations

import uuid
from datetime import timedelta

from meshchat_chat.domain import Chat, Member, NewMessage, UserRef
from meshchat_chat.store import Store
from meshchat_runtime.timestamps import utc_now

__all__ = ["UNLIMITED", "message", "new_chat"]

# A quota no test reaches.
UNLIMITED = 1_000_000


async def new_chat(store: Store, *members: UserRef, name: str = "general", age: float = 0) -> Chat:
    """A chat owned by the first member, created ``age`` seconds ago; members joined in order."""
    created = utc_now() - timedelta(seconds=age)
    chat = Chat(
        id=str(uuid.uuid4()),
        name=name,
        owner_id=members[0].user_id,
        created_at=created,
        last_seq=0,
        members=tuple(
            Member(m.user_id, m.username, created + timedelta(microseconds=i))
            for i, m in enumerate(members)
        ),
    )
    assert await store.create_chat(chat, max_owned=UNLIMITED)
    return chat


def message(chat: Chat, sender: UserRef, text: str = "hi", client_id: str = "") -> NewMessage:
    """A message to send to ``chat``."""
    return NewMessage(chat.id, sender, text, client_id, utc_now())
