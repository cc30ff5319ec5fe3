"""People who sign up on a real auth service and call a real chat service, and Connect
streams read with deadlines."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
import grpc.aio
import pytest

from meshchat.auth.v1 import auth_pb2, auth_pb2_grpc
from meshchat.chat.v1 import chat_pb2, chat_pb2_grpc
from meshchat_auth.domain import UserChanges
from meshchat_runtime.identity import Role
from tests.support.passwords import PASSWORD
from tests.support.rpc import DEADLINE
from tests.support.stack import RunningAuth, bearer, register_and_login

__all__ = ["People", "Person", "Stream"]


@dataclass
class Person:
    """A signed-up, logged-in user and the chat API as seen by them."""

    username: str
    user_id: str
    access_token: str
    stub: chat_pb2_grpc.ChatServiceAsyncStub

    @property
    def md(self) -> tuple[tuple[str, str]]:
        """Call metadata with their access token."""
        return bearer(self.access_token)

    async def create_chat(self, name: str = "general", *members: str) -> chat_pb2.Chat:
        """A chat owned by them with the named members."""
        return await self.stub.CreateChat(
            chat_pb2.CreateChatRequest(name=name, member_usernames=members),
            metadata=self.md,
            timeout=DEADLINE,
        )

    async def send(self, chat_id: str, text: str, client_id: str = "") -> chat_pb2.Message:
        """Send a message."""
        return await self.stub.SendMessage(
            chat_pb2.SendMessageRequest(chat_id=chat_id, text=text, client_message_id=client_id),
            metadata=self.md,
            timeout=DEADLINE,
        )

    async def get_chat(self, chat_id: str) -> chat_pb2.Chat:
        """Get a chat."""
        return await self.stub.GetChat(
            chat_pb2.GetChatRequest(chat_id=chat_id), metadata=self.md, timeout=DEADLINE
        )

    async def delete_chat(self, chat_id: str) -> None:
        """Delete a chat."""
        await self.stub.DeleteChat(
            chat_pb2.DeleteChatRequest(chat_id=chat_id), metadata=self.md, timeout=DEADLINE
        )

    async def add_member(self, chat_id: str, username: str) -> chat_pb2.Chat:
        """Add a member."""
        return await self.stub.AddMember(
            chat_pb2.AddMemberRequest(chat_id=chat_id, username=username),
            metadata=self.md,
            timeout=DEADLINE,
        )

    async def remove_member(self, chat_id: str, username: str) -> chat_pb2.Chat:
        """Remove a member (or leave)."""
        return await self.stub.RemoveMember(
            chat_pb2.RemoveMemberRequest(chat_id=chat_id, username=username),
            metadata=self.md,
            timeout=DEADLINE,
        )

    async def list_chats(
        self, page_size: int = 0, page_token: str = ""
    ) -> chat_pb2.ListChatsResponse:
        """A page of their chats."""
        return await self.stub.ListChats(
            chat_pb2.ListChatsRequest(page_size=page_size, page_token=page_token),
            metadata=self.md,
            timeout=DEADLINE,
        )

    async def history(
        self, chat_id: str, limit: int = 0, **cursor: int
    ) -> chat_pb2.ListMessagesResponse:
        """A page of a chat's messages (cursor: before_seq= or after_seq=)."""
        return await self.stub.ListMessages(
            chat_pb2.ListMessagesRequest(chat_id=chat_id, limit=limit, **cursor),
            metadata=self.md,
            timeout=DEADLINE,
        )

    async def edit(self, chat_id: str, seq: int, text: str) -> chat_pb2.Message:
        """Edit a message."""
        return await self.stub.EditMessage(
            chat_pb2.EditMessageRequest(chat_id=chat_id, seq=seq, text=text),
            metadata=self.md,
            timeout=DEADLINE,
        )

    async def delete_message(self, chat_id: str, seq: int) -> chat_pb2.Message:
        """Delete a message."""
        return await self.stub.DeleteMessage(
            chat_pb2.DeleteMessageRequest(chat_id=chat_id, seq=seq),
            metadata=self.md,
            timeout=DEADLINE,
        )

    async def mark_read(self, chat_id: str, seq: int = 0) -> chat_pb2.ReadState:
        """Move their read position."""
        return await self.stub.MarkRead(
            chat_pb2.MarkReadRequest(chat_id=chat_id, seq=seq), metadata=self.md, timeout=DEADLINE
        )

    def connect(
        self, chat_id: str, after_seq: int = 0
    ) -> grpc.aio.UnaryStreamCall[chat_pb2.ConnectRequest, chat_pb2.ConnectResponse]:
        """Open a Connect stream."""
        return self.stub.Connect(
            chat_pb2.ConnectRequest(chat_id=chat_id, after_seq=after_seq), metadata=self.md
        )


