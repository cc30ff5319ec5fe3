"""The chat Store contract in memory."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from meshchat_chat.domain import (
    AccountChange,
    AddOutcome,
    AppliedChange,
    Change,
    ChangeOutcome,
    ChangeResult,
    Chat,
    ChatCursor,
    Departure,
    DepartureReason,
    Entry,
    KeySet,
    Member,
    Message,
    NewChange,
    NewMessage,
    ReadState,
    Revocation,
    SendOutcome,
    SendResult,
    apply_change,
)
from meshchat_runtime.errors import NotFound

__all__ = ["MemoryChatStore"]


@dataclass
class _Room:
    """One chat as stored: its fields, its members by user id, its log (messages and
    changes) in seq order, and the members' read positions."""

    chat: Chat
    members: dict[str, Member]
    log: list[Entry] = field(default_factory=list)
    reads: dict[str, int] = field(default_factory=dict)

    def snapshot(self) -> Chat:
        members = sorted(self.members.values(), key=lambda m: (m.joined_at, m.username))
        last_seq = self.log[-1].seq if self.log else self.chat.last_seq
        return dataclasses.replace(self.chat, last_seq=last_seq, members=tuple(members))

    @property
    def messages(self) -> list[Message]:
        return [entry for entry in self.log if isinstance(entry, Message)]

    def current(self, entry: Entry) -> Entry:
        """The entry with its message as it stands now."""
        if isinstance(entry, Message):
            return entry
        stored = self.log[entry.message.seq - 1]
        assert isinstance(stored, Message)
        return dataclasses.replace(entry, message=stored)


class MemoryChatStore:
    """Chats, members and messages in dictionaries.

    Every change runs under one lock, as the real stores run it in one transaction.
    """

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._rooms: dict[str, _Room] = {}
        self._departures: dict[tuple[str, str], Departure] = {}
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

    async def delete_chat(self, chat_id: str, by_username: str, at: datetime) -> bool:
        """Delete the chat with its members and messages, keeping departures."""
        async with self._lock:
            room = self._rooms.pop(chat_id, None)
            if room is None:
                return False
            for user_id in room.members:
                self._departures[chat_id, user_id] = Departure(
                    chat_id, user_id, room.chat.name, DepartureReason.CHAT_DELETED, by_username, at
                )
            return True

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
            room.reads.pop(member.user_id, None)
            self._departures.pop((chat_id, member.user_id), None)
            return AddOutcome.ADDED

    async def remove_member(self, departure: Departure) -> bool:
        """Remove a member and keep the departure; False when not one."""
        async with self._lock:
            room = self._rooms.get(departure.chat_id)
            if room is None or room.members.pop(departure.user_id, None) is None:
                return False
            room.reads.pop(departure.user_id, None)
            self._departures[departure.chat_id, departure.user_id] = departure
            return True

    async def departure(self, chat_id: str, user_id: str) -> Departure | None:
        """Why the user is no longer a member, when they were one."""
        return self._departures.get((chat_id, user_id))

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
            room.log.append(stored)
            return SendResult(SendOutcome.CREATED, stored)

    async def change_message(self, change: NewChange) -> ChangeResult:
        """Edit or delete the message, the change taking the chat's next seq."""
        async with self._lock:
            room = self._rooms.get(change.chat_id)
            current = None
            if room is not None and 1 <= change.message_seq <= len(room.log):
                current = room.log[change.message_seq - 1]
            if room is None or not isinstance(current, Message):
                return ChangeResult(ChangeOutcome.NO_MESSAGE)
            updated = apply_change(current, change)
            if isinstance(updated, ChangeOutcome):
                return ChangeResult(updated, message=current)
            room.log[change.message_seq - 1] = updated
            stored = Change(
                change.chat_id,
                room.snapshot().last_seq + 1,
                change.kind,
                updated,
                change.actor,
                change.changed_at,
            )
            room.log.append(stored)
            return ChangeResult(ChangeOutcome.CHANGED, stored, updated)

    async def get_message(self, chat_id: str, seq: int) -> Message | None:
        """The message with this seq, or None."""
        room = self._rooms.get(chat_id)
        found = room.log[seq - 1] if room is not None and 1 <= seq <= len(room.log) else None
        return found if isinstance(found, Message) else None

    async def log_after(self, chat_id: str, after_seq: int, limit: int) -> list[Entry]:
        """Up to ``limit`` entries with seq > ``after_seq``, ascending, changes with their
        message as it stands now."""
        room = self._rooms.get(chat_id)
        if room is None:
            return []
        return [room.current(e) for e in room.log if e.seq > after_seq][:limit]

    async def mark_read(self, chat_id: str, user_id: str, seq: int) -> int | None:
        """The larger of the read position and ``seq``; None when not a member."""
        async with self._lock:
            room = self._rooms.get(chat_id)
            if room is None or user_id not in room.members:
                return None
            room.reads[user_id] = max(room.reads.get(user_id, 0), seq)
            return room.reads[user_id]

    async def read_states(self, user_id: str, chat_ids: Sequence[str]) -> dict[str, ReadState]:
        """The member's read state in each chat."""
        states = {}
        for chat_id in chat_ids:
            room = self._rooms.get(chat_id)
            if room is None or user_id not in room.members:
                continue
            read = room.reads.get(user_id, 0)
            messages = room.messages
            unread = sum(
                1
                for m in messages
                if m.seq > read and m.deleted_at is None and m.sender_id != user_id
            )
            last = messages[-1].created_at if messages else None
            states[chat_id] = ReadState(read, unread, last)
        return states

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
