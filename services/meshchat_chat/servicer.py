"""The gRPC face of the chat service: proto in, a use case, proto out. Domain errors are
mapped to status codes by the runtime's ErrorInterceptor."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

import grpc.aio
from google.protobuf import empty_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from meshchat.chat.v1 import chat_pb2, chat_pb2_grpc
from meshchat_chat.domain import (
    Caller,
    CaughtUp,
    Change,
    ChangeKind,
    Chat,
    Entry,
    Heartbeat,
    Message,
    MessageBatch,
    ReadState,
    StreamEvent,
)
from meshchat_chat.service import ChatService
from meshchat_runtime.interceptors import bearer_token, current_principal

__all__ = ["ChatServicer", "StreamEncoder", "add_to_server"]

Context = grpc.aio.ServicerContext[Any, Any]

_K = TypeVar("_K")


def _caller(context: Context) -> Caller:
    remaining = context.time_remaining()
    deadline = None if remaining is None else time.monotonic() + remaining
    return Caller(current_principal(), bearer_token(context) or "", deadline)


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _optional_timestamp(moment: datetime | None) -> Timestamp | None:
    return _timestamp(moment) if moment is not None else None


def chat_to_proto(chat: Chat, read: ReadState | None = None) -> chat_pb2.Chat:
    """The proto of a chat, with the caller's read state when given."""
    proto = chat_pb2.Chat(
        id=chat.id,
        name=chat.name,
        owner_id=chat.owner_id,
        members=[
            chat_pb2.Member(
                user_id=m.user_id, username=m.username, join_time=_timestamp(m.joined_at)
            )
            for m in chat.members
        ],
        create_time=_timestamp(chat.created_at),
        last_seq=chat.last_seq,
    )
    if read is not None:
        proto.read_seq = read.read_seq
        proto.unread_count = read.unread_count
        if read.last_message_at is not None:
            proto.last_message_time.CopyFrom(_timestamp(read.last_message_at))
    return proto


def message_to_proto(message: Message) -> chat_pb2.Message:
    """The proto of a message."""
    return chat_pb2.Message(
        chat_id=message.chat_id,
        seq=message.seq,
        sender_id=message.sender_id,
        sender_username=message.sender_username,
        text=message.text,
        client_message_id=message.client_message_id,
        create_time=_timestamp(message.created_at),
        edit_time=_optional_timestamp(message.edited_at),
        delete_time=_optional_timestamp(message.deleted_at),
    )


_CHANGE_KINDS = {
    ChangeKind.EDITED: chat_pb2.MessageChange.KIND_EDITED,
    ChangeKind.DELETED: chat_pb2.MessageChange.KIND_DELETED,
}


