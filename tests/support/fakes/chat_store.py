"""The chat Store contract in memory."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field

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
    SendOutcome,
    SendResult,
)
from meshchat_runtime.errors import NotFound

__all__ = ["MemoryChatStore"]


@dataclass
class _Room:
    """One chat as stored: its fields, its members by user id, its messages in seq order."""

    chat: Chat
    members: dict[str, Member]
    messages: list[Message] = field(default_factory=list)

    def snapshot(self) -> Chat:
        members = sorted(self.members.values(), key=lambda m: (m.joined_at, m.username))
        last_seq = self.messages[-1].seq if self.messages else self.chat.last_seq
        return dataclasses.replace(self.chat, last_seq=last_seq, members=tuple(members))


class MemoryChatStore:
    """Chats, members and messages in dictionaries.

    Every change runs under one lock, as the real stores run it in one transaction.
    """

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._rooms: dict[str, _Room] = {}
        self._revocations: dict[str, Revocation] = {}
        self._position = 0
        self._open = True
        self._key_set: KeySet | None = None

    async def create_chat(self, chat: Chat, max_owned: int) -> bool:
        """Store a new chat with its members unless the owner owns ``max_owned`` already."""
        async with self._lock:
            owned = sum(r.chat.owner_id == chat.owner_id for r in self._rooms.values())
            if owned >= max_owned:
                return False
            self._rooms[chat.id] = _Room(chat, {m.user_id: m for m in chat.members})
            return True

    async def get_chat(self, chat_id: str) -> Chat | None:
        """The chat with its members, or None."""
        room = self._rooms.get(chat_id)
        return room.snapshot() if room is not None else None

    async def list_chats(self, user_id: str, limit: int, after: ChatCursor | None) -> list[Chat]:
        """The member's chats, newest first, after the cursor."""
        rooms = [r for r in self._rooms.values() if user_id in r.members]
        rooms.sort(key=lambda r: (r.chat.created_at, r.chat.id), reverse=True)
        if after is not None:
            bound = (after.created_at, after.chat_id)
            rooms = [r for r in rooms if (r.chat.created_at, r.chat.id) < bound]
        return [r.snapshot() for r in rooms[:limit]]

    async def delete_chat(self, chat_id: str) -> bool:
        """Delete the chat with its members and messages."""
        async with self._lock:
            return self._rooms.pop(chat_id, None) is not None

    async def add_member(self, chat_id: str, member: Member, max_members: int) -> AddOutcome:
        """Add a member unless already one or the chat is full; NotFound when it is gone."""
        async with self._lock:
            room = self._rooms.get(chat_id)
            if room is None:
                raise NotFound(f"chat {chat_id} not found")
            if member.user_id in room.members:
                return AddOutcome.ALREADY_MEMBER
            if len(room.members) >= max_members:
                return AddOutcome.CHAT_FULL
            room.members[member.user_id] = member
            return AddOutcome.ADDED

    async def remove_member(self, chat_id: str, user_id: str) -> bool:
        """Remove a member; False when not one."""
        async with self._lock:
            room = self._rooms.get(chat_id)
            return room is not None and room.members.pop(user_id, None) is not None

    async def send_message(self, message: NewMessage) -> SendResult:
        """Store the message with the chat's next seq, or return the first one of a retry."""
        async with self._lock:
            room = self._rooms.get(message.chat_id)
            if room is None:
                return SendResult(SendOutcome.NO_CHAT)
            if message.client_message_id:
                first = next(
                    (
                        m
                        for m in room.messages
                        if m.sender_id == message.sender.user_id
                        and m.client_message_id == message.client_message_id
                    ),
                    None,
                )
                if first is not None:
                    return SendResult(SendOutcome.DUPLICATE, first)
            if message.sender.user_id not in room.members:
                return SendResult(SendOutcome.NOT_MEMBER)
            stored = Message(
                chat_id=message.chat_id,
                seq=room.snapshot().last_seq + 1,
                sender_id=message.sender.user_id,
                sender_username=message.sender.username,
                text=message.text,
                client_message_id=message.client_message_id,
                created_at=message.created_at,
            )
            room.messages.append(stored)
            return SendResult(SendOutcome.CREATED, stored)

    async def messages_after(self, chat_id: str, after_seq: int, limit: int) -> list[Message]:
        """Up to ``limit`` messages with seq > ``after_seq``, ascending."""
        room = self._rooms.get(chat_id)
        messages = room.messages if room is not None else []
        return [m for m in messages if m.seq > after_seq][:limit]

    async def messages_before(
        self, chat_id: str, before_seq: int | None, limit: int
    ) -> list[Message]:
        """The newest ``limit`` messages with seq < ``before_seq``, ascending."""
        room = self._rooms.get(chat_id)
        messages = room.messages if room is not None else []
        older = [m for m in messages if before_seq is None or m.seq < before_seq]
        return older[-limit:] if limit > 0 else []

    async def save_key_set(self, key_set: KeySet) -> None:
        """Keep the key set unless a later one is kept."""
        if self._key_set is None or key_set.fetched_at >= self._key_set.fetched_at:
            self._key_set = key_set

    async def load_key_set(self) -> KeySet | None:
        """The key set kept last."""
        return self._key_set

    async def last_seq(self, chat_id: str) -> int | None:
        """The seq of the chat's newest message (0: none), or None when there is no chat."""
        room = self._rooms.get(chat_id)
        return room.snapshot().last_seq if room is not None else None

    async def apply_account_change(self, change: AccountChange) -> AppliedChange:
        """Merge the revocation; remove a deleted user from every chat, handing each chat
        they owned to the earliest remaining member or deleting it; move the position."""
        new = change.revocation
        async with self._lock:
            old = self._revocations.get(new.user_id)
            self._revocations[new.user_id] = old.merged(new) if old else new
            self._position = max(self._position, change.seq)
            if not new.deleted:
                return AppliedChange()
            changed, deleted = [], []
            for chat_id, room in list(self._rooms.items()):
                was_member = room.members.pop(new.user_id, None) is not None
                if room.chat.owner_id == new.user_id:
                    heirs = sorted(room.members.values(), key=lambda m: (m.joined_at, m.username))
                    if not heirs:
                        del self._rooms[chat_id]
                        deleted.append(chat_id)
                        continue
                    room.chat = dataclasses.replace(room.chat, owner_id=heirs[0].user_id)
                    changed.append(chat_id)
                elif was_member:
                    changed.append(chat_id)
            return AppliedChange(tuple(sorted(changed)), tuple(deleted))

    async def revocations(self) -> list[Revocation]:
        """Every user's revocation."""
        return list(self._revocations.values())

    async def account_event_position(self) -> int:
        """The number of the last account event applied."""
        return self._position

    async def ping(self) -> bool:
        """Whether the store is open."""
        return self._open

    async def close(self) -> None:
        """Mark the store closed: ``ping`` answers False from now on."""
        self._open = False
