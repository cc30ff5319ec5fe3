"""In-process fan-out of new messages to the open streams of this replica.

Each chat with open streams has a topic. A topic delivers messages to its subscriptions in
seq order without gaps: a message that arrives ahead of its predecessors waits while the
topic reads the missing ones from the store, once for all of its subscribers. Messages
come from this replica's sends (:meth:`Hub.publish`) and, through the PostgreSQL
listener, as announcements of sends on other replicas (:meth:`Hub.announce`), which the
topic reads from the store.

Each subscription has a bounded queue. Publishing never waits: when a queue is full the
subscription is marked lagging and its queue dropped, and its stream catches up from the
store. So a slow consumer never blocks a sender and never loses a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import sys
from collections.abc import AsyncIterator, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from meshchat_chat.domain import Message
from meshchat_chat.store import Store

__all__ = ["Hub", "HubCollector", "HubStats", "Signal", "Subscription"]

log = logging.getLogger(__name__)

FILL_PAGE = 500
FILL_RETRY_SECONDS = 1.0


class Signal(enum.Enum):
    """What a subscription reports besides a message."""

    # The queue overflowed and was dropped: read what is missing from the store.
    LAGGING = "lagging"
    # The chat's members changed or the chat was deleted: check access again.
    RECHECK = "recheck"
    # This replica is stopping: end the stream, so that the client resumes elsewhere.
    CLOSING = "closing"


class HubStats:
    """Counters of the hub, for the metrics endpoint."""

    __slots__ = ("overflows", "streams")

    def __init__(self) -> None:
        self.overflows = 0
        self.streams = 0


class Subscription:
    """One stream's view of a chat: a bounded queue of messages and two flags."""

    __slots__ = ("_closing", "_items", "_lagging", "_limit", "_recheck", "_stats", "_waiter")

    def __init__(self, limit: int, stats: HubStats) -> None:
        # A list, not a deque: an empty deque costs 600 bytes and most streams are idle.
        self._items: list[Message] = []
        self._limit = limit
        self._stats = stats
        self._lagging = False
        self._recheck = False
        self._closing = False
        self._waiter: asyncio.Future[None] | None = None

    def offer(self, message: Message) -> None:
        """Queue a message without waiting; on overflow, drop the queue and mark lagging."""
        if len(self._items) >= self._limit:
            self._items.clear()
            if not self._lagging:
                self._lagging = True
                self._stats.overflows += 1
        else:
            self._items.append(message)
        self._wake()

    def flag_recheck(self) -> None:
        """Ask the stream to check its access again."""
        self._recheck = True
        self._wake()

    def flag_closing(self) -> None:
        """Ask the stream to end: the replica is stopping."""
        self._closing = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next(self, wait: float) -> Message | Signal | None:
        """The next signal or message, or None when nothing came within ``wait`` seconds."""
        if not (self._closing or self._recheck or self._lagging or self._items):
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(wait):
                    await self._waiter
            except TimeoutError:
                return None
            finally:
                self._waiter = None
        if self._closing:
            return Signal.CLOSING
        if self._recheck:
            self._recheck = False
            return Signal.RECHECK
        if self._lagging:
            self._lagging = False
            return Signal.LAGGING
        if self._items:
            return self._items.pop(0)
        return None


