"""The hub's ordering and catch-up rules, on the in-memory store."""

from __future__ import annotations

import uuid

from meshchat_chat.domain import Message, NewMessage, UserRef
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


async def drain(subscription: Subscription, count: int) -> list[int | Signal]:
    items: list[int | Signal] = []
    while len(items) < count:
        item = await subscription.next(5)
        assert item is not None, items
        items.append(item if isinstance(item, Signal) else item.seq)
    return items


async def test_a_message_ahead_of_its_predecessors_waits_for_them(
    chat_store: MemoryChatStore,
) -> None:
    chat_id = (await new_chat(chat_store, ALICE)).id
    hub = Hub(chat_store, queue_size=16)
    async with hub.subscribe(chat_id) as subscription:
        first, second, third = await store_messages(chat_store, chat_id, 3)
        hub.publish(third)  # 1 and 2 are committed but not published yet: read from the store
        assert await drain(subscription, 3) == [1, 2, 3]
        hub.publish(first)
        hub.publish(second)
        assert await subscription.next(0.05) is None  # already delivered: dropped


async def test_announcements_are_read_from_the_store_once_known_ones_are_ignored(
    chat_store: MemoryChatStore,
) -> None:
    chat_id = (await new_chat(chat_store, ALICE)).id
    hub = Hub(chat_store, queue_size=16)
    async with hub.subscribe(chat_id) as a, hub.subscribe(chat_id) as b:
        assert hub.stats.streams == 2
        await store_messages(chat_store, chat_id, 2)
        hub.announce(chat_id, 2)
        assert await drain(a, 2) == [1, 2]
        assert await drain(b, 2) == [1, 2]
        hub.announce(chat_id, 1)
        assert await a.next(0.05) is None
    assert hub.stats.streams == 0


async def test_a_full_queue_is_dropped_and_the_stream_told_to_catch_up(
    chat_store: MemoryChatStore,
) -> None:
    chat_id = (await new_chat(chat_store, ALICE)).id
    hub = Hub(chat_store, queue_size=2)
    async with hub.subscribe(chat_id) as subscription:
        for message in await store_messages(chat_store, chat_id, 5):
            hub.publish(message)
        assert hub.stats.overflows == 1
        # 1 and 2 filled the queue; 3 overflowed it (dropped with it); 4 and 5 came after.
        assert await drain(subscription, 3) == [Signal.LAGGING, 4, 5]


async def test_membership_changes_and_resyncs_ask_streams_to_check_again(
    chat_store: MemoryChatStore,
) -> None:
    chat_id = (await new_chat(chat_store, ALICE)).id
    hub = Hub(chat_store, queue_size=4)
    async with hub.subscribe(chat_id) as subscription:
        hub.membership_changed(chat_id)
        assert await drain(subscription, 1) == [Signal.RECHECK]
        await store_messages(chat_store, chat_id, 1)
        hub.resync()
        assert await drain(subscription, 2) == [Signal.RECHECK, 1]
