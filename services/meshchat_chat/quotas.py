"""Per-user quotas of one chat replica: how many Connect streams a user holds open at once,
and how fast they send (a token bucket). Both are kept in memory per replica, and only for
users that are using them, so an idle user costs nothing."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from meshchat_runtime.errors import ResourceExhausted

__all__ = ["SendRate", "StreamSlots"]

# A stream refused for the cap may be retried once one of the user's others has closed; there
# is no way to know when, so clients are told to wait a moment.
STREAM_RETRY_AFTER = 1.0
# Buckets are swept for full ones once there are this many (and then at twice what was left).
SWEEP_MINIMUM = 1024


class StreamSlots:
    """At most ``per_user`` open streams per user. Taking a slot is one step with no await
    inside, so many streams opening at the same moment can never pass the cap together."""

    def __init__(self, per_user: int) -> None:
        self._per_user = per_user
        self._open: dict[str, int] = {}

    @contextlib.contextmanager
    def hold(self, user_id: str) -> Iterator[None]:
        """A slot for the life of the block; ResourceExhausted when the user has none left."""
        count = self._open.get(user_id, 0)
        if count >= self._per_user:
            raise ResourceExhausted(
                f"too many open Connect streams: at most {self._per_user} per user on this "
                "server; close one first",
                STREAM_RETRY_AFTER,
            )
        self._open[user_id] = count + 1
        try:
            yield
        finally:
            remaining = self._open[user_id] - 1
            if remaining:
                self._open[user_id] = remaining
            else:
                del self._open[user_id]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class SendRate:
    """A token bucket per user: ``burst`` sends at once, then one every ``interval`` seconds.
    A bucket that has refilled completely is forgotten (a fresh one is the same)."""

    def __init__(
        self, interval: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval = interval
        self._burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._sweep_at = SWEEP_MINIMUM

    def take(self, user_id: str) -> None:
        """Spend one send of ``user_id``; ResourceExhausted with the wait when none is left."""
        if self._interval <= 0:
            return
        now = self._clock()
        self._forget_full(now)
        bucket = self._buckets.get(user_id)
        tokens = self._burst if bucket is None else self._refilled(bucket, now)
        if tokens < 1:
            wait = (1 - tokens) * self._interval
            raise ResourceExhausted(
                f"sending too fast: at most {self._burst} messages at once and then one every "
                f"{self._interval:g} s; try again in {math.ceil(wait * 10) / 10:.1f} s",
                wait,
            )
        self._buckets[user_id] = _Bucket(tokens - 1, now)

    def _refilled(self, bucket: _Bucket, now: float) -> float:
        return min(self._burst, bucket.tokens + (now - bucket.updated) / self._interval)

    def _forget_full(self, now: float) -> None:
        # Amortised: a sweep runs only once the table has doubled since the last one.
        if len(self._buckets) < self._sweep_at:
            return
        self._buckets = {
            user: b for user, b in self._buckets.items() if self._refilled(b, now) < self._burst
        }
        self._sweep_at = max(SWEEP_MINIMUM, 2 * len(self._buckets))
