"""The hub's ordering and catch-up rules, on the in-memory store."""

from __future__ import annotations

import asyncio
import uuid

from meshchat_chat.domain import Entry, Message, NewMessage, UserRef
from meshchat_chat.fanout.hub import Hub, Signal, Subscription
from meshchat_chat.store import Store
from meshchat_runtime.timestamps import utc_now
from tests.support.chats import new_chat
from tests.support.fakes import MemoryChatStore

ALICE = UserRef(str(uuid.uuid4()), "alice")


async def store_messages(store: Store, chat_id: str, count: int) -> list[Message]:
    stored = []
    for i in range(count):
        result = await store.send_message(NewMessage(chat_id, ALICE, f"m{i}", "", utc_now()))
        assert result.message is not None
        stored.append(result.message)
    return stored


class Reader:
    """Reads a subscription the way a stream does: from its own position on."""

    def __init__(self, subscription: Subscription, at: int = 0) -> None:
        self.subscription = subscription
        self.at = at
        self.batches: list[int] = []

    async def take(self, count: int) -> list[int | Signal]:
        items: list[int | Signal] = []
        while len(items) < count:
            item = await self.subscription.next(self.at, 5)
            assert item is not None, items
            if isinstance(item, Signal):
                items.append(item)
            else:
                self.at = item[-1].seq
                self.batches.append(len(item))
                items += [m.seq for m in item]
        return items


async def test_a_message_ahead_of_its_predecessors_waits_for_them(
    chat_store: MemoryChatStore,
) -> None:
    chat_id = (await new_chat(chat_store, ALICE)).id
    hub = Hub(chat_store, queue_size=16)
    async with hub.subscribe(chat_id) as subscription:
        reader = Reader(subscription)
        first, second, third = await store_messages(chat_store, chat_id, 3)
        hub.publish(third)  # 1 and 2 are committed but not published yet: read from the store
        assert await reader.take(3) == [1, 2, 3]
        hub.publish(first)
        hub.publish(second)
        assert await subscription.next(3, 0.05) is None  # already delivered: dropped


async def test_announcements_are_read_from_the_store_once_known_ones_are_ignored(
    chat_store: MemoryChatStore,
) -> None:
    chat_id = (await new_chat(chat_store, ALICE)).id
    hub = Hub(chat_store, queue_size=16)
    async with hub.subscribe(chat_id) as a, hub.subscribe(chat_id) as b:
        assert hub.stats.streams == 2
        await store_messages(chat_store, chat_id, 2)
        hub.announce(chat_id, 2)
        assert await Reader(a).take(2) == [1, 2]
        assert await Reader(b).take(2) == [1, 2]
        hub.announce(chat_id, 1)
        assert await a.next(2, 0.05) is None
    assert hub.stats.streams == 0


async def test_waiting_messages_come_as_one_batch_and_a_stream_too_far_behind_is_lagging(
    chat_store: MemoryChatStore,
) -> None:
    chat_id = (await new_chat(chat_store, ALICE)).id
    hub = Hub(chat_store, queue_size=2)
    async with hub.subscribe(chat_id) as subscription:
        keeping_up = Reader(subscription)
        for message in await store_messages(chat_store, chat_id, 2):
            hub.publish(message)
            assert await keeping_up.take(1) == [message.seq]
        assert keeping_up.batches == [1, 1]
        for message in await store_messages(chat_store, chat_id, 3):
            hub.publish(message)
        # The log keeps the newest 2 to 4 messages, 3 to 5 now: 2 is gone; 4 and 5 come at once.
        behind, close = Reader(subscription, at=1), Reader(subscription, at=3)
        assert await behind.take(1) == [Signal.LAGGING]
        assert hub.stats.overflows == 1
        assert await close.take(2) == [4, 5]
        assert close.batches == [2]


