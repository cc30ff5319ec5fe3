"""The gRPC face of the chat service: proto in, a use case, proto out. Domain errors are
mapped to status codes by the runtime's ErrorInterceptor."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import grpc.aio
from google.protobuf import empty_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from meshchat.chat.v1 import chat_pb2, chat_pb2_grpc
from meshchat_chat.domain import Caller, CaughtUp, Chat, Heartbeat, Message, StreamEvent
from meshchat_chat.service import ChatService
from meshchat_runtime.interceptors import bearer_token, current_principal

__all__ = ["ChatServicer"]

Context = grpc.aio.ServicerContext[Any, Any]

_HEARTBEAT = chat_pb2.ConnectResponse(heartbeat=chat_pb2.Heartbeat())


def _caller(context: Context) -> Caller:
    remaining = context.time_remaining()
    deadline = None if remaining is None else time.monotonic() + remaining
    return Caller(current_principal(), bearer_token(context) or "", deadline)


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def chat_to_proto(chat: Chat) -> chat_pb2.Chat:
    """The proto of a chat."""
    return chat_pb2.Chat(
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
    )


class StreamEvents:
    """Converts Connect events to protos. A message goes to every stream of its chat, so its
    proto is built once and reused (protos are never modified after they are built)."""

    def __init__(self, cache_size: int = 4096) -> None:
        self._messages: dict[tuple[str, int], chat_pb2.ConnectResponse] = {}
        self._cache_size = cache_size

    def to_proto(self, event: StreamEvent) -> chat_pb2.ConnectResponse:
        """The proto of a Connect stream event."""
        if isinstance(event, Message):
            key = (event.chat_id, event.seq)
            response = self._messages.get(key)
            if response is None:
                response = chat_pb2.ConnectResponse(message=message_to_proto(event))
                if len(self._messages) >= self._cache_size:
                    del self._messages[next(iter(self._messages))]
                self._messages[key] = response
            return response
        if isinstance(event, CaughtUp):
            return chat_pb2.ConnectResponse(caught_up=chat_pb2.CaughtUp(last_seq=event.last_seq))
        assert isinstance(event, Heartbeat)
        return _HEARTBEAT


class ChatServicer(chat_pb2_grpc.ChatServiceServicer):
    """meshchat.chat.v1.ChatService over :class:`ChatService`."""

    def __init__(self, chats: ChatService) -> None:
        self._chats = chats
        self._events = StreamEvents()

    async def CreateChat(
        self, request: chat_pb2.CreateChatRequest, context: Context
    ) -> chat_pb2.Chat:
        chat = await self._chats.create_chat(
            _caller(context), request.name, list(request.member_usernames)
        )
        return chat_to_proto(chat)

    async def GetChat(self, request: chat_pb2.GetChatRequest, context: Context) -> chat_pb2.Chat:
        return chat_to_proto(await self._chats.get_chat(_caller(context), request.chat_id))

    async def ListChats(
        self, request: chat_pb2.ListChatsRequest, context: Context
    ) -> chat_pb2.ListChatsResponse:
        page = await self._chats.list_chats(_caller(context), request.page_size, request.page_token)
        return chat_pb2.ListChatsResponse(
            chats=[chat_to_proto(c) for c in page.chats], next_page_token=page.next_page_token
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

    async def Connect(
        self, request: chat_pb2.ConnectRequest, context: Context
    ) -> AsyncIterator[chat_pb2.ConnectResponse]:
        events = self._chats.connect(_caller(context), request.chat_id, request.after_seq)
        async with contextlib.aclosing(events):
            async for event in events:
                yield self._events.to_proto(event)
