"""Batched delivery as a client sees it, on both backends: a stream that falls behind gets its
backlog in batches, and still every message once, in seq order; a replay and a resume with
after_seq are batched the same way; a stream that keeps up gets one message per response."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc.aio
import pytest

from meshchat.chat.v1 import chat_pb2, chat_pb2_grpc
from tests.support.people import People, Stream, delivered
from tests.support.stack import RunningChat


async def responses(stream: Stream, count: int) -> list[chat_pb2.ConnectResponse]:
    """The responses that carry the next ``count`` messages (heartbeats skipped)."""
    got: list[chat_pb2.ConnectResponse] = []
    messages = 0
    while messages < count:
        event = await stream.event()
        assert not event.HasField("caught_up"), "CaughtUp came twice"
        if delivered(event):
            got.append(event)
            messages += len(delivered(event))
    return got


def seqs(events: list[chat_pb2.ConnectResponse]) -> list[int]:
    return [m.seq for event in events for m in delivered(event)]


async def test_a_stream_that_keeps_up_gets_one_message_per_response(people: People) -> None:
    alice, bob = await people("alice"), await people("bob")
    room = await alice.create_chat("one by one", "bob")
    stream = Stream(bob.connect(room.id))
    assert await stream.replay() == ([], 0)
    for i in range(1, 6):
        await alice.send(room.id, f"m{i}")
        [event] = await responses(stream, 1)
        assert event.HasField("message")
        assert event.message.seq == i
    stream.cancel()


# A flood is what these tests are about: the send rate limit is off, and one user holds more
# streams than the per-user cap (tests/chat/test_abuse.py tests both).
UNLIMITED = {"send_interval": 0.0, "max_streams_per_user": 100}


@pytest.mark.parametrize("chat_options", [{"stream_queue_size": 64, **UNLIMITED}])
async def test_a_backlog_comes_in_batches_once_in_order_and_resumes_with_after_seq(
    people: People, chat: RunningChat
) -> None:
    alice, bob = await people("alice"), await people("bob")
    room = await alice.create_chat("backlog", "bob")
    # Without BDP probing the client keeps HTTP/2's 64 KiB window: the server cannot write
    # to a stream that is not read, so its backlog builds up.
    slow_channel = grpc.aio.insecure_channel(chat.address, options=[("grpc.http2.bdp_probe", 0)])
    slow = Stream(
        dataclasses.replace(bob, stub=chat_pb2_grpc.ChatServiceStub(slow_channel)).connect(room.id)
    )
    await slow.replay()
    total, text = 300, "y" * 1000
    sent = await asyncio.gather(*(alice.send(room.id, f"{i} {text}") for i in range(total)))
    assert sorted(m.seq for m in sent) == list(range(1, total + 1))
    events = await responses(slow, total)
    assert seqs(events) == list(range(1, total + 1))
    assert any(e.HasField("batch") for e in events), "a backlog came one message at a time"
    texts = {m.seq: m.text for m in sent}
    assert all(m.text == texts[m.seq] for e in events for m in delivered(e))
    await alice.send(room.id, "live again")
    assert seqs(await responses(slow, 1)) == [total + 1]
    slow.cancel()
    await slow_channel.close()

    resumed = Stream(bob.connect(room.id, after_seq=17))
    replayed, last = await resumed.replay()
    assert [m.seq for m in replayed] == list(range(18, total + 2))
    assert last == total + 1
    resumed.cancel()


@pytest.mark.parametrize("chat_options", [UNLIMITED])
async def test_many_streams_at_the_same_point_get_the_same_messages(people: People) -> None:
    alice = await people("alice")
    room = await alice.create_chat("shared")
    streams = [Stream(alice.connect(room.id)) for _ in range(20)]
    for stream in streams:
        await stream.replay()
    await asyncio.gather(*(alice.send(room.id, f"m{i}") for i in range(50)))
    received = await asyncio.gather(*(responses(s, 50) for s in streams))
    for events in received:
        assert seqs(events) == list(range(1, 51))
    for stream in streams:
        stream.cancel()
