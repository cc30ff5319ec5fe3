"""Connect over the wire: the replay, CaughtUp, live messages and heartbeats as stream events,
errors as the stream's status, HTTP/2 flow control, cancellation and a stopping server. A
stream never skips or repeats a message. The stream's rules are tested in tests/unit/chat."""

from __future__ import annotations

import asyncio
import dataclasses
import random

import grpc
import pytest

from meshchat.chat.v1 import chat_pb2, chat_pb2_grpc
from tests.support.backends import SQLITE_ONLY
from tests.support.people import People, Person, Stream
from tests.support.rpc import eventually
from tests.support.stack import RunningChat


def seqs(messages: list[chat_pb2.Message]) -> list[int]:
    return [m.seq for m in messages]


async def test_replay_then_caught_up_then_live_and_resume_after_a_reconnect(
    people: People,
) -> None:
    alice, bob = await people("alice"), await people("bob")
    chat = await alice.create_chat("live", "bob")
    for i in range(1, 6):
        await alice.send(chat.id, f"m{i}")
    stream = Stream(bob.connect(chat.id))
    replayed, last = await stream.replay()
    assert (seqs(replayed), last) == ([1, 2, 3, 4, 5], 5)
    assert [m.text for m in replayed] == ["m1", "m2", "m3", "m4", "m5"]
    for i in range(6, 9):
        await alice.send(chat.id, f"m{i}")
    live = await stream.messages(3)
    assert seqs(live) == [6, 7, 8]
    assert live[0].sender_username == "alice"
    stream.cancel()
    await alice.send(chat.id, "m9")
    resumed = Stream(bob.connect(chat.id, after_seq=7))
    replayed, last = await resumed.replay()
    assert (seqs(replayed), last) == ([8, 9], 9)
    await alice.send(chat.id, "m10")
    assert seqs(await resumed.messages(1)) == [10]
    resumed.cancel()
    empty = Stream(bob.connect(chat.id, after_seq=10))
    assert await empty.replay() == ([], 10)
    empty.cancel()


# A flood is what these tests are about: the send rate limit is off (tests/chat/test_abuse.py
# tests it).
UNLIMITED_SENDS = {"send_interval": 0.0}


@SQLITE_ONLY
@pytest.mark.parametrize("chat_options", [UNLIMITED_SENDS])
async def test_streams_opened_during_a_flood_of_sends_see_every_message_once_in_order(
    people: People,
) -> None:
    alice, bob, carol = await people("alice"), await people("bob"), await people("carol")
    chat = await alice.create_chat("flood", "bob", "carol")
    total = 150
    rng = random.Random(7)
    sent_so_far = 0
    reached = {at: asyncio.Event() for at in (0, 40, 90, 120)}
    reached[0].set()

    async def send_all(sender: Person, texts: range) -> None:
        nonlocal sent_so_far
        for i in texts:
            await sender.send(chat.id, f"{sender.username} {i}")
            sent_so_far += 1
            for at, event in reached.items():
                if sent_so_far >= at:
                    event.set()
            if rng.random() < 0.3:
                await asyncio.sleep(0)

    async def subscribe_after(reader: Person, sends: int) -> list[int]:
        await reached[sends].wait()
        stream = Stream(reader.connect(chat.id))
        replayed, last = await stream.replay()
        assert seqs(replayed) == list(range(1, last + 1))
        live = await stream.messages(total - last)
        stream.cancel()
        return seqs(replayed) + seqs(live)

    readers = [
        asyncio.create_task(subscribe_after(person, at))
        for person, at in ((bob, 0), (carol, 40), (bob, 90), (alice, 120))
    ]
    await asyncio.gather(send_all(alice, range(75)), send_all(bob, range(75)))
    for seen in await asyncio.gather(*readers):
        assert seen == list(range(1, total + 1))