class People:
    """Signs people up on the auth service and gives them the chat API."""

    def __init__(
        self, auth: RunningAuth, auth_channel: grpc.aio.Channel, chat_channel: grpc.aio.Channel
    ) -> None:
        self._auth = auth
        self._auth_channel = auth_channel
        self._chat_channel = chat_channel

    async def __call__(self, username: str, *, admin: bool = False) -> Person:
        """Sign up and log in (as an admin when asked)."""
        pair = await register_and_login(self._auth_channel, username)
        if admin:
            await self._auth.app.store.update_user(
                pair.user.id, UserChanges(role=Role.ADMIN), datetime.now(UTC)
            )
            pair = await auth_pb2_grpc.AuthServiceStub(self._auth_channel).Login(
                auth_pb2.LoginRequest(username=username, password=PASSWORD)
            )
        return Person(
            username,
            pair.user.id,
            pair.access_token,
            chat_pb2_grpc.ChatServiceStub(self._chat_channel),
        )


Entry = chat_pb2.Message | chat_pb2.MessageChange


def entries(event: chat_pb2.ConnectResponse) -> list[Entry]:
    """The messages and changes an event carries, in seq order: one, a batch, or none."""
    if event.HasField("batch"):
        batch: list[Entry] = [*event.batch.messages, *event.batch.changes]
        assert len(batch) >= 2, "a batch of fewer than two entries"
        return sorted(batch, key=lambda e: e.seq)
    if event.HasField("change"):
        return [event.change]
    return [event.message] if event.HasField("message") else []


def delivered(event: chat_pb2.ConnectResponse) -> list[chat_pb2.Message]:
    """The messages an event carries (changes left out)."""
    return [e for e in entries(event) if isinstance(e, chat_pb2.Message)]


class Stream:
    """A Connect stream read with deadlines."""

    def __init__(
        self, call: grpc.aio.UnaryStreamCall[chat_pb2.ConnectRequest, chat_pb2.ConnectResponse]
    ) -> None:
        self.call = call
        self._events = call.__aiter__()

    async def event(self, within: float = DEADLINE) -> chat_pb2.ConnectResponse:
        """The next event (heartbeats included)."""
        return await asyncio.wait_for(self._events.__anext__(), within)

    async def replay(self) -> tuple[list[chat_pb2.Message], int]:
        """The replayed messages and CaughtUp's last_seq."""
        messages: list[chat_pb2.Message] = []
        while True:
            event = await self.event()
            if event.HasField("caught_up"):
                return messages, event.caught_up.last_seq
            assert entries(event), event
            messages += delivered(event)

    async def entries(self, count: int, within: float = DEADLINE) -> list[Entry]:
        """The next ``count`` messages and changes, in seq order, skipping heartbeats."""
        found: list[Entry] = []

        async def collect() -> None:
            while len(found) < count:
                event = await self._events.__anext__()
                assert not event.HasField("caught_up"), "CaughtUp came twice"
                found.extend(entries(event))

        await asyncio.wait_for(collect(), within)
        return found

    async def messages(self, count: int, within: float = DEADLINE) -> list[chat_pb2.Message]:
        """The next ``count`` messages, skipping heartbeats; all within ``within`` seconds."""
        messages: list[chat_pb2.Message] = []

        async def collect() -> None:
            while len(messages) < count:
                event = await self._events.__anext__()
                assert not event.HasField("caught_up"), "CaughtUp came twice"
                messages.extend(delivered(event))

        await asyncio.wait_for(collect(), within)
        return messages

    async def status(self, within: float = DEADLINE) -> tuple[grpc.StatusCode, str]:
        """Read until the stream ends with an error; its code and details."""

        async def drain() -> None:
            async for _ in self._events:
                pass

        with pytest.raises(grpc.aio.AioRpcError) as info:
            await asyncio.wait_for(drain(), within)
        return info.value.code(), info.value.details() or ""

    def cancel(self) -> None:
        """Close the stream from the client side."""
        self.call.cancel()
