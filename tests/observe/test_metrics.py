"""The metrics the alerts and the dashboard read, observed by real servers on both backends."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import grpc
import grpc.aio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from meshchat.auth.v1 import auth_pb2, auth_pb2_grpc
from meshchat.chat.v1 import chat_pb2, chat_pb2_grpc
from meshchat_auth.config import TokenPolicy
from meshchat_runtime.settings import HostPort
from tests.support.stack import (
    bearer,
    loopback_settings,
    register,
    register_and_login,
    start_auth,
    start_chat,
)

DEADLINE = 15.0
WITH_METRICS = {"metrics_listen": HostPort("127.0.0.1", 0)}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int | None) -> Samples:
    """Every sample of a /metrics endpoint, by name and sorted labels."""
    assert port is not None
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


async def test_a_throttled_login_is_counted_by_limit(tmp_path: Path, database_url: str) -> None:
    auth = await start_auth(
        tmp_path,
        database_url,
        tokens=TokenPolicy(max_failed_logins=2, failed_login_window=60),
        server=loopback_settings(**WITH_METRICS),
    )
    try:
        async with auth.channel() as channel:
            await register(channel, "alice")
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            refused = ("meshchat_limit_refusals_total", (("limit", "failed_logins"),))
            assert scrape(auth.metrics_port)[refused] == 0  # present before the first refusal
            codes = []
            for _ in range(3):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.Login(auth_pb2.LoginRequest(username="alice", password="x" * 8))
                codes.append(info.value.code())
            assert codes[-1] == grpc.StatusCode.RESOURCE_EXHAUSTED
            samples = scrape(auth.metrics_port)
        assert samples[refused] == 1
        assert samples[("meshchat_db_operation_seconds_count", ())] > 0
        if database_url.startswith("postgresql"):
            pool = {"meshchat_db_pool_connections", "meshchat_db_pool_max_connections"}
            assert pool <= names(samples)
    finally:
        await auth.stop()


async def test_a_live_delivery_is_timed_and_catch_ups_are_counted(
    tmp_path: Path, database_url: str
) -> None:
    auth = await start_auth(tmp_path / "auth")
    chat = await start_chat(
        tmp_path / "chat", auth, database_url, server=loopback_settings(**WITH_METRICS)
    )
    try:
        async with auth.channel() as auth_channel, chat.channel() as chat_channel:
            alice = bearer((await register_and_login(auth_channel, "alice")).access_token)
            stub = chat_pb2_grpc.ChatServiceStub(chat_channel)
            created = await stub.CreateChat(chat_pb2.CreateChatRequest(name="g"), metadata=alice)
            port = chat.app.server.metrics_port
            before = scrape(port)
            assert before[("meshchat_chat_delivery_latency_seconds_count", ())] == 0
            stream = stub.Connect(chat_pb2.ConnectRequest(chat_id=created.id), metadata=alice)
            events = stream.__aiter__()
            first = await asyncio.wait_for(events.__anext__(), DEADLINE)
            assert first.HasField("caught_up")
            await stub.SendMessage(
                chat_pb2.SendMessageRequest(chat_id=created.id, text="hi"), metadata=alice
            )
            delivered = await asyncio.wait_for(events.__anext__(), DEADLINE)
            assert delivered.message.text == "hi"
            after = scrape(port)
            stream.cancel()
        assert after[("meshchat_chat_delivery_latency_seconds_count", ())] == 1
        assert 0 <= after[("meshchat_chat_delivery_latency_seconds_sum", ())] < DEADLINE
        reads = "meshchat_chat_catchup_reads_total"
        assert after[(reads, (("reason", "connect"),))] == 1
        assert after[(reads, (("reason", "overflow"),))] == 0
        assert 0 <= after[("meshchat_chat_jwks_age_seconds", ())] < DEADLINE
        assert after[("meshchat_chat_jwks_max_age_seconds", ())] == chat.config.jwks_max_age
        assert (
            after[("meshchat_db_operation_seconds_count", ())]
            > before[("meshchat_db_operation_seconds_count", ())]
        )
        leaked = {k for labels in (key[1] for key in after) for k, _ in labels}
        assert not leaked & {"user_id", "chat_id", "user", "chat", "username"}
    finally:
        await chat.stop()
        await auth.stop()