def change_to_proto(change: Change) -> chat_pb2.MessageChange:
    """The proto of an edit or deletion."""
    return chat_pb2.MessageChange(
        seq=change.seq,
        kind=_CHANGE_KINDS[change.kind],
        message=message_to_proto(change.message),
        actor_id=change.actor.user_id,
        actor_username=change.actor.username,
        change_time=_timestamp(change.changed_at),
    )


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited protobuf field: its tag byte, the length, the bytes."""
    return tag + _varint(len(payload)) + payload


# The tag bytes (field number << 3 | wire type 2, length-delimited) of ConnectResponse.message,
# ConnectResponse.batch, ConnectResponse.change, MessageBatch.messages and MessageBatch.changes.
_MESSAGE_TAG = bytes([1 << 3 | 2])
_BATCH_TAG = bytes([4 << 3 | 2])
_CHANGE_TAG = bytes([5 << 3 | 2])
_BATCH_MESSAGES_TAG = bytes([1 << 3 | 2])
_BATCH_CHANGES_TAG = bytes([2 << 3 | 2])

# An entry as encoded: its seq and the state of its message (edits and a deletion change what a
# message, or a change that carries it, encodes to).
_Version = tuple[int, datetime | None, datetime | None]


def _version(entry: Entry) -> _Version:
    message = entry if isinstance(entry, Message) else entry.message
    return (entry.seq, message.edited_at, message.deleted_at)


class StreamEncoder:
    """Encodes Connect events to the bytes of their ConnectResponse. A message goes to every
    stream of its chat, so its bytes are built once and reused, and so are those of a batch
    that several streams at the same point receive: a batch is the concatenation of its
    entries' encodings, which is the protobuf encoding of its two repeated fields (protobuf
    allows them interleaved, and keeps each field's order). Entries are cached by their
    version, so an edited or deleted message is never sent as it was."""

    def __init__(self, cache_size: int = 4096) -> None:
        self._messages: dict[tuple[str, _Version], bytes] = {}
        self._batches: dict[tuple[str, tuple[_Version, ...]], bytes] = {}
        self._cache_size = cache_size
        self._heartbeat = chat_pb2.ConnectResponse(
            heartbeat=chat_pb2.Heartbeat()
        ).SerializeToString()

    def encode(self, event: StreamEvent) -> bytes:
        """The serialized ConnectResponse of a Connect stream event."""
        if isinstance(event, MessageBatch):
            return self._batch(event.messages)
        if isinstance(event, CaughtUp):
            caught_up = chat_pb2.CaughtUp(last_seq=event.last_seq)
            return chat_pb2.ConnectResponse(caught_up=caught_up).SerializeToString()
        assert isinstance(event, Heartbeat)
        return self._heartbeat

    def _batch(self, entries: tuple[Entry, ...]) -> bytes:
        first = entries[0]
        key = (first.chat_id, tuple(_version(e) for e in entries))
        encoded = self._batches.get(key)
        if encoded is None:
            if len(entries) == 1:
                tag = _MESSAGE_TAG if isinstance(first, Message) else _CHANGE_TAG
                encoded = _field(tag, self._entry(first))
            else:
                inner = b"".join(
                    _field(
                        _BATCH_MESSAGES_TAG if isinstance(e, Message) else _BATCH_CHANGES_TAG,
                        self._entry(e),
                    )
                    for e in entries
                )
                encoded = _field(_BATCH_TAG, inner)
            _remember(self._batches, key, encoded, self._cache_size)
        return encoded

    def _entry(self, entry: Entry) -> bytes:
        key = (entry.chat_id, _version(entry))
        encoded = self._messages.get(key)
        if encoded is None:
            proto = (
                message_to_proto(entry) if isinstance(entry, Message) else change_to_proto(entry)
            )
            encoded = proto.SerializeToString()
            _remember(self._messages, key, encoded, self._cache_size)
        return encoded


def _remember(cache: dict[_K, bytes], key: _K, value: bytes, size: int) -> None:
    if len(cache) >= size:
        del cache[next(iter(cache))]
    cache[key] = value


class _PreEncodedConnect:
    """A stand-in for the server while the generated code registers the service: it
    registers the same handlers, except that Connect's responses are written as they come
    (the bytes :class:`StreamEncoder` built) instead of being serialized once per stream."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        """Ignored: the handlers are registered from the method table below."""

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        connect: Any = handlers["Connect"]
        table = {**handlers, "Connect": connect._replace(response_serializer=None)}
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, table),)
        )
        self._server.add_registered_method_handlers(service, table)


def add_to_server(servicer: ChatServicer, server: grpc.aio.Server) -> None:
    """Serve ``servicer`` on ``server``, Connect writing pre-encoded responses."""
    stand_in: Any = _PreEncodedConnect(server)
    chat_pb2_grpc.add_ChatServiceServicer_to_server(servicer, stand_in)


class ChatServicer(chat_pb2_grpc.ChatServiceServicer):
    """meshchat.chat.v1.ChatService over :class:`ChatService`."""

    def __init__(self, chats: ChatService) -> None:
        self._chats = chats
        self._encoder = StreamEncoder()

    async def CreateChat(
        self, request: chat_pb2.CreateChatRequest, context: Context
    ) -> chat_pb2.Chat:
        chat = await self._chats.create_chat(
            _caller(context), request.name, list(request.member_usernames)
        )
        return chat_to_proto(chat)

    async def GetChat(self, request: chat_pb2.GetChatRequest, context: Context) -> chat_pb2.Chat:
        chat, read = await self._chats.get_chat_and_read_state(_caller(context), request.chat_id)
        return chat_to_proto(chat, read)

    async def ListChats(
        self, request: chat_pb2.ListChatsRequest, context: Context
    ) -> chat_pb2.ListChatsResponse:
        page = await self._chats.list_chats(_caller(context), request.page_size, request.page_token)
        return chat_pb2.ListChatsResponse(
            chats=[chat_to_proto(c, page.read_states.get(c.id)) for c in page.chats],
            next_page_token=page.next_page_token,
        )

    async def DeleteChat(
        self, request: chat_pb2.DeleteChatRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._chats.delete_chat(_caller(context), request.chat_id)
        return empty_pb2.Empty()

    async def AddMember(
        self, request: chat_pb2.AddMemberRequest, context: Context
    ) -> chat_pb2.Chat:
        chat = await self._chats.add_member(_caller(context), request.chat_id, request.username)
        return chat_to_proto(chat)

    async def RemoveMember(
        self, request: chat_pb2.RemoveMemberRequest, context: Context
    ) -> chat_pb2.Chat:
        chat = await self._chats.remove_member(_caller(context), request.chat_id, request.username)
        return chat_to_proto(chat)

    async def SendMessage(
        self, request: chat_pb2.SendMessageRequest, context: Context
    ) -> chat_pb2.Message:
        message = await self._chats.send_message(
            _caller(context), request.chat_id, request.text, request.client_message_id
        )
        return message_to_proto(message)

    async def ListMessages(
        self, request: chat_pb2.ListMessagesRequest, context: Context
    ) -> chat_pb2.ListMessagesResponse:
        cursor = request.WhichOneof("cursor")
        page = await self._chats.list_messages(
            _caller(context),
            request.chat_id,
            request.limit,
            before_seq=request.before_seq if cursor == "before_seq" else None,
            after_seq=request.after_seq if cursor == "after_seq" else None,
        )
        return chat_pb2.ListMessagesResponse(
            messages=[message_to_proto(m) for m in page.messages], has_more=page.has_more
        )

    async def EditMessage(
        self, request: chat_pb2.EditMessageRequest, context: Context
    ) -> chat_pb2.Message:
        message = await self._chats.edit_message(
            _caller(context), request.chat_id, request.seq, request.text
        )
        return message_to_proto(message)

    async def DeleteMessage(
        self, request: chat_pb2.DeleteMessageRequest, context: Context
    ) -> chat_pb2.Message:
        message = await self._chats.delete_message(_caller(context), request.chat_id, request.seq)
        return message_to_proto(message)

    async def MarkRead(
        self, request: chat_pb2.MarkReadRequest, context: Context
    ) -> chat_pb2.ReadState:
        state = await self._chats.mark_read(_caller(context), request.chat_id, request.seq)
        return chat_pb2.ReadState(
            chat_id=request.chat_id, read_seq=state.read_seq, unread_count=state.unread_count
        )

    # The generated base class expects protos; add_to_server has Connect write these bytes.
    async def Connect(  # type: ignore[override]
        self, request: chat_pb2.ConnectRequest, context: Context
    ) -> AsyncIterator[bytes]:
        events = self._chats.connect(_caller(context), request.chat_id, request.after_seq)
        async with contextlib.aclosing(events):
            async for event in events:
                yield self._encoder.encode(event)
