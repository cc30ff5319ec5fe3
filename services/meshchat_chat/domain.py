"""The chat service's domain: chats, members, messages, stream events and the input rules."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from meshchat_runtime.errors import InvalidArgument
from meshchat_runtime.identity import Principal
from meshchat_runtime.timestamps import from_micros, to_micros

__all__ = [
    "NAME_MAX",
    "PAGE_SIZE_DEFAULT",
    "PAGE_SIZE_MAX",
    "AccountChange",
    "AddOutcome",
    "AppliedChange",
    "Caller",
    "CaughtUp",
    "Change",
    "ChangeKind",
    "ChangeOutcome",
    "ChangeResult",
    "Chat",
    "ChatCursor",
    "ChatPage",
    "Departure",
    "DepartureReason",
    "Entry",
    "Heartbeat",
    "KeySet",
    "Member",
    "Message",
    "MessageBatch",
    "MessagePage",
    "NewChange",
    "NewMessage",
    "ReadState",
    "Revocation",
    "SendOutcome",
    "SendResult",
    "StreamEvent",
    "UserRef",
    "apply_change",
    "decode_chat_cursor",
    "encode_chat_cursor",
    "validate_chat_id",
    "validate_client_message_id",
    "validate_name",
    "validate_page_size",
    "validate_text",
]

NAME_MAX = 100
CLIENT_MESSAGE_ID_MAX = 128
PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = 500


@dataclass(frozen=True, slots=True)
class Caller:
    """Who makes a call: the verified principal, the token to forward to the auth service and
    the call's deadline (``time.monotonic()`` seconds; None when the client set none)."""

    principal: Principal
    token: str
    deadline: float | None = None


@dataclass(frozen=True, slots=True)
class UserRef:
    """A user as the chat service knows them: the auth service's id and the username."""

    user_id: str
    username: str


@dataclass(frozen=True, slots=True)
class Member:
    """A member of a chat and when they joined."""

    user_id: str
    username: str
    joined_at: datetime


@dataclass(frozen=True, slots=True)
class Chat:
    """A chat with its members, owner and the seq of its newest message (0: none)."""

    id: str
    name: str
    owner_id: str
    created_at: datetime
    last_seq: int
    members: tuple[Member, ...]

    def member(self, user_id: str) -> Member | None:
        """The member with this user id, or None."""
        return next((m for m in self.members if m.user_id == user_id), None)

    def member_named(self, username: str) -> Member | None:
        """The member with this username (in any case, as usernames are unique), or None."""
        key = username.lower()
        return next((m for m in self.members if m.username.lower() == key), None)


@dataclass(frozen=True, slots=True)
class Message:
    """A stored message. ``seq`` numbers a chat's entries, messages and their changes
    together, 1, 2, 3 ... without gaps; a message keeps its seq when edited or deleted.
    A deleted message's text is empty."""

    chat_id: str
    seq: int
    sender_id: str
    sender_username: str
    text: str
    client_message_id: str
    created_at: datetime
    edited_at: datetime | None = None
    deleted_at: datetime | None = None


class ChangeKind(enum.Enum):
    """What a change did to a message."""

    EDITED = "edited"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class Change:
    """An edit or deletion of the message ``message.seq``: an entry of the chat's log with a
    seq of its own. ``message`` is the message as it stands after the change, or as it
    stands now when the change is read back from the store."""

    chat_id: str
    seq: int
    kind: ChangeKind
    message: Message
    actor: UserRef
    changed_at: datetime


Entry = Message | Change
"""An entry of a chat's log, numbered by ``seq``: what Connect streams deliver."""


@dataclass(frozen=True, slots=True)
class NewChange:
    """A change to store; the store assigns its seq. ``text`` is the new text of an edit."""

    chat_id: str
    message_seq: int
    kind: ChangeKind
    actor: UserRef
    changed_at: datetime
    text: str = ""


class ChangeOutcome(enum.Enum):
    """What became of a change."""

    CHANGED = "changed"
    # An edit to the text the message has, or a deletion of a deleted message.
    UNCHANGED = "unchanged"
    # An edit of a deleted message.
    DELETED = "deleted"
    NO_MESSAGE = "no_message"


