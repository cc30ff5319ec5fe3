"""The account-event feed: the use case behind ``AccountEventService.Watch``.

The events are rows of the store, written in the transactions of the changes they record, so
the feed reads them from there: first everything after the watcher's position, then what
every auth replica writes, by polling (one indexed read every ``poll_interval``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from meshchat_auth.domain import AccountEvent
from meshchat_auth.store import AuthStore
from meshchat_runtime.errors import InvalidArgument

__all__ = ["AccountEventFeed", "EventBatch"]

POLL_INTERVAL = 0.25
"""Seconds between reads of new events: most of the revocation delay."""
HEARTBEAT_INTERVAL = 5.0
"""Seconds after which a batch without events is sent, so that a watcher can tell a quiet
feed from a dead connection."""
BATCH_SIZE = 500


@dataclass(frozen=True, slots=True)
class EventBatch:
    """Events in order (none: a heartbeat) and the newest sequence number when sent."""

    events: list[AccountEvent]
    head_seq: int


class AccountEventFeed:
    """Streams the stored account events to one watcher after another."""

    def __init__(
        self,
        store: AuthStore,
        *,
        poll_interval: float = POLL_INTERVAL,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        batch_size: int = BATCH_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._poll_interval = poll_interval
        self._heartbeat_interval = heartbeat_interval
        self._batch_size = batch_size
        self._clock = clock

    async def watch(self, after_seq: int) -> AsyncIterator[EventBatch]:
        """The events after ``after_seq``, then each new one, with heartbeats in between (the
        first batch is sent at once); it ends only when the watcher goes away."""
        if after_seq < 0:
            raise InvalidArgument("after_seq", "must not be negative")
        position = after_seq
        sent_at: float | None = None
        while True:
            events = await self._store.account_events(position, self._batch_size)
            now = self._clock()
            if events or sent_at is None or now - sent_at >= self._heartbeat_interval:
                head = await self._store.last_account_event_seq()
                yield EventBatch(events, max([head, *(e.seq for e in events)]))
                sent_at = now
            if events:
                position = events[-1].seq
                if len(events) == self._batch_size:
                    continue
            await asyncio.sleep(self._poll_interval)
