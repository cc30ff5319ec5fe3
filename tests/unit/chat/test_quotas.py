"""ChatService's quotas: streams per user, the send rate, chats per owner, members per chat."""

from __future__ import annotations

import pytest

from meshchat_chat.authclient.revocations import RevocationList
from meshchat_chat.domain import CaughtUp
from meshchat_chat.fanout.hub import Hub
from meshchat_chat.service import ChatLimits, ChatService
from meshchat_runtime.errors import ResourceExhausted
from tests.support.callers import person
from tests.support.clock import FakeClock
from tests.support.fakes import MemoryChatStore, MemoryUserDirectory


def service(
    chat_store: MemoryChatStore, directory: MemoryUserDirectory, clock: FakeClock, **limits: float
) -> ChatService:
    return ChatService(
        chat_store,
        directory,
        Hub(chat_store, queue_size=16),
        ChatLimits(**limits),  # type: ignore[arg-type]
        RevocationList(),
        clock.timestamp,
    )


async def test_the_stream_cap_counts_open_streams_and_frees_closed_ones(
    chat_store: MemoryChatStore, directory: MemoryUserDirectory, clock: FakeClock
) -> None:
    chats = service(chat_store, directory, clock, max_streams_per_user=2)
    alice, bob = person(directory, "alice"), person(directory, "bob")
    chat = await chats.create_chat(alice, "c", ["bob"])
    first, second = chats.connect(alice, chat.id, 0), chats.connect(alice, chat.id, 0)
    for stream in (first, second):
        assert isinstance(await anext(stream), CaughtUp)
    with pytest.raises(ResourceExhausted, match="at most 2 per user") as info:
        await anext(chats.connect(alice, chat.id, 0))
    assert info.value.retry_after > 0
    bobs = chats.connect(bob, chat.id, 0)
    assert isinstance(await anext(bobs), CaughtUp)
    await first.aclose()
    third = chats.connect(alice, chat.id, 0)
    assert isinstance(await anext(third), CaughtUp)
    for stream in (second, third, bobs):
        await stream.aclose()


async def test_the_send_rate_is_a_token_bucket_per_user(
    chat_store: MemoryChatStore, directory: MemoryUserDirectory, clock: FakeClock
) -> None:
    chats = service(chat_store, directory, clock, send_burst=3, send_interval=2.0)
    alice, bob = person(directory, "alice"), person(directory, "bob")
    chat = await chats.create_chat(alice, "c", ["bob"])
    for i in range(3):
        await chats.send_message(alice, chat.id, f"m{i}", "")
    with pytest.raises(ResourceExhausted, match=r"try again in 2\.0 s") as info:
        await chats.send_message(alice, chat.id, "too many", "")
    assert info.value.retry_after == pytest.approx(2.0)
    await chats.send_message(bob, chat.id, "bob has his own bucket", "")
    clock.advance(1.5)
    with pytest.raises(ResourceExhausted, match=r"try again in 0\.5 s"):
        await chats.send_message(alice, chat.id, "still too soon", "")
    clock.advance(0.5)
    await chats.send_message(alice, chat.id, "one more", "")
    with pytest.raises(ResourceExhausted):
        await chats.send_message(alice, chat.id, "and no more", "")
    clock.advance(60)
    for i in range(3):  # refilled to the burst, never beyond
        await chats.send_message(alice, chat.id, f"again {i}", "")
    with pytest.raises(ResourceExhausted):
        await chats.send_message(alice, chat.id, "over", "")


async def test_chats_per_owner_and_members_per_chat_are_limited(
    chat_store: MemoryChatStore, directory: MemoryUserDirectory, clock: FakeClock
) -> None:
    chats = service(chat_store, directory, clock, max_chats_per_user=2, max_members_per_chat=3)
    alice = person(directory, "alice")
    for name in ("bob", "carol", "dave", "erin"):
        directory.add(name)
    with pytest.raises(ResourceExhausted, match="at most 3 members"):
        await chats.create_chat(alice, "big", ["bob", "carol", "dave"])
    assert directory.lookups == []
    first = await chats.create_chat(alice, "first", ["bob"])
    await chats.create_chat(alice, "second", [])
    with pytest.raises(ResourceExhausted, match="you own 2 chats"):
        await chats.create_chat(alice, "third", [])
    await chats.add_member(alice, first.id, "carol")
    with pytest.raises(ResourceExhausted, match="at most 3 members"):
        await chats.add_member(alice, first.id, "dave")
    await chats.delete_chat(alice, first.id)
    await chats.create_chat(alice, "third", [])
