"""PostgreSQL outages: the first call after a restart succeeds (no stale pooled connection),
and a service started before its database waits for it, NOT_SERVING, instead of exiting.
Each test of a restart runs its own throwaway PostgreSQL, which it stops and starts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import psycopg
import pytest
from grpc_health.v1 import health_pb2

from devtools.postgres import throwaway_postgres
from devtools.processes import ServiceProcess, wait_for_health
from meshchat.chat.v1 import chat_pb2, chat_pb2_grpc
from meshchat_runtime.database import check_connection
from tests.support.stack import (
    bearer,
    loopback_settings,
    register,
    register_and_login,
    start_auth,
    start_chat,
)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_the_first_calls_after_a_postgresql_restart_succeed(tmp_path: Path) -> None:
    # The health watchdog would find dead pooled connections and drop them one by one;
    # here it stays out of the way, so the calls are the first to touch the pools.
    quiet = loopback_settings(dependency_check_interval=3600)
    with throwaway_postgres() as pg:
        auth = await start_auth(tmp_path / "auth", pg.create_database(), server=quiet)
        chat = await start_chat(tmp_path / "chat", auth, pg.create_database(), server=quiet)
        try:
            async with auth.channel() as auth_channel, chat.channel() as chat_channel:
                pair = await register_and_login(auth_channel, "alice")
                stub = chat_pb2_grpc.ChatServiceStub(chat_channel)
                md = bearer(pair.access_token)
                room = await stub.CreateChat(chat_pb2.CreateChatRequest(name="r"), metadata=md)
                # Fill both pools with connections, all of which the restart kills.
                await asyncio.gather(
                    *(register(auth_channel, f"user{i}") for i in range(8)),
                    *(stub.ListChats(chat_pb2.ListChatsRequest(), metadata=md) for _ in range(8)),
                )
                await asyncio.to_thread(pg.stop)
                await asyncio.to_thread(pg.start_again)
                await register(auth_channel, "bob")
                sent = await stub.SendMessage(
                    chat_pb2.SendMessageRequest(chat_id=room.id, text="back"),
                    metadata=md,
                    # Milliseconds: the first dead connection found has every idle one
                    # checked at once. Found one by one, each after a longer pause of the
                    # pool (1 s, doubling), they took 3 to 30 s.
                    timeout=5,
                )
                assert sent.seq == 1
                reply = await stub.ListChats(chat_pb2.ListChatsRequest(), metadata=md, timeout=10)
                assert [c.id for c in reply.chats] == [room.id]
        finally:
            await chat.stop()
            await auth.stop()


@pytest.mark.parametrize("program", ["meshchat-auth", "meshchat-chat"])
async def test_a_service_started_before_its_database_waits_for_it_not_serving(
    tmp_path: Path, program: str
) -> None:
    auth = await start_auth(tmp_path / "auth")
    with throwaway_postgres() as pg:
        url = pg.create_database()
        await asyncio.to_thread(pg.stop)
        service = ServiceProcess(
            program,
            {"MESHCHAT_DATABASE_URL": url, "MESHCHAT_AUTH_ADDR": auth.address},
            tmp_path / "service",
        )
        await asyncio.to_thread(service.start, False)
        try:
            assert service.process is not None
            await asyncio.to_thread(
                wait_for_health, service.address, NOT_SERVING, 30, service.process
            )
            async with grpc.aio.insecure_channel(service.address) as channel:
                if program == "meshchat-auth":
                    with pytest.raises(grpc.aio.AioRpcError) as info:
                        await register(channel, "early")
                    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
                    assert "not available yet" in (info.value.details() or "")
                assert "the database is not available yet" in service.logs()
                await asyncio.to_thread(pg.start_again)
                await asyncio.to_thread(
                    wait_for_health, service.address, SERVING, 30, service.process
                )
                if program == "meshchat-auth":
                    await register(channel, "later")
                else:
                    async with auth.channel() as auth_channel:
                        pair = await register_and_login(auth_channel, "carol")
                    stub = chat_pb2_grpc.ChatServiceStub(channel)
                    await stub.CreateChat(
                        chat_pb2.CreateChatRequest(name="late"),
                        metadata=bearer(pair.access_token),
                        timeout=10,
                    )
            assert service.process.poll() is None, service.logs()
        finally:
            await asyncio.to_thread(service.stop)
            await auth.stop()


async def test_the_pools_check_refuses_a_connection_the_server_ended(postgres_url: str) -> None:
    async with (
        await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as victim,
        await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin,
    ):
        await check_connection(victim)  # alive: passes
        await admin.execute("SELECT pg_terminate_backend(%s)", (victim.info.backend_pid,))
        # The server's termination notice reaches the socket before the server closes it.
        await wait_for_input(victim)
        with pytest.raises(psycopg.OperationalError):
            await check_connection(victim)


async def wait_for_input(conn: psycopg.AsyncConnection[Any], within: float = 10.0) -> None:
    readable = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(conn.pgconn.socket, readable.set)
    try:
        await asyncio.wait_for(readable.wait(), within)
    finally:
        loop.remove_reader(conn.pgconn.socket)
