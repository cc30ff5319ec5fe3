"""ChatService.connect: replay, CaughtUp, live messages, heartbeats, and how a stream ends.
A stream never skips or repeats a message."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from meshchat_chat.authclient.revocations import RevocationList
from meshchat_chat.domain import Caller, CaughtUp, Heartbeat, MessageBatch, StreamEvent
from meshchat_chat.fanout.hub import Hub
from meshchat_chat.service import ChatLimits, ChatService
from meshchat_runtime.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from tests.support.callers import person
from tests.support.fakes import MemoryChatStore, MemoryUserDirectory

WITHIN = 5.0
Events = AsyncGenerator[StreamEvent, None]


async def next_event(stream: Events) -> StreamEvent:
    return await asyncio.wait_for(anext(stream), WITHIN)


async def replay(stream: Events) -> tuple[list[int], int]:
    """The replayed seqs and CaughtUp's last_seq."""
    seqs: list[int] = []
    while not isinstance(event := await next_event(stream), CaughtUp):
        assert isinstance(event, MessageBatch), event
        seqs += [m.seq for m in event.messages]
    return seqs, event.last_seq


async def live(stream: Events, count: int) -> list[int]:
    """The next ``count`` messages' seqs, skipping heartbeats."""
    seqs: list[int] = []
    while len(seqs) < count:
        event = await next_event(stream)
        assert not isinstance(event, CaughtUp), "CaughtUp came twice"
        if isinstance(event, MessageBatch):
            seqs += [m.seq for m in event.messages]
    return seqs


async def ending(stream: Events) -> Exception:
    """Read until the stream fails; the error (the caller checks that it is the right one)."""
    try:
        while True:
            await next_event(stream)
    except Exception as exc:
        return exc


async def send(chats: ChatService, caller: Caller, chat_id: str, count: int) -> None:
    for i in range(count):
        await chats.send_message(caller, chat_id, f"m{i}", "")


async def test_replay_then_caught_up_then_live_and_resume(
    chats: ChatService, directory: MemoryUserDirectory
) -> None:
    alice, bob = person(directory, "alice"), person(directory, "bob")
    chat = await chats.create_chat(alice, "live", ["bob"])
    await send(chats, alice, chat.id, 5)
    stream = chats.connect(bob, chat.id, 0)
    assert await replay(stream) == ([1, 2, 3, 4, 5], 5)
    await send(chats, alice, chat.id, 3)
    assert await live(stream, 3) == [6, 7, 8]
    await stream.aclose()
    await send(chats, alice, chat.id, 1)
    resumed = chats.connect(bob, chat.id, 7)
    assert await replay(resumed) == ([8, 9], 9)
    await resumed.aclose()
    empty = chats.connect(bob, chat.id, 9)
    assert await replay(empty) == ([], 9)
    await empty.aclose()