@dataclass(frozen=True, slots=True)
class ChangeResult:
    """The outcome of a change; the change for CHANGED; the message as it stands for
    CHANGED, UNCHANGED and DELETED."""

    outcome: ChangeOutcome
    change: Change | None = None
    message: Message | None = None


@dataclass(frozen=True, slots=True)
class ReadState:
    """A member's read position in a chat, the messages of others after it that are not
    deleted, and when the chat's newest message was sent (None: no message yet)."""

    read_seq: int
    unread_count: int
    last_message_at: datetime | None


class DepartureReason(enum.Enum):
    """Why a user is no longer a member of a chat."""

    REMOVED = "removed"
    LEFT = "left"
    CHAT_DELETED = "chat_deleted"


@dataclass(frozen=True, slots=True)
class Departure:
    """The record of a user leaving a chat, kept to tell them why they can no longer read
    it: the chat's name then, the reason, who did it and when."""

    chat_id: str
    user_id: str
    chat_name: str
    reason: DepartureReason
    by_username: str
    at: datetime

    def describe(self) -> str:
        """The departure in words, for the user who departed."""
        match self.reason:
            case DepartureReason.REMOVED:
                return f"you were removed from {self.chat_name} by {self.by_username}"
            case DepartureReason.LEFT:
                return f"you left {self.chat_name}"
            case DepartureReason.CHAT_DELETED:
                return f"{self.chat_name} was deleted by {self.by_username}"


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to store; the store assigns its seq."""

    chat_id: str
    sender: UserRef
    text: str
    client_message_id: str
    created_at: datetime


class SendOutcome(enum.Enum):
    """What became of a send."""

    CREATED = "created"
    DUPLICATE = "duplicate"
    NOT_MEMBER = "not_member"
    NO_CHAT = "no_chat"


class AddOutcome(enum.Enum):
    """What became of adding a member."""

    ADDED = "added"
    ALREADY_MEMBER = "already_member"
    CHAT_FULL = "chat_full"


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of a send and the message, for CREATED and DUPLICATE (the first one)."""

    outcome: SendOutcome
    message: Message | None = None


@dataclass(frozen=True, slots=True)
class KeySet:
    """The auth service's public keys as fetched at ``fetched_at``: ``keys`` is the JWKS,
    as JSON."""

    keys: str
    fetched_at: datetime


@dataclass(frozen=True, slots=True)
class ChatCursor:
    """Where a page of the caller's chats (newest first) continues."""

    created_at: datetime
    chat_id: str


@dataclass(frozen=True, slots=True)
class ChatPage:
    """One page of chats, the token of the next one ("" on the last page) and the caller's
    read state in each of them (by chat id)."""

    chats: tuple[Chat, ...]
    next_page_token: str
    read_states: Mapping[str, ReadState]


