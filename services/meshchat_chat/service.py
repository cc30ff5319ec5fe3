"""The chat service's use cases. No grpc here: callers come in as :class:`Caller`, results go
out as domain objects, and failures as :mod:`meshchat_runtime.errors`."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from meshchat_chat.domain import (
    Caller,
    CaughtUp,
    Chat,
    ChatCursor,
    ChatPage,
    Heartbeat,
    Member,
    Message,
    MessagePage,
    NewMessage,
    SendOutcome,
    StreamEvent,
    UserRef,
    decode_chat_cursor,
    encode_chat_cursor,
    validate_chat_id,
    validate_client_message_id,
    validate_name,
    validate_page_size,
    validate_text,
    validate_username,
)
from meshchat_chat.fanout.hub import Hub, Signal
from meshchat_chat.store import Store
from meshchat_runtime.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from meshchat_runtime.timestamps import utc_now

__all__ = ["ChatLimits", "ChatService", "DeliveryObserver", "UserDirectory"]

REPLAY_PAGE = 500
MAX_MEMBERS_PER_REQUEST = 500
LOOKUP_CONCURRENCY = 16


class DeliveryObserver(Protocol):
    """Told how Connect streams deliver (the service's metrics)."""

    def delivered(self, seconds: float) -> None:
        """A live message reached a stream ``seconds`` after it was sent."""
        ...

    def caught_up(self, reason: str) -> None:
        """A stream read missed messages from the store: "connect", "overflow" or "gap"."""
        ...


class _Unobserved:
    """The observer of a service built without metrics."""

    def delivered(self, seconds: float) -> None:
        """Nothing to do."""

    def caught_up(self, reason: str) -> None:
        """Nothing to do."""


class UserDirectory(Protocol):
    """Resolves usernames to users, on behalf of a caller (the auth service's User API)."""

    async def find(self, username: str, caller: Caller) -> UserRef:
        """The user named ``username``; NotFound naming them when there is none."""
        ...


@dataclass(frozen=True, slots=True)
class ChatLimits:
    """Tunables of the use cases."""

    max_message_length: int = 4096
    heartbeat_interval: float = 30.0


@dataclass(slots=True)
class _Delivered:
    """The seq of the last message a Connect stream has yielded."""

    seq: int


class ChatService:
    """Chats, members and messages, with the permission rules of the chat API."""

    def __init__(
        self,
        store: Store,
        users: UserDirectory,
        hub: Hub,
        limits: ChatLimits,
        clock: Callable[[], float] = time.time,
        *,
        deliveries: DeliveryObserver | None = None,
    ) -> None:
        self._store = store
        self._users = users
        self._hub = hub
        self._limits = limits
        self._deliveries = deliveries or _Unobserved()
        self._clock = clock

    # -- chats ---------------------------------------------------------------------------

    async def create_chat(self, caller: Caller, name: str, member_usernames: Sequence[str]) -> Chat:
        """A new chat owned by the caller, with the named users as members."""
        validate_name(name)
        me = caller.principal
        wanted = list(dict.fromkeys(u for u in member_usernames if u != me.username))
        if len(wanted) > MAX_MEMBERS_PER_REQUEST:
            raise InvalidArgument(
                "member_usernames", f"must name at most {MAX_MEMBERS_PER_REQUEST} users"
            )
        for username in wanted:
            validate_username(username, "member_usernames")
        others = await self._find_users(wanted, caller)
        now = utc_now()
        members = [Member(me.user_id, me.username, now)]
        members += [Member(u.user_id, u.username, now) for u in others if u.user_id != me.user_id]
        chat = Chat(
            id=str(uuid.uuid4()),
            name=name,
            owner_id=me.user_id,
            created_at=now,
            last_seq=0,
            members=tuple(sorted(members, key=lambda m: (m.joined_at, m.username))),
        )
        await self._store.create_chat(chat)
        return chat

    async def _find_users(self, usernames: list[str], caller: Caller) -> list[UserRef]:
        limit = asyncio.Semaphore(LOOKUP_CONCURRENCY)

        async def find(username: str) -> UserRef:
            async with limit:
                return await self._users.find(username, caller)

        return list(await asyncio.gather(*(find(u) for u in usernames)))

    async def get_chat(self, caller: Caller, chat_id: str) -> Chat:
        """The chat, for its members and admins."""
        return await self._readable_chat(caller, chat_id)

    async def list_chats(self, caller: Caller, page_size: int, page_token: str) -> ChatPage:
        """The caller's chats, newest first, a page at a time."""
        size = validate_page_size(page_size, "page_size")
        cursor = decode_chat_cursor(page_token)
        chats = await self._store.list_chats(caller.principal.user_id, size + 1, cursor)
        next_token = ""
        if len(chats) > size:
            chats = chats[:size]
            last = chats[-1]
            next_token = encode_chat_cursor(ChatCursor(last.created_at, last.id))
        return ChatPage(tuple(chats), next_token)

    async def delete_chat(self, caller: Caller, chat_id: str) -> None:
        """Delete a chat: its owner or an admin."""
        chat = await self._existing_chat(chat_id)
        self._require_manager(caller, chat, "delete")
        if not await self._store.delete_chat(chat.id):
            raise NotFound(f"chat {chat.id} not found")
        self._hub.membership_changed(chat.id)

    # -- members -------------------------------------------------------------------------

    async def add_member(self, caller: Caller, chat_id: str, username: str) -> Chat:
        """Add a user to a chat: its owner or an admin."""
        chat = await self._existing_chat(chat_id)
        self._require_manager(caller, chat, "add members to")
        validate_username(username, "username")
        if chat.member_named(username) is not None:
            raise AlreadyExists(f"{username} is already a member of this chat")
        user = await self._users.find(username, caller)
        if not await self._store.add_member(
            chat.id, Member(user.user_id, user.username, utc_now())
        ):
            raise AlreadyExists(f"{username} is already a member of this chat")
        return await self._existing_chat(chat.id)

    async def remove_member(self, caller: Caller, chat_id: str, username: str) -> Chat:
        """Remove a member: the owner or an admin, or the member themselves (leaving)."""
        validate_username(username, "username")
        chat = await self._existing_chat(chat_id)
        me = caller.principal
        if username != me.username:
            self._require_manager(caller, chat, "remove members from")
        elif chat.member(me.user_id) is None and not me.is_admin:
            raise PermissionDenied("you are not a member of this chat")
        member = chat.member_named(username)
        if member is None:
            raise NotFound(f"{username} is not a member of this chat")
        if member.user_id == chat.owner_id:
            raise FailedPrecondition("the owner cannot leave the chat; delete the chat instead")
        if not await self._store.remove_member(chat.id, member.user_id):
            raise NotFound(f"{username} is not a member of this chat")
        self._hub.membership_changed(chat.id)
        return await self._existing_chat(chat.id)

    # -- messages ------------------------------------------------------------------------

    async def send_message(
        self, caller: Caller, chat_id: str, text: str, client_message_id: str
    ) -> Message:
        """Store a message from a member and hand it to the chat's live streams."""
        validate_chat_id(chat_id)
        validate_text(text, self._limits.max_message_length)
        validate_client_message_id(client_message_id)
        me = caller.principal
        result = await self._store.send_message(
            NewMessage(
                chat_id, UserRef(me.user_id, me.username), text, client_message_id, utc_now()
            )
        )
        if result.outcome is SendOutcome.NO_CHAT:
            raise NotFound(f"chat {chat_id} not found")
        if result.outcome is SendOutcome.NOT_MEMBER or result.message is None:
            raise PermissionDenied("only members may send messages to this chat")
        if result.outcome is SendOutcome.CREATED:
            self._hub.publish(result.message)
        return result.message

    async def list_messages(
        self,
        caller: Caller,
        chat_id: str,
        limit: int,
        before_seq: int | None = None,
        after_seq: int | None = None,
    ) -> MessagePage:
        """History in pages: the newest messages, those before ``before_seq`` or those
        after ``after_seq``; ascending by seq either way."""
        size = validate_page_size(limit, "limit")
        if before_seq is not None and after_seq is not None:
            raise InvalidArgument("cursor", "give before_seq or after_seq, not both")
        if before_seq is not None and before_seq < 1:
            raise InvalidArgument("before_seq", "must be at least 1")
        if after_seq is not None and after_seq < 0:
            raise InvalidArgument("after_seq", "must not be negative")
        chat = await self._readable_chat(caller, chat_id)
        if after_seq is not None:
            messages = await self._store.messages_after(chat.id, after_seq, size + 1)
            return MessagePage(tuple(messages[:size]), len(messages) > size)
        messages = await self._store.messages_before(chat.id, before_seq, size + 1)
        return MessagePage(tuple(messages[-size:]), len(messages) > size)

    async def connect(
        self, caller: Caller, chat_id: str, after_seq: int
    ) -> AsyncGenerator[StreamEvent, None]:
        """The chat's messages after ``after_seq``: the stored ones, then :class:`CaughtUp`,
        then live ones as they are sent, each once and in seq order, with a
        :class:`Heartbeat` when idle. Ends with Unauthenticated when the token expires."""
        if after_seq < 0:
            raise InvalidArgument("after_seq", "must not be negative")
        # Only the seq is kept: an idle stream should not hold the chat and its members.
        newest = (await self._readable_chat(caller, chat_id)).last_seq
        if after_seq > newest:
            raise InvalidArgument("after_seq", f"is beyond the chat's newest message ({newest})")
        expires_at = caller.principal.expires_at
        async with self._hub.subscribe(chat_id) as subscription:
            delivered = _Delivered(after_seq)
            self._deliveries.caught_up("connect")
            async for message in self._catch_up(chat_id, delivered):
                yield message
            yield CaughtUp(delivered.seq)
            while True:
                remaining = expires_at - self._clock()
                if remaining <= 0:
                    raise Unauthenticated(
                        "access token expired: refresh it and reconnect with after_seq"
                    )
                match item := await subscription.next(
                    min(self._limits.heartbeat_interval, remaining)
                ):
                    case None:
                        if self._clock() < expires_at:
                            yield Heartbeat()
                    case Signal.CLOSING:
                        raise Unavailable("the server is stopping: reconnect with after_seq")
                    case Signal.RECHECK:
                        await self._readable_chat(caller, chat_id)
                    case Message(seq=seq) as message if seq == delivered.seq + 1:
                        delivered.seq = seq
                        self._delivered(message)
                        yield message
                    case Message(seq=seq) if seq <= delivered.seq:
                        continue  # a catch-up delivered it already
                    case _:  # the queue overflowed, or messages are missing before this one
                        self._deliveries.caught_up("overflow" if item is Signal.LAGGING else "gap")
                        async for message in self._catch_up(chat_id, delivered):
                            self._delivered(message)
                            yield message

    def _delivered(self, message: Message) -> None:
        self._deliveries.delivered(self._clock() - message.created_at.timestamp())

    async def _catch_up(self, chat_id: str, delivered: _Delivered) -> AsyncIterator[Message]:
        """The stored messages after ``delivered.seq``, in pages, up to the newest one (which
        includes any message the hub has handed over: it was committed before that), moving
        ``delivered`` along."""
        while True:
            page = await self._store.messages_after(chat_id, delivered.seq, REPLAY_PAGE)
            for message in page:
                delivered.seq = message.seq
                yield message
            if len(page) < REPLAY_PAGE:
                return

    # -- rules ---------------------------------------------------------------------------

    async def _existing_chat(self, chat_id: str) -> Chat:
        validate_chat_id(chat_id)
        chat = await self._store.get_chat(chat_id)
        if chat is None:
            raise NotFound(f"chat {chat_id} not found")
        return chat

    async def _readable_chat(self, caller: Caller, chat_id: str) -> Chat:
        chat = await self._existing_chat(chat_id)
        me = caller.principal
        if chat.member(me.user_id) is None and not me.is_admin:
            raise PermissionDenied("you are not a member of this chat")
        return chat

    @staticmethod
    def _require_manager(caller: Caller, chat: Chat, action: str) -> None:
        me = caller.principal
        if me.user_id != chat.owner_id and not me.is_admin:
            raise PermissionDenied(f"only the chat's owner or an admin may {action} the chat")