class _Topic:
    """The subscriptions of one chat and the seq up to which they have been given messages."""

    def __init__(self, chat_id: str, head: int, store: Store) -> None:
        self.chat_id = chat_id
        self.head = head
        self.subscribers: set[Subscription] = set()
        self._store = store
        self._pending: dict[int, Message] = {}
        self._fill_target = head
        self._fill_task: asyncio.Task[None] | None = None
        self._retry: asyncio.TimerHandle | None = None

    def accept(self, message: Message) -> None:
        if message.seq <= self.head:
            return
        if message.seq > self.head + 1:
            self._pending[message.seq] = message
            self.request_fill(message.seq - 1)
            return
        self._deliver(message)
        while (following := self._pending.pop(self.head + 1, None)) is not None:
            self._deliver(following)

    def _deliver(self, message: Message) -> None:
        self.head = message.seq
        for subscription in self.subscribers:
            subscription.offer(message)

    def request_fill(self, target: int) -> None:
        """Read the messages up to ``target`` from the store (single flight)."""
        self._fill_target = max(self._fill_target, target)
        if self._fill_target > self.head and (self._fill_task is None or self._fill_task.done()):
            self._fill_task = asyncio.create_task(self._fill(), name=f"fill {self.chat_id}")

    async def _fill(self) -> None:
        try:
            while self.head < self._fill_target:
                messages = await self._store.messages_after(self.chat_id, self.head, FILL_PAGE)
                for message in messages:
                    self.accept(message)
                if len(messages) < FILL_PAGE:
                    break
        except Exception as exc:
            # Hand over what is pending (streams check for gaps themselves) and try again
            # shortly: the database may be back by then.
            log.warning("cannot read missed messages: %s", exc, extra={"chat": self.chat_id})
            for seq in sorted(self._pending):
                self._deliver(self._pending[seq])
            self._retry = asyncio.get_running_loop().call_later(
                FILL_RETRY_SECONDS, self.request_fill, self._fill_target
            )
        self._pending = {seq: m for seq, m in self._pending.items() if seq > self.head}
        self._fill_target = self.head

    async def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        if self._fill_task is not None:
            self._fill_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._fill_task


class Hub:
    """The topics of the chats that have open streams on this replica."""

    def __init__(self, store: Store, queue_size: int) -> None:
        self._store = store
        self._queue_size = queue_size
        self._topics: dict[str, _Topic] = {}
        self._closing = False
        self.stats = HubStats()

    @contextlib.asynccontextmanager
    async def subscribe(self, chat_id: str) -> AsyncIterator[Subscription]:
        """Receive the chat's messages committed from now on, for the life of the block."""
        topic = self._topics.get(chat_id)
        if topic is None:
            # The topic starts at the newest message committed before it exists; a stream
            # reads its replay after subscribing, so everything up to there is in the replay.
            head = await self._store.last_seq(chat_id) or 0
            topic = self._topics.setdefault(chat_id, _Topic(chat_id, head, self._store))
        subscription = Subscription(self._queue_size, self.stats)
        if self._closing:
            subscription.flag_closing()
        topic.subscribers.add(subscription)
        self.stats.streams += 1
        try:
            yield subscription
        finally:
            self.stats.streams -= 1
            topic.subscribers.discard(subscription)
            if not topic.subscribers and self._topics.get(chat_id) is topic:
                del self._topics[chat_id]
                await topic.close()

    def publish(self, message: Message) -> None:
        """A message committed on this replica."""
        topic = self._topics.get(message.chat_id)
        if topic is not None:
            topic.accept(message)

    def announce(self, chat_id: str, seq: int) -> None:
        """A message committed somewhere (this or another replica): read it unless known."""
        topic = self._topics.get(chat_id)
        if topic is not None and seq > topic.head:
            topic.request_fill(seq)

    def membership_changed(self, chat_id: str) -> None:
        """The chat's members changed or it was deleted: its streams check access again."""
        topic = self._topics.get(chat_id)
        if topic is not None:
            for subscription in topic.subscribers:
                subscription.flag_recheck()

    def close_streams(self) -> None:
        """The replica is stopping: every stream, open or opening, ends so that its client
        resumes on another replica instead of waiting out the grace period."""
        self._closing = True
        for topic in self._topics.values():
            for subscription in topic.subscribers:
                subscription.flag_closing()

    def resync(self) -> None:
        """Announcements may have been missed (the listener reconnected): every topic reads
        what is new in the store and every stream checks its access again."""
        for topic in self._topics.values():
            topic.request_fill(sys.maxsize)
            for subscription in topic.subscribers:
                subscription.flag_recheck()


class HubCollector:
    """Exposes the hub's counters to Prometheus."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def collect(self) -> Iterator[Metric]:
        """The current values."""
        stats = self._hub.stats
        yield GaugeMetricFamily(
            "meshchat_chat_streams", "Connect streams open on this replica.", value=stats.streams
        )
        yield CounterMetricFamily(
            "meshchat_chat_stream_overflows",
            "Times a stream's queue overflowed and the stream caught up from the database.",
            value=stats.overflows,
        )