@SQLITE_ONLY
@pytest.mark.parametrize("chat_options", [{"heartbeat_interval": 0.2}])
async def test_an_idle_stream_gets_heartbeats_and_then_messages(people: People) -> None:
    alice = await people("alice")
    chat = await alice.create_chat("quiet")
    stream = Stream(alice.connect(chat.id))
    assert await stream.replay() == ([], 0)
    for _ in range(2):
        assert (await stream.event(within=5)).HasField("heartbeat")
    await alice.send(chat.id, "finally")
    assert seqs(await stream.messages(1)) == [1]
    stream.cancel()


@SQLITE_ONLY
async def test_connect_checks_the_chat_the_caller_and_after_seq(people: People) -> None:
    alice, bob = await people("alice"), await people("bob")
    root = await people("root", admin=True)
    chat = await alice.create_chat("guarded")
    await alice.send(chat.id, "one")
    assert (await Stream(bob.connect(chat.id)).status())[0] == grpc.StatusCode.PERMISSION_DENIED
    code, details = await Stream(alice.connect(chat.id, after_seq=2)).status()
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("after_seq:")
    code, _ = await Stream(alice.connect(chat.id, after_seq=-1)).status()
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    missing = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
    assert (await Stream(alice.connect(missing)).status())[0] == grpc.StatusCode.NOT_FOUND
    admin_stream = Stream(root.connect(chat.id))
    assert seqs((await admin_stream.replay())[0]) == [1]
    admin_stream.cancel()


@SQLITE_ONLY
@pytest.mark.parametrize("chat_options", [{"stream_queue_size": 4, **UNLIMITED_SENDS}])
async def test_a_subscriber_that_stops_reading_catches_up_without_blocking_senders(
    people: People, chat: RunningChat
) -> None:
    alice, bob = await people("alice"), await people("bob")
    room = await alice.create_chat("firehose", "bob")
    # Without BDP probing the client keeps HTTP/2's 64 KiB window: a stream it does not read
    # blocks the server's writes, so the stream falls behind the messages its chat keeps.
    slow_channel = grpc.aio.insecure_channel(chat.address, options=[("grpc.http2.bdp_probe", 0)])
    bob = dataclasses.replace(bob, stub=chat_pb2_grpc.ChatServiceStub(slow_channel))
    slow = Stream(bob.connect(room.id))
    await slow.replay()
    total, text = 400, "x" * 4000
    sent = [await alice.send(room.id, f"{i} {text}") for i in range(total)]
    assert seqs(sent) == list(range(1, total + 1))
    received = await slow.messages(total)
    assert seqs(received) == list(range(1, total + 1))
    assert chat.app.hub.stats.overflows >= 1
    assert all(m.text == f"{i} {text}" for i, m in enumerate(received))
    await alice.send(room.id, "and live again")
    assert seqs(await slow.messages(1)) == [total + 1]
    slow.cancel()
    await slow_channel.close()


@SQLITE_ONLY
async def test_closed_streams_release_their_subscriptions(
    people: People, chat: RunningChat
) -> None:
    alice = await people("alice")
    room = await alice.create_chat("come and go")
    streams = [Stream(alice.connect(room.id)) for _ in range(5)]
    for stream in streams:
        await stream.replay()
    assert chat.app.hub.stats.streams == 5
    for stream in streams:
        stream.cancel()
    await eventually(lambda: chat.app.hub.stats.streams == 0, what="streams released")
    assert (await alice.send(room.id, "nobody listening")).seq == 1


@SQLITE_ONLY
async def test_stopping_a_replica_ends_its_streams_at_once_so_clients_resume_elsewhere(
    people: People, chat: RunningChat
) -> None:
    alice, bob = await people("alice"), await people("bob")
    room = await alice.create_chat("stopping", "bob")
    await alice.send(room.id, "before")
    stream = Stream(bob.connect(room.id))
    assert (await stream.replay())[1] == 1
    # A long grace period: the stream must end at the start of it, not at its end.
    stopping = asyncio.create_task(chat.app.stop(grace=60))
    code, details = await stream.status()
    assert code == grpc.StatusCode.UNAVAILABLE
    assert "reconnect with after_seq" in details
    await asyncio.wait_for(stopping, 30)
