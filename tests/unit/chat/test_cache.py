"""The chat cache: hits, invalidations, reads that overlap a change, and suspension."""

from __future__ import annotations

import asyncio
import uuid

from meshchat_chat.domain import Chat, Member
from meshchat_chat.fanout.cache import ChatCache
from meshchat_runtime.timestamps import utc_now

CHAT = str(uuid.uuid4())


def chat(last_seq: int = 0, *members: str) -> Chat:
    now = utc_now()
    return Chat(CHAT, "c", "owner", now, last_seq, tuple(Member(m, m, now) for m in members))


class Store:
    """Counts reads; a read can be held until released."""

    def __init__(self, value: Chat) -> None:
        self.value = value
        self.reads = 0
        self.release = asyncio.Event()
        self.release.set()
        self.started = asyncio.Event()

    async def get_chat(self, chat_id: str) -> Chat | None:
        self.reads += 1
        self.started.set()
        seen = self.value
        await self.release.wait()
        return seen


async def test_a_cached_chat_is_read_once_until_its_members_change() -> None:
    store, cache = Store(chat(0, "alice")), ChatCache(active=True)
    assert await cache.get(CHAT, store.get_chat) == store.value
    assert await cache.get(CHAT, store.get_chat) == store.value
    assert (store.reads, cache.hits) == (1, 1)
    cache.note_seq(CHAT, 5)
    noted = await cache.get(CHAT, store.get_chat)
    assert noted is not None
    assert noted.last_seq == 5
    store.value = chat(5, "alice", "bob")
    cache.forget(CHAT)
    assert await cache.get(CHAT, store.get_chat) == store.value
    assert store.reads == 2


async def test_a_read_that_overlaps_a_change_is_not_cached() -> None:
    store, cache = Store(chat(0, "alice")), ChatCache(active=True)
    store.release.clear()
    reading = asyncio.create_task(cache.get(CHAT, store.get_chat))
    await asyncio.wait_for(store.started.wait(), 5)
    store.value = chat(0)
    cache.forget(CHAT)  # alice left while the read was in flight
    store.release.set()
    assert (await reading) is not None
    assert cache.peek(CHAT) is None
    assert await cache.get(CHAT, store.get_chat) == store.value


async def test_a_suspended_cache_reads_every_time_and_starts_afresh() -> None:
    store, cache = Store(chat(0, "alice")), ChatCache(active=True)
    await cache.get(CHAT, store.get_chat)
    cache.suspend()
    assert cache.peek(CHAT) is None
    for _ in range(3):
        await cache.get(CHAT, store.get_chat)
    assert store.reads == 4
    cache.resume()
    await cache.get(CHAT, store.get_chat)
    await cache.get(CHAT, store.get_chat)
    assert store.reads == 5
