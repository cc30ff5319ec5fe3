"""In-process fan-out of new messages to the open streams of this replica.

Each chat with open streams has a topic: a bounded log of the chat's newest messages, in seq
order without gaps, shared by all of the chat's streams. A message that arrives ahead of its
predecessors waits while the topic reads the missing ones from the store, once for all of its
subscribers. Messages come from this replica's sends (:meth:`Hub.publish`) and, through the
PostgreSQL listener, as announcements of sends on other replicas (:meth:`Hub.announce`),
which the topic reads from the store.

A stream keeps its own position (the seq it has delivered) and takes from the log everything
after it at once, so a stream that keeps up gets one message at a time and one that falls
behind gets batches that grow with its backlog. Publishing never waits and costs one append
plus a wake-up of the streams that wait; nothing is queued per stream. A stream that falls
further behind than the log reaches is told it is lagging and catches up from the store, so
a slow consumer never blocks a sender, never holds memory, and never loses a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import sys
from collections.abc import AsyncIterator, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from meshchat_chat.domain import Change, ChangeKind, Entry
from meshchat_chat.fanout.cache import ChatCache
from meshchat_chat.store import Store

__all__ = ["BATCH_MAX", "Hub", "HubCollector", "HubStats", "Signal", "Subscription"]

log = logging.getLogger(__name__)

FILL_PAGE = 500
FILL_RETRY_SECONDS = 1.0
# The most messages handed to a stream at once: 100 messages of the longest text (4,096
# characters of 4 bytes) stay well below grpc's default 4 MiB message limit of clients.
BATCH_MAX = 100


class Signal(enum.Enum):
    """What a subscription reports besides messages."""

    # The messages after the stream's position are no longer in the log: read them from the
    # store.
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
    """One stream's view of a chat's topic, and two flags."""

    __slots__ = ("_closing", "_deadline", "_recheck", "_timer", "_topic", "_waiter")

    def __init__(self, topic: _Topic) -> None:
        self._topic = topic
        self._recheck = False
        self._closing = False
        # The waiter's result: True when woken, False when the wait's deadline passed.
        self._waiter: asyncio.Future[bool] | None = None
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def flag_recheck(self) -> None:
        """Ask the stream to check its access again."""
        self._recheck = True
        self.wake()

    def flag_closing(self) -> None:
        """Ask the stream to end: the replica is stopping."""
        self._closing = True
        self.wake()

    def wake(self) -> None:
        """End the stream's wait, if it waits."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(True)

    async def next(self, after: int, wait: float) -> tuple[Entry, ...] | Signal | None:
        """A signal; or the messages after seq ``after`` (up to :data:`BATCH_MAX`, ascending,
        without gaps); or None when nothing came within ``wait`` seconds."""
        topic = self._topic
        if not self._ready(after):
            loop = asyncio.get_running_loop()
            self._deadline = loop.time() + wait
            if self._timer is None or self._timer.when() > self._deadline:
                self._stop_timer()
                self._timer = loop.call_at(self._deadline, self._expire)
            try:
                # A stream that caught up from the store ahead of the topic is woken by
                # messages it has already delivered: it waits on.
                while not self._ready(after):
                    self._waiter = loop.create_future()
                    topic.waiting.add(self)
                    if not await self._waiter:
                        return None
            finally:
                topic.waiting.discard(self)
                self._waiter = None
        if self._closing:
            return Signal.CLOSING
        if self._recheck:
            self._recheck = False
            return Signal.RECHECK
        return topic.after(after)

    def close(self) -> None:
        """The stream ended: its timer goes."""
        self._stop_timer()

    def _ready(self, after: int) -> bool:
        return self._closing or self._recheck or self._topic.head > after

    def _expire(self) -> None:
        # One timer per stream, moved on to the current wait's deadline when it fires early,
        # instead of one created and cancelled for every wait: a stream that keeps up waits
        # once per message.
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        loop = waiter.get_loop()
        if loop.time() >= self._deadline:
            waiter.set_result(False)
        else:
            self._timer = loop.call_at(self._deadline, self._expire)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _Topic:
    """The log of one chat's newest messages and the subscriptions that read it."""

    def __init__(self, chat_id: str, head: int, store: Store, capacity: int, stats: HubStats):
        self.chat_id = chat_id
        self.head = head
        self.subscribers: set[Subscription] = set()
        self.waiting: set[Subscription] = set()
        # log[i].seq == head - len(log) + 1 + i
        self._log: list[Entry] = []
        self._capacity = capacity
        self._stats = stats
        self._store = store
        self._pending: dict[int, Entry] = {}
        self._fill_target = head
        self._fill_task: asyncio.Task[None] | None = None
        self._retry: asyncio.TimerHandle | None = None
        # This replica's sends to the chat being stored, and the newest seq announced
        # meanwhile: it is read from the store only once they are published, since it is
        # most often one of theirs.
        self.sending = 0
        self._announced = head

    def after(self, seq: int) -> tuple[Entry, ...] | Signal:
        """The logged messages after ``seq`` (at most BATCH_MAX), or LAGGING when the log no
        longer holds the one that follows ``seq``."""
        start = seq + 1 - (self.head - len(self._log) + 1)
        if start < 0:
            self._stats.overflows += 1
            return Signal.LAGGING
        return tuple(self._log[start : start + BATCH_MAX])

    def accept(self, message: Entry) -> None:
        if message.seq <= self.head:
            return
        if message.seq > self.head + 1:
            self._pending[message.seq] = message
            self.request_fill(message.seq - 1)
            return
        self._append(message)
        while (following := self._pending.pop(self.head + 1, None)) is not None:
            self._append(following)
        self._wake()

    def _append(self, message: Entry) -> None:
        self.head = message.seq
        self._log.append(message)
        if isinstance(message, Change) and message.kind is ChangeKind.DELETED:
            self._erase(message)
        # Trimmed in bulk, so that an append costs O(1) on average.
        if len(self._log) >= 2 * self._capacity:
            del self._log[: len(self._log) - self._capacity]

    def _erase(self, deletion: Change) -> None:
        """A stream still behind the deleted message gets it without its text."""
        index = deletion.message.seq - (self.head - len(self._log) + 1)
        if 0 <= index < len(self._log):
            self._log[index] = deletion.message

    def _wake(self) -> None:
        waiting, self.waiting = self.waiting, set()
        for subscription in waiting:
            subscription.wake()

    def announced(self, seq: int) -> None:
        """A message up to ``seq`` was committed somewhere: read it, or note it while this
        replica's sends are being stored."""
        if self.sending:
            self._announced = max(self._announced, seq)
        else:
            self.request_fill(seq)

    def sent(self) -> None:
        """One of this replica's sends was stored (and published) or failed: read what was
        announced meanwhile, unless its publishing brought it. The fill starts a step
        later, so that the other sends of its group are published first."""
        self.sending -= 1
        if self._announced > self.head:
            self.request_fill(self._announced)

    def request_fill(self, target: int) -> None:
        """Read the messages up to ``target`` from the store (single flight)."""
        self._fill_target = max(self._fill_target, target)
        if self._fill_target > self.head and (self._fill_task is None or self._fill_task.done()):
            self._fill_task = asyncio.create_task(self._fill(), name=f"fill {self.chat_id}")

    async def _fill(self) -> None:
        try:
            while self.head < self._fill_target:
                target = self._fill_target
                messages = await self._store.log_after(self.chat_id, self.head, FILL_PAGE)
                for message in messages:
                    self.accept(message)
                # A short page holds everything committed when the read went out; a target
                # raised since (an announcement heard meanwhile) needs another read.
                if len(messages) < FILL_PAGE and self._fill_target == target:
                    break
        except Exception as exc:
            # Try again shortly: the database may be back by then. What is pending waits,
            # since the log never has gaps.
            log.warning("cannot read missed messages: %s", exc, extra={"chat": self.chat_id})
            self._retry = asyncio.get_running_loop().call_later(
                FILL_RETRY_SECONDS, self.request_fill, self._fill_target
            )
            return
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
    """The topics of the chats that have open streams on this replica. ``queue_size`` is how
    many of a chat's newest messages its topic keeps for streams that fall behind. The hub
    passes what it learns about chats on to ``cache``."""

    def __init__(self, store: Store, queue_size: int, cache: ChatCache | None = None) -> None:
        self._store = store
        self._queue_size = queue_size
        self._cache = cache
        self._topics: dict[str, _Topic] = {}
        self._closing = False
        self.stats = HubStats()

    @property
    def chats_followed(self) -> int:
        """How many chats have open streams here."""
        return len(self._topics)

    @contextlib.asynccontextmanager
    async def subscribe(self, chat_id: str) -> AsyncIterator[Subscription]:
        """Receive the chat's messages committed from now on, for the life of the block."""
        topic = self._topics.get(chat_id)
        if topic is None:
            # The topic starts at the newest message committed before it exists; a stream
            # reads its replay after subscribing, so everything up to there is in the replay.
            head = await self._store.last_seq(chat_id) or 0
            topic = self._topics.setdefault(
                chat_id, _Topic(chat_id, head, self._store, self._queue_size, self.stats)
            )
        subscription = Subscription(topic)
        if self._closing:
            subscription.flag_closing()
        topic.subscribers.add(subscription)
        self.stats.streams += 1
        try:
            yield subscription
        finally:
            subscription.close()
            self.stats.streams -= 1
            topic.subscribers.discard(subscription)
            if not topic.subscribers and self._topics.get(chat_id) is topic:
                del self._topics[chat_id]
                await topic.close()

    def publish(self, message: Entry) -> None:
        """A message or change committed on this replica."""
        if self._cache is not None:
            self._cache.note_seq(message.chat_id, message.seq)
        topic = self._topics.get(message.chat_id)
        if topic is not None:
            topic.accept(message)

    @contextlib.contextmanager
    def sending(self, chat_id: str) -> Iterator[None]:
        """Around a send on this replica, up to its :meth:`publish`: an announcement of the
        chat meanwhile (most often the send's own) is read from the store only afterwards,
        if publishing did not bring it."""
        topic = self._topics.get(chat_id)
        if topic is None:
            yield
            return
        topic.sending += 1
        try:
            yield
        finally:
            topic.sent()

    def announce(self, chat_id: str, seq: int) -> None:
        """A message committed somewhere (this or another replica): read it unless known."""
        if self._cache is not None:
            self._cache.note_seq(chat_id, seq)
        topic = self._topics.get(chat_id)
        if topic is not None and seq > topic.head:
            topic.announced(seq)

    def membership_changed(self, chat_id: str) -> None:
        """The chat's members changed or it was deleted: its streams check access again."""
        if self._cache is not None:
            self._cache.forget(chat_id)
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

    def disconnected(self) -> None:
        """Announcements may be missed from now on (the listener lost its connection)."""
        if self._cache is not None:
            self._cache.suspend()

    def resync(self) -> None:
        """Announcements may have been missed (the listener reconnected): every topic reads
        what is new in the store and every stream checks its access again."""
        if self._cache is not None:
            self._cache.resume()
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
            "Times a stream fell behind the messages kept in memory and caught up from the "
            "database.",
            value=stats.overflows,
        )
