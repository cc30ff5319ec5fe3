"""A chat replica and an auth service that is down (issue 10, item 13): usable keys are a
health dependency, and the last good key set, kept in chat's own database, lets a replica
started during the outage verify the tokens of keys it has seen. Real servers throughout;
the auth service comes back on the same port, with the same keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2

from devtools.processes import free_port, health_stub
from meshchat.chat.v1 import chat_pb2, chat_pb2_grpc
from meshchat_auth.config import TokenPolicy
from meshchat_runtime.settings import HostPort
from tests.support.backends import SQLITE_ONLY
from tests.support.rpc import eventually, status_of
from tests.support.stack import (
    RunningAuth,
    RunningChat,
    bearer,
    loopback_settings,
    register_and_login,
    start_auth,
    start_chat,
)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Auth:
    """An auth service that can be stopped and started again on one port."""

    def __init__(self, tmp_path: Path) -> None:
        self._dir = tmp_path / "auth"
        self.address = f"127.0.0.1:{free_port()}"
        self.running: RunningAuth | None = None

    async def start(self) -> RunningAuth:
        port = int(self.address.rpartition(":")[2])
        settings = loopback_settings(listen=HostPort("127.0.0.1", port))
        self.running = await start_auth(self._dir, server=settings)
        return self.running

    async def stop(self) -> None:
        if self.running is not None:
            await self.running.stop()
            self.running = None


@pytest.fixture
async def outage_auth(tmp_path: Path) -> AsyncIterator[Auth]:
    auth = Auth(tmp_path)
    yield auth
    await auth.stop()


async def health(chat: RunningChat) -> int:
    async with chat.channel() as channel:
        reply = await health_stub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return int(reply.status)


async def list_chats(chat: RunningChat, token: str) -> chat_pb2.ListChatsResponse:
    async with chat.channel() as channel:
        return await chat_pb2_grpc.ChatServiceStub(channel).ListChats(
            chat_pb2.ListChatsRequest(), metadata=bearer(token), timeout=10
        )


async def start_replica(path: Path, auth: Auth, database_url: str) -> RunningChat:
    """A chat replica trusting ``auth``, which need not be up (its tokens' claims are the
    defaults)."""
    defaults = TokenPolicy()
    return await start_chat(
        path, auth.address, database_url, issuer=defaults.issuer, audience=defaults.audience
    )


async def test_a_replica_started_during_an_auth_outage_uses_the_keys_it_kept(
    tmp_path: Path, outage_auth: Auth, database_url: str
) -> None:
    running = await outage_auth.start()
    async with running.channel() as channel:
        pair = await register_and_login(channel, "alice")
    first = await start_replica(tmp_path / "first", outage_auth, database_url)
    try:
        await eventually(lambda: first.app.jwks is not None and first.app.jwks.usable)
        assert len((await list_chats(first, pair.access_token)).chats) == 0
    finally:
        await first.stop()
    await outage_auth.stop()
    # The auth service is down: a new replica on the same database starts with the kept keys.
    second = await start_replica(tmp_path / "second", outage_auth, database_url)
    try:
        assert await health(second) == SERVING
        assert len((await list_chats(second, pair.access_token)).chats) == 0
    finally:
        await second.stop()


@SQLITE_ONLY
async def test_a_replica_without_keys_is_not_serving_until_the_auth_service_is_back(
    tmp_path: Path, outage_auth: Auth, database_url: str
) -> None:
    running = await outage_auth.start()
    async with running.channel() as channel:
        pair = await register_and_login(channel, "bob")
    await outage_auth.stop()
    chat = await start_replica(tmp_path / "chat", outage_auth, database_url)
    try:
        assert await health(chat) == NOT_SERVING
        code, details = await status_of(list_chats(chat, pair.access_token))
        assert code == grpc.StatusCode.UNAVAILABLE, details
        await outage_auth.start()

        async def serving() -> bool:
            return await health(chat) == SERVING

        await eventually(serving, within=30, what="SERVING once the auth service is back")
        assert len((await list_chats(chat, pair.access_token)).chats) == 0
    finally:
        await chat.stop()
