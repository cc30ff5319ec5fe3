"""The chat service's use cases. No grpc here: callers come in as :class:`Caller`, results go
out as domain objects, and failures as :mod:`meshchat_runtime.errors`."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from meshchat_chat.domain import (
    AccountChange,
    AddOutcome,
    AppliedChange,
    Caller,
    CaughtUp,
    ChangeKind,
    ChangeOutcome,
    Chat,
    ChatCursor,
    ChatPage,
    Departure,
    DepartureReason,
    Heartbeat,
    Member,
    Message,
    MessageBatch,
    MessagePage,
    NewChange,
    NewMessage,
    ReadState,
    Revocation,
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
)
from meshchat_chat.fanout.cache import ChatCache
from meshchat_chat.fanout.hub import BATCH_MAX, Hub, Signal, Subscription
from meshchat_chat.quotas import SendRate, StreamSlots
from meshchat_chat.store import Store
from meshchat_runtime.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from meshchat_runtime.identity import Principal
from meshchat_runtime.timestamps import utc_now
from meshchat_runtime.usernames import LOOKUP_MAX, validate_username

__all__ = ["ChatLimits", "ChatService", "DeliveryObserver", "TokenRevocations", "UserDirectory"]

REPLAY_PAGE = 500
_SENDERS = "only members may send messages to this chat"
MAX_MEMBERS_PER_REQUEST = LOOKUP_MAX
# A quota of chats or members frees up only when someone deletes or removes: retrying soon
# is pointless, so clients are told to wait a minute.
QUOTA_RETRY_AFTER = 60.0


class DeliveryObserver(Protocol):
    """Told how Connect streams deliver (the service's metrics)."""

    def delivered(self, seconds: float) -> None:
        """A message reached a caught-up stream ``seconds`` after it was sent."""
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


def _changed(message: Message) -> bool:
    """Whether the message was edited or deleted since it was sent: its text is no longer
    what a retry of the send resends."""
    return message.edited_at is not None or message.deleted_at is not None


class UserDirectory(Protocol):
    """Resolves usernames to users, on behalf of a caller (the auth service's User API)."""

    async def resolve(self, usernames: Sequence[str], caller: Caller) -> list[UserRef]:
        """The users named, in the order given, all in one request to the auth service;
        NotFound naming those that do not exist."""
        ...


class TokenRevocations(Protocol):
    """The access tokens refused although they verify (account events of the auth service)."""

    def add(self, revocation: Revocation) -> None:
        """Refuse the tokens that ``revocation`` names, from now on."""
        ...

    def check(self, principal: Principal) -> None:
        """Raise Unauthenticated when ``principal``'s token is revoked."""
        ...


@dataclass(frozen=True, slots=True)
class ChatLimits:
    """Tunables and quotas of the use cases (the defaults are the settings' defaults)."""

    max_message_length: int = 4096
    heartbeat_interval: float = 30.0
    max_streams_per_user: int = 16
    send_burst: int = 20
    send_interval: float = 0.2
    max_chats_per_user: int = 1000
    max_members_per_chat: int = 1000


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
        revocations: TokenRevocations,
        clock: Callable[[], float] = time.time,
        *,
        deliveries: DeliveryObserver | None = None,
        cache: ChatCache | None = None,
        settle: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        self._users = users
        self._hub = hub
        self._limits = limits
        self._revocations = revocations
        self._deliveries = deliveries or _Unobserved()
        self._clock = clock
        # Without a cache, an inactive one: every read goes to the store.
        self._cache = cache if cache is not None else ChatCache(active=False)
        # Where replicas cache chats: waits until every replica has taken in the changes
        # announced so far.
        self._settle = settle
        self._streams_of: dict[str, set[Subscription]] = {}
        self._streams = StreamSlots(limits.max_streams_per_user)
        self._send_rate = SendRate(limits.send_interval, limits.send_burst, clock)

    # -- chats ---------------------------------------------------------------------------

    async def create_chat(self, caller: Caller, name: str, member_usernames: Sequence[str]) -> Chat:
        """A new chat owned by the caller, with the named users as members."""
        validate_name(name)
        me = caller.principal
        # Usernames are unique regardless of case: BOB is bob, and is looked up once.
        wanted = list(
            {u.lower(): u for u in member_usernames if u.lower() != me.username.lower()}.values()
        )
        if len(wanted) > MAX_MEMBERS_PER_REQUEST:
            raise InvalidArgument(
                "member_usernames", f"must name at most {MAX_MEMBERS_PER_REQUEST} users"
            )
        if len(wanted) + 1 > self._limits.max_members_per_chat:
            raise self._chat_full()
        for username in wanted:
            validate_username(username, "member_usernames")
        others = await self._users.resolve(wanted, caller) if wanted else []
        now = utc_now()
        by_id = {me.user_id: Member(me.user_id, me.username, now)}
        for user in others:
            by_id.setdefault(user.user_id, Member(user.user_id, user.username, now))
        members = list(by_id.values())
        chat = Chat(
            id=str(uuid.uuid4()),
            name=name,
            owner_id=me.user_id,
            created_at=now,
            last_seq=0,
            members=tuple(sorted(members, key=lambda m: (m.joined_at, m.username))),
        )
        if not await self._store.create_chat(chat, self._limits.max_chats_per_user):
            raise ResourceExhausted(
                f"you own {self._limits.max_chats_per_user} chats, the most one user may; "
                "delete one first",
                QUOTA_RETRY_AFTER,
            )
        return chat

    def _chat_full(self) -> ResourceExhausted:
        return ResourceExhausted(
            f"a chat has at most {self._limits.max_members_per_chat} members",
            QUOTA_RETRY_AFTER,
        )

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
        states = await self._store.read_states(caller.principal.user_id, [c.id for c in chats])
        return ChatPage(tuple(chats), next_token, states)

    async def delete_chat(self, caller: Caller, chat_id: str) -> None:
        """Delete a chat: its owner or an admin."""
        chat = await self._stored_chat(chat_id)
        self._require_manager(caller, chat, "delete")
        if not await self._store.delete_chat(chat.id, caller.principal.username, utc_now()):
            raise NotFound(f"chat {chat.id} not found")
        await self._members_changed(chat.id)

    # -- members -------------------------------------------------------------------------

    async def add_member(self, caller: Caller, chat_id: str, username: str) -> Chat:
        """Add a user to a chat: its owner or an admin."""
        chat = await self._stored_chat(chat_id)
        self._require_manager(caller, chat, "add members to")
        validate_username(username, "username")
        if chat.member_named(username) is not None:
            raise AlreadyExists(f"{username} is already a member of this chat")
        if len(chat.members) >= self._limits.max_members_per_chat:
            raise self._chat_full()
        (user,) = await self._users.resolve([username], caller)
        outcome = await self._store.add_member(
            chat.id,
            Member(user.user_id, user.username, utc_now()),
            self._limits.max_members_per_chat,
        )
        if outcome is AddOutcome.ALREADY_MEMBER:
            raise AlreadyExists(f"{username} is already a member of this chat")
        if outcome is AddOutcome.CHAT_FULL:
            raise self._chat_full()
        await self._members_changed(chat.id)
        return await self._stored_chat(chat.id)

    async def remove_member(self, caller: Caller, chat_id: str, username: str) -> Chat:
        """Remove a member: the owner or an admin, or the member themselves (leaving)."""
        validate_username(username, "username")
        chat = await self._stored_chat(chat_id)
        me = caller.principal
        if username.lower() != me.username.lower():
            self._require_manager(caller, chat, "remove members from")
        elif chat.member(me.user_id) is None and not me.is_admin:
            raise PermissionDenied("you are not a member of this chat")
        member = chat.member_named(username)
        if member is None:
            raise NotFound(f"{username} is not a member of this chat")
        if member.user_id == chat.owner_id:
            raise FailedPrecondition("the owner cannot leave the chat; delete the chat instead")
        reason = DepartureReason.LEFT if member.user_id == me.user_id else DepartureReason.REMOVED
        departure = Departure(chat.id, member.user_id, chat.name, reason, me.username, utc_now())
        if not await self._store.remove_member(departure):
            raise NotFound(f"{username} is not a member of this chat")
        await self._members_changed(chat.id)
        return await self._stored_chat(chat.id)

    # -- messages ------------------------------------------------------------------------

    async def send_message(
        self, caller: Caller, chat_id: str, text: str, client_message_id: str
    ) -> Message:
        """Store a message from a member and hand it to the chat's live streams."""
        validate_chat_id(chat_id)
        validate_text(text, self._limits.max_message_length)
        validate_client_message_id(client_message_id)
        me = caller.principal
        self._send_rate.take(me.user_id)
        # The store checks membership in the send's own statement; a cached chat turns
        # away those who are no members without a write.
        known = self._cache.peek(chat_id)
        if known is not None and known.member(me.user_id) is None:
            raise await self._no_access(caller, chat_id, gone=False, not_member=_SENDERS)
        # The hub holds the chat's announcements until the send is published: most often
        # they are its own, which it then need not read back from the store.
        with self._hub.sending(chat_id):
            result = await self._store.send_message(
                NewMessage(
                    chat_id, UserRef(me.user_id, me.username), text, client_message_id, utc_now()
                )
            )
            if result.outcome is SendOutcome.CREATED and result.message is not None:
                self._hub.publish(result.message)
        if result.outcome is SendOutcome.NO_CHAT or result.message is None:
            raise await self._no_access(
                caller, chat_id, gone=result.outcome is SendOutcome.NO_CHAT, not_member=_SENDERS
            )
        duplicate = result.outcome is not SendOutcome.CREATED
        if duplicate and result.message.text != text and not _changed(result.message):
            raise FailedPrecondition(
                f"client_message_id {client_message_id!r} was already used for a message with "
                f"different text (seq {result.message.seq}): a retry must resend the same "
                "text, and a new message needs a new id"
            )
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
        # The slot is taken first, so that a user at the cap costs no database read.
        with self._streams.hold(caller.principal.user_id):
            # Closed with this generator, so that its subscription ends with the stream.
            async with contextlib.aclosing(self._stream(caller, chat_id, after_seq)) as events:
                async for event in events:
                    yield event

    async def _stream(
        self, caller: Caller, chat_id: str, after_seq: int
    ) -> AsyncGenerator[StreamEvent, None]:
        # Only the seq is kept: an idle stream should not hold the chat and its members.
        newest = (await self._readable_chat(caller, chat_id)).last_seq
        if after_seq > newest:
            # The cache may not have heard of a message just sent on another replica.
            newest = (await self._stored_chat(chat_id)).last_seq
        if after_seq > newest:
            raise InvalidArgument("after_seq", f"is beyond the chat's newest message ({newest})")
        expires_at = caller.principal.expires_at
        async with (
            self._hub.subscribe(chat_id) as subscription,
            self._tracked(caller.principal.user_id, subscription),
        ):
            delivered = _Delivered(after_seq)
            self._deliveries.caught_up("connect")
            async for batch in self._catch_up(chat_id, delivered):
                yield batch
            yield CaughtUp(delivered.seq)
            while True:
                remaining = expires_at - self._clock()
                if remaining <= 0:
                    raise Unauthenticated(
                        "access token expired: refresh it and reconnect with after_seq"
                    )
                wait = min(self._limits.heartbeat_interval, remaining)
                match await subscription.next(delivered.seq, wait):
                    case None:
                        if self._clock() < expires_at:
                            yield Heartbeat()
                    case Signal.CLOSING:
                        raise Unavailable("the server is stopping: reconnect with after_seq")
                    case Signal.RECHECK:
                        self._revocations.check(caller.principal)
                        await self._readable_chat(caller, chat_id)
                    case Signal.LAGGING:
                        self._deliveries.caught_up("overflow")
                        async for batch in self._catch_up(chat_id, delivered):
                            self._delivered(batch)
                            yield batch
                    case tuple() as messages:
                        delivered.seq = messages[-1].seq
                        batch = MessageBatch(messages)
                        self._delivered(batch)
                        yield batch

    @contextlib.asynccontextmanager
    async def _tracked(self, user_id: str, subscription: Subscription) -> AsyncIterator[None]:
        """Know the user's open streams, to end them when the user's tokens are revoked."""
        streams = self._streams_of.setdefault(user_id, set())
        streams.add(subscription)
        try:
            yield
        finally:
            streams.discard(subscription)
            if not streams and self._streams_of.get(user_id) is streams:
                del self._streams_of[user_id]

    # -- account events ------------------------------------------------------------------

    async def apply_account_change(self, change: AccountChange) -> AppliedChange:
        """Apply an account event of the auth service: its tokens are refused at once (also
        while the database is away), the user's open streams check their token again and
        end, and the store applies the change (a deleted user leaves every chat)."""
        self._revocations.add(change.revocation)
        for subscription in self._streams_of.get(change.user_id, ()):
            subscription.flag_recheck()
        applied = await self._store.apply_account_change(change)
        for chat_id in (*applied.changed_chats, *applied.deleted_chats):
            self._hub.membership_changed(chat_id)
        return applied

    async def restore_account_events(self) -> int:
        """Refuse the tokens that the stored revocations name; the number of the last
        account event applied (0: none yet). The number is read first, so every event up to
        it is among the revocations read after it."""
        position = await self._store.account_event_position()
        for revocation in await self._store.revocations():
            self._revocations.add(revocation)
        return position

    def _delivered(self, batch: MessageBatch) -> None:
        now = self._clock()
        for entry in batch.messages:
            made = entry.created_at if isinstance(entry, Message) else entry.changed_at
            self._deliveries.delivered(now - made.timestamp())

    async def _catch_up(self, chat_id: str, delivered: _Delivered) -> AsyncIterator[MessageBatch]:
        """The stored messages after ``delivered.seq``, in batches, up to the newest one
        (which includes any message the hub has handed over: it was committed before that),
        moving ``delivered`` along."""
        while True:
            page = await self._store.log_after(chat_id, delivered.seq, REPLAY_PAGE)
            for start in range(0, len(page), BATCH_MAX):
                batch = tuple(page[start : start + BATCH_MAX])
                delivered.seq = batch[-1].seq
                yield MessageBatch(batch)
            if len(page) < REPLAY_PAGE:
                return

    # -- changes and read positions ------------------------------------------------------

    async def edit_message(self, caller: Caller, chat_id: str, seq: int, text: str) -> Message:
        """Change the text of the caller's own message; it keeps its seq, and the edit takes
        the chat's next one. The same text again changes nothing."""
        validate_text(text, self._limits.max_message_length)
        chat = await self._member_chat(caller, chat_id)
        message = await self._message(chat, seq)
        if message.sender_id != caller.principal.user_id:
            raise PermissionDenied("only its sender may edit a message")
        return await self._change(caller, chat, seq, ChangeKind.EDITED, text)

    async def delete_message(self, caller: Caller, chat_id: str, seq: int) -> Message:
        """Delete a message (its sender, the chat's owner or an admin): the text is erased,
        the message keeps its seq and the deletion takes the chat's next one. Deleting a
        deleted message changes nothing."""
        chat = await self._readable_chat(caller, chat_id)
        message = await self._message(chat, seq)
        me = caller.principal
        mine = message.sender_id == me.user_id and chat.member(me.user_id) is not None
        if not mine and me.user_id != chat.owner_id and not me.is_admin:
            raise PermissionDenied(
                "only its sender, the chat's owner or an admin may delete a message"
            )
        return await self._change(caller, chat, seq, ChangeKind.DELETED, "")

    async def _message(self, chat: Chat, seq: int) -> Message:
        if seq < 1:
            raise InvalidArgument("seq", "must be at least 1")
        message = await self._store.get_message(chat.id, seq)
        if message is None:
            raise NotFound(f"there is no message #{seq} in {chat.name}")
        return message

    async def _change(
        self, caller: Caller, chat: Chat, seq: int, kind: ChangeKind, text: str
    ) -> Message:
        me = caller.principal
        result = await self._store.change_message(
            NewChange(chat.id, seq, kind, UserRef(me.user_id, me.username), utc_now(), text)
        )
        if result.outcome is ChangeOutcome.NO_MESSAGE or result.message is None:
            raise NotFound(f"there is no message #{seq} in {chat.name}")
        if result.outcome is ChangeOutcome.DELETED:
            raise FailedPrecondition(f"message #{seq} was deleted; it can no longer be edited")
        if result.change is not None:
            self._hub.publish(result.change)
        return result.message

    async def mark_read(self, caller: Caller, chat_id: str, seq: int) -> ReadState:
        """Move the caller's read position forward to ``seq`` (0: the newest entry); it
        never moves back."""
        if seq < 0:
            raise InvalidArgument("seq", "must not be negative")
        chat = await self._member_chat(caller, chat_id)
        newest = chat.last_seq
        if seq > newest:
            # The cache may not have heard of an entry just made on another replica.
            newest = (await self._stored_chat(chat_id)).last_seq
        if seq > newest:
            raise InvalidArgument("seq", f"is beyond the chat's newest message ({newest})")
        me = caller.principal
        if await self._store.mark_read(chat.id, me.user_id, seq or newest) is None:
            raise await self._no_access(caller, chat_id, gone=False)
        states = await self._store.read_states(me.user_id, [chat.id])
        if chat.id not in states:
            raise await self._no_access(caller, chat_id, gone=False)
        return states[chat.id]

    async def get_chat_and_read_state(
        self, caller: Caller, chat_id: str
    ) -> tuple[Chat, ReadState | None]:
        """The chat and the caller's read state in it (None for an admin who is no member)."""
        chat = await self._readable_chat(caller, chat_id)
        states = await self._store.read_states(caller.principal.user_id, [chat.id])
        return chat, states.get(chat.id)

    # -- rules ---------------------------------------------------------------------------

    async def _members_changed(self, chat_id: str) -> None:
        """The chat's members changed (or it was deleted) here: its streams check access
        again, and the call returns once every replica knows (see ``settle``)."""
        self._hub.membership_changed(chat_id)
        if self._settle is not None:
            await self._settle()

    async def _stored_chat(self, chat_id: str) -> Chat:
        """The chat as the store has it, for the changes of members."""
        validate_chat_id(chat_id)
        chat = await self._store.get_chat(chat_id)
        if chat is None:
            raise NotFound(f"chat {chat_id} not found")
        return chat

    async def _readable_chat(self, caller: Caller, chat_id: str) -> Chat:
        validate_chat_id(chat_id)
        chat = await self._cache.get(chat_id, self._store.get_chat)
        me = caller.principal
        if chat is None or (chat.member(me.user_id) is None and not me.is_admin):
            raise await self._no_access(caller, chat_id, gone=chat is None)
        return chat

    async def _no_access(
        self,
        caller: Caller,
        chat_id: str,
        *,
        gone: bool,
        not_member: str = "you are not a member of this chat",
    ) -> Exception:
        """Why the caller cannot use the chat: gone (NotFound) or not a member
        (PermissionDenied, ``not_member``), told as what happened when they had been one."""
        departure = await self._store.departure(chat_id, caller.principal.user_id)
        if gone:
            if departure is not None and departure.reason is DepartureReason.CHAT_DELETED:
                return NotFound(departure.describe())
            return NotFound(f"chat {chat_id} not found")
        if departure is not None and departure.reason is not DepartureReason.CHAT_DELETED:
            return PermissionDenied(departure.describe())
        return PermissionDenied(not_member)

    async def _member_chat(self, caller: Caller, chat_id: str) -> Chat:
        """The chat, for its members only (admins who are no members have no messages of
        their own or read position in it)."""
        chat = await self._readable_chat(caller, chat_id)
        if chat.member(caller.principal.user_id) is None:
            raise await self._no_access(caller, chat_id, gone=False)
        return chat

    @staticmethod
    def _require_manager(caller: Caller, chat: Chat, action: str) -> None:
        me = caller.principal
        if me.user_id != chat.owner_id and not me.is_admin:
            raise PermissionDenied(f"only the chat's owner or an admin may {action} the chat")