async def test_streams_opened_during_a_flood_of_sends_see_every_message_once_in_order(
    chats: ChatService, directory: MemoryUserDirectory
) -> None:
    alice, bob = person(directory, "alice"), person(directory, "bob")
    chat = await chats.create_chat(alice, "flood", ["bob"])
    total = 200
    sent = 0
    reached = {at: asyncio.Event() for at in (0, 50, 120, 190)}
    reached[0].set()

    async def sender(caller: Caller) -> None:
        nonlocal sent
        for i in range(total // 2):
            await chats.send_message(caller, chat.id, f"{i}", "")
            sent += 1
            for at, event in reached.items():
                if sent >= at:
                    event.set()
            await asyncio.sleep(0)  # let the readers run between sends

    async def reader(after_sends: int) -> list[int]:
        await reached[after_sends].wait()
        stream = chats.connect(bob, chat.id, 0)
        replayed, last = await replay(stream)
        assert replayed == list(range(1, last + 1))
        seen = replayed + await live(stream, total - last)
        await stream.aclose()
        return seen

    readers = [asyncio.create_task(reader(at)) for at in reached]
    await asyncio.gather(sender(alice), sender(bob))
    for seen in await asyncio.gather(*readers):
        assert seen == list(range(1, total + 1))


async def test_an_idle_stream_gets_heartbeats_and_then_messages(
    chats: ChatService, directory: MemoryUserDirectory
) -> None:
    alice = person(directory, "alice")
    chat = await chats.create_chat(alice, "quiet", [])
    stream = chats.connect(alice, chat.id, 0)
    assert await replay(stream) == ([], 0)
    for _ in range(2):
        assert isinstance(await next_event(stream), Heartbeat)
    await send(chats, alice, chat.id, 1)
    assert await live(stream, 1) == [1]
    await stream.aclose()


async def test_connect_checks_the_chat_the_caller_and_after_seq(
    chats: ChatService, directory: MemoryUserDirectory
) -> None:
    alice, bob = person(directory, "alice"), person(directory, "bob")
    root = person(directory, "root", admin=True)
    chat = await chats.create_chat(alice, "guarded", [])
    await send(chats, alice, chat.id, 1)
    assert isinstance(await ending(chats.connect(bob, chat.id, 0)), PermissionDenied)
    beyond = await ending(chats.connect(alice, chat.id, 2))
    assert isinstance(beyond, InvalidArgument)
    assert beyond.field == "after_seq"
    assert isinstance(await ending(chats.connect(alice, chat.id, -1)), InvalidArgument)
    missing = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
    assert isinstance(await ending(chats.connect(alice, missing, 0)), NotFound)
    admin_stream = chats.connect(root, chat.id, 0)
    assert await replay(admin_stream) == ([1], 1)
    await admin_stream.aclose()


async def test_a_removed_member_is_cut_off_and_a_deleted_chat_ends_its_streams(
    chats: ChatService, directory: MemoryUserDirectory
) -> None:
    alice, bob, carol = (person(directory, n) for n in ("alice", "bob", "carol"))
    chat = await chats.create_chat(alice, "shrinking", ["bob", "carol"])
    bobs, carols, alices = (chats.connect(p, chat.id, 0) for p in (bob, carol, alice))
    for stream in (bobs, carols, alices):
        await replay(stream)
    await chats.remove_member(alice, chat.id, "bob")
    assert isinstance(await ending(bobs), PermissionDenied)
    await send(chats, alice, chat.id, 1)
    assert await live(carols, 1) == [1]
    await chats.delete_chat(alice, chat.id)
    assert isinstance(await ending(carols), NotFound)
    assert isinstance(await ending(alices), NotFound)


async def test_a_stream_ends_when_the_token_expires(
    chats: ChatService, directory: MemoryUserDirectory
) -> None:
    alice = person(directory, "alice", expires_in=0.3)
    chat = await chats.create_chat(alice, "short", [])
    stream = chats.connect(alice, chat.id, 0)
    await replay(stream)
    expired = await ending(stream)
    assert isinstance(expired, Unauthenticated)
    assert "reconnect with after_seq" in str(expired)


async def test_closing_the_hub_ends_streams_so_clients_resume_elsewhere(
    chats: ChatService, directory: MemoryUserDirectory, hub: Hub
) -> None:
    alice = person(directory, "alice")
    chat = await chats.create_chat(alice, "stopping", [])
    stream = chats.connect(alice, chat.id, 0)
    await replay(stream)
    hub.close_streams()
    closing = await ending(stream)
    assert isinstance(closing, Unavailable)
    assert "reconnect with after_seq" in str(closing)


async def test_a_stream_that_lags_catches_up_from_the_store_without_loss(
    chat_store: MemoryChatStore, directory: MemoryUserDirectory, chat_limits: ChatLimits
) -> None:
    hub = Hub(chat_store, queue_size=2)
    chats = ChatService(chat_store, directory, hub, chat_limits, RevocationList())
    alice = person(directory, "alice")
    chat = await chats.create_chat(alice, "firehose", [])
    stream = chats.connect(alice, chat.id, 0)
    await replay(stream)
    await send(chats, alice, chat.id, 50)  # nobody reads meanwhile: the log moves on
    assert await live(stream, 50) == list(range(1, 51))
    assert hub.stats.overflows >= 1
    await send(chats, alice, chat.id, 1)
    assert await live(stream, 1) == [51]
    await stream.aclose()


async def test_closed_streams_release_their_subscriptions(
    chats: ChatService, directory: MemoryUserDirectory, hub: Hub
) -> None:
    alice = person(directory, "alice")
    chat = await chats.create_chat(alice, "come and go", [])
    streams = [chats.connect(alice, chat.id, 0) for _ in range(5)]
    for stream in streams:
        await replay(stream)
    assert hub.stats.streams == 5
    for stream in streams:
        await stream.aclose()
    assert hub.stats.streams == 0