async def test_membership_changes_and_resyncs_ask_streams_to_check_again(
    chat_store: MemoryChatStore,
) -> None:
    chat_id = (await new_chat(chat_store, ALICE)).id
    hub = Hub(chat_store, queue_size=4)
    async with hub.subscribe(chat_id) as subscription:
        reader = Reader(subscription)
        hub.membership_changed(chat_id)
        assert await reader.take(1) == [Signal.RECHECK]
        await store_messages(chat_store, chat_id, 1)
        hub.resync()
        assert await reader.take(2) == [Signal.RECHECK, 1]


async def test_each_wait_ends_at_its_own_deadline_with_one_timer_per_stream(
    chat_store: MemoryChatStore,
) -> None:
    chat_id = (await new_chat(chat_store, ALICE)).id
    hub = Hub(chat_store, queue_size=16)
    loop = asyncio.get_running_loop()
    async with hub.subscribe(chat_id) as subscription:
        (first,) = await store_messages(chat_store, chat_id, 1)
        loop.call_soon(hub.publish, first)  # runs once the wait below (60 s) has begun
        woken = await subscription.next(0, 60)
        assert isinstance(woken, tuple)
        assert [m.seq for m in woken] == [1]
        # A shorter wait after a longer one is not held to the longer one's timer ...
        started = loop.time()
        assert await subscription.next(1, 0.05) is None
        assert loop.time() - started < 5
        # ... and a wait after a wake still ends at its deadline.
        assert await subscription.next(1, 0.05) is None
    assert subscription._timer is None  # the stream's end cancelled it


class CountingStore(MemoryChatStore):
    """Counts the hub's reads of missed messages."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def log_after(self, chat_id: str, after_seq: int, limit: int) -> list[Entry]:
        self.reads += 1
        return await super().log_after(chat_id, after_seq, limit)


async def test_a_local_sends_own_announcement_is_not_read_back_but_anothers_is() -> None:
    store = CountingStore()
    chat_id = (await new_chat(store, ALICE)).id
    hub = Hub(store, queue_size=16)
    async with hub.subscribe(chat_id) as subscription:
        reader = Reader(subscription)
        with hub.sending(chat_id):
            (mine,) = await store_messages(store, chat_id, 1)
            hub.announce(chat_id, mine.seq)  # heard before the send is published
            hub.publish(mine)
        assert await reader.take(1) == [1]
        # Committed by another replica while a send of this one is being stored: read once
        # that send ends.
        with hub.sending(chat_id):
            (theirs,) = await store_messages(store, chat_id, 1)
            hub.announce(chat_id, theirs.seq)
            assert await subscription.next(reader.at, 0.05) is None
        assert await reader.take(1) == [2]
    assert store.reads == 1


class HeldReadStore(MemoryChatStore):
    """A store whose reads of missed messages wait until the test lets them answer, with
    what was committed when they were sent (as a database read does)."""

    def __init__(self) -> None:
        super().__init__()
        self.read_started = asyncio.Event()
        self.answer = asyncio.Event()

    async def log_after(self, chat_id: str, after_seq: int, limit: int) -> list[Entry]:
        entries = await super().log_after(chat_id, after_seq, limit)
        self.read_started.set()
        await self.answer.wait()
        return entries


async def test_an_announcement_heard_while_a_read_is_in_flight_is_read_too() -> None:
    store = HeldReadStore()
    chat_id = (await new_chat(store, ALICE)).id
    hub = Hub(store, queue_size=16)
    async with hub.subscribe(chat_id) as subscription:
        reader = Reader(subscription)
        (first,) = await store_messages(store, chat_id, 1)
        hub.announce(chat_id, first.seq)
        await store.read_started.wait()
        # Committed elsewhere after the read went out, announced before it answers: the read
        # cannot hold it, and nothing else will announce it again.
        (second,) = await store_messages(store, chat_id, 1)
        hub.announce(chat_id, second.seq)
        store.answer.set()
        assert await reader.take(2) == [1, 2]