@dataclass(frozen=True, slots=True)
class MessagePage:
    """Messages ascending by seq, and whether more lie beyond in the direction asked."""

    messages: tuple[Message, ...]
    has_more: bool


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """The replay is over; ``last_seq`` is the seq of the last message replayed (or the
    ``after_seq`` asked for when there was nothing to replay)."""

    last_seq: int


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The stream has been idle for a while and is alive."""


@dataclass(frozen=True, slots=True)
class MessageBatch:
    """One or more consecutive entries (messages and changes) of a chat, ascending by seq
    without gaps: what a stream delivers at once."""

    messages: tuple[Entry, ...]


StreamEvent = MessageBatch | CaughtUp | Heartbeat


def apply_change(message: Message, change: NewChange) -> Message | ChangeOutcome:
    """The message after ``change``, or why the change changes nothing (one rule for every
    store)."""
    if message.deleted_at is not None:
        return (
            ChangeOutcome.UNCHANGED if change.kind is ChangeKind.DELETED else ChangeOutcome.DELETED
        )
    if change.kind is ChangeKind.DELETED:
        return dataclasses.replace(message, text="", deleted_at=change.changed_at)
    if change.text == message.text:
        return ChangeOutcome.UNCHANGED
    return dataclasses.replace(message, text=change.text, edited_at=change.changed_at)


def validate_chat_id(value: str, field: str = "chat_id") -> str:
    """A chat id is a UUID in its canonical lowercase form."""
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(field, "must be a chat id (a UUID)") from None
    if str(parsed) != value:
        raise InvalidArgument(field, "must be a chat id (a lowercase UUID with dashes)")
    return value


def _check_characters(value: str, field: str) -> None:
    # PostgreSQL cannot store NUL in text, and no client means one: reject it on both backends.
    if "\x00" in value:
        raise InvalidArgument(field, "must not contain NUL characters")


def validate_name(name: str, field: str = "name") -> str:
    """1 to 100 characters, not only whitespace."""
    if not name.strip():
        raise InvalidArgument(field, "must not be empty")
    if len(name) > NAME_MAX:
        raise InvalidArgument(field, f"must be at most {NAME_MAX} characters, got {len(name)}")
    _check_characters(name, field)
    return name


def validate_text(text: str, max_length: int, field: str = "text") -> str:
    """1 to ``max_length`` characters."""
    if not text:
        raise InvalidArgument(field, "must not be empty")
    if len(text) > max_length:
        raise InvalidArgument(field, f"must be at most {max_length} characters, got {len(text)}")
    _check_characters(text, field)
    return text


def validate_client_message_id(value: str, field: str = "client_message_id") -> str:
    """Empty (not idempotent) or up to 128 characters."""
    if len(value) > CLIENT_MESSAGE_ID_MAX:
        raise InvalidArgument(field, f"must be at most {CLIENT_MESSAGE_ID_MAX} characters")
    _check_characters(value, field)
    return value


def validate_page_size(value: int, field: str) -> int:
    """0 means the default (50); otherwise 1 to 500."""
    if value == 0:
        return PAGE_SIZE_DEFAULT
    if not 1 <= value <= PAGE_SIZE_MAX:
        raise InvalidArgument(field, f"must be 1 to {PAGE_SIZE_MAX} (0 for {PAGE_SIZE_DEFAULT})")
    return value


def encode_chat_cursor(cursor: ChatCursor) -> str:
    """An opaque page token for ``cursor``."""
    micros = to_micros(cursor.created_at)
    raw = f"{micros}:{cursor.chat_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_chat_cursor(token: str, field: str = "page_token") -> ChatCursor | None:
    """The cursor of a page token; None for "" (the first page)."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        micros_text, _, chat_id = raw.partition(":")
        micros = int(micros_text)
        created_at = from_micros(micros)
        validate_chat_id(chat_id)
    except (ValueError, binascii.Error, OverflowError, OSError, InvalidArgument):
        raise InvalidArgument(field, "is not a page token returned by ListChats") from None
    return ChatCursor(created_at=created_at, chat_id=chat_id)


@dataclass(frozen=True, slots=True)
class Revocation:
    """Which access tokens of a user the chat service refuses: every one of a deleted user;
    otherwise those issued before ``not_before``, except the ``kept_session_id`` login's."""

    user_id: str
    not_before: datetime
    kept_session_id: str = ""
    deleted: bool = False

    def refuses(self, principal: Principal) -> bool:
        """Whether ``principal``'s token is revoked."""
        if self.deleted:
            return True
        if self.kept_session_id and principal.session_id == self.kept_session_id:
            return False
        return principal.issued_at < self.not_before.timestamp()

    def merged(self, later: Revocation) -> Revocation:
        """This revocation followed by ``later`` of the same user: a deletion stays; the later
        time, with its kept login, wins."""
        newest = later if later.not_before >= self.not_before else self
        return Revocation(
            self.user_id,
            newest.not_before,
            newest.kept_session_id,
            self.deleted or later.deleted,
        )


@dataclass(frozen=True, slots=True)
class AccountChange:
    """An account event of the auth service, number ``seq``, as the chat service applies it:
    the revocation it causes and, for a deleted account, the removal from every chat."""

    seq: int
    revocation: Revocation

    @property
    def user_id(self) -> str:
        """The account's id."""
        return self.revocation.user_id


@dataclass(frozen=True, slots=True)
class AppliedChange:
    """What applying an account change did to the chats: the ones whose members or owner
    changed, and the ones deleted because no member remained."""

    changed_chats: tuple[str, ...] = ()
    deleted_chats: tuple[str, ...] = ()
