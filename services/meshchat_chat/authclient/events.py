"""The follower of the auth service's account events (``AccountEventService.Watch``).

Every chat replica runs one, as each keeps its own set of revoked tokens in memory. At start
it restores what chat's database holds (the revocations and the number of the last event
applied), then watches from there, applies each event through the use case and reconnects
with backoff when the stream breaks or falls silent; meanwhile chat keeps serving with what
it knows. How far behind it is shows on /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from datetime import UTC
from typing import Protocol

import grpc
import grpc.aio
from prometheus_client.core import GaugeMetricFamily, Metric

from meshchat.auth.v1 import events_pb2, events_pb2_grpc
from meshchat_chat.domain import AccountChange, AppliedChange, Revocation
from meshchat_runtime.settings import env_var

__all__ = ["AccountChanges", "AccountEventFollower", "FollowerCollector", "change_from_proto"]

log = logging.getLogger(__name__)

DELETED = events_pb2.AccountEventKind.ACCOUNT_EVENT_KIND_DELETED


class AccountChanges(Protocol):
    """Where the follower applies the events (the chat use cases)."""

    async def restore_account_events(self) -> int:
        """Load the stored revocations; the number of the last event applied."""
        ...

    async def apply_account_change(self, change: AccountChange) -> AppliedChange:
        """Apply one event; applying it again changes nothing."""
        ...


def change_from_proto(event: events_pb2.AccountEvent) -> AccountChange:
    """An event as the chat service applies it. Every kind revokes the tokens issued before
    it (the safe reading of a kind this version does not know); a deletion revokes all."""
    revocation = Revocation(
        user_id=event.user_id,
        not_before=event.occur_time.ToDatetime(tzinfo=UTC),
        kept_session_id=event.kept_session_id,
        deleted=event.kind == DELETED,
    )
    return AccountChange(event.seq, revocation)


class AccountEventFollower:
    """Follows ``AccountEventService.Watch`` in a background task until stopped."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        changes: AccountChanges,
        *,
        idle_timeout: float = 15.0,
        initial_backoff: float = 0.25,
        max_backoff: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stub = events_pb2_grpc.AccountEventServiceStub(channel)
        self._changes = changes
        self._idle_timeout = idle_timeout
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._clock = clock
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.position: int | None = None
        """The number of the last event applied; None until restored from the database."""
        self.head_seq = 0
        """The newest event's number, as the auth service last said."""
        self.connected = False
        self.received_at: float | None = None
        """When the last batch (or heartbeat) arrived, by ``clock``."""

    @property
    def lag(self) -> int:
        """Events known to exist and not applied yet."""
        return max(0, self.head_seq - (self.position or 0))

    def age(self) -> float:
        """Seconds since the auth service was last heard from (infinite: never)."""
        return math.inf if self.received_at is None else self._clock() - self.received_at

    async def start(self) -> None:
        """Restore, then follow, in the background."""
        self._task = asyncio.create_task(self._run(), name="account events")

    async def stop(self) -> None:
        """Stop following."""
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        backoff = self._initial_backoff
        while not self._stopping.is_set():
            heard_before = self.received_at
            refused = await self._attempt()
            self.connected = False
            if refused:
                backoff = self._max_backoff
            elif self.received_at != heard_before:
                backoff = self._initial_backoff
            await self._pause(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    async def _attempt(self) -> bool:
        """Restore (once), then follow until the stream ends; True when the auth service
        refuses to let this service watch, which retrying soon will not change."""
        try:
            if self.position is None:
                self.position = await self._changes.restore_account_events()
            await self._follow()
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.PERMISSION_DENIED:
                log.error(
                    "the auth service does not let this service watch the account events: "
                    "revoked tokens are accepted until they expire; list the chat service's "
                    f"mesh identity in the auth service's {env_var('service-callers')}",
                    extra={"details": exc.details()},
                )
                return True
            log.warning(
                "the account-event stream of the auth service broke; reconnecting",
                extra={"code": exc.code().name, "details": exc.details()},
            )
        except TimeoutError:
            log.warning(
                "no account events or heartbeats from the auth service; reconnecting",
                extra={"idle_timeout": self._idle_timeout},
            )
        except Exception as exc:  # the database: the event is applied again on resume
            log.warning("cannot apply the account events: %s", exc)
        return False

    async def _pause(self, seconds: float) -> None:
        """Wait before reconnecting, unless stopped first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _follow(self) -> None:
        assert self.position is not None
        call = self._stub.Watch(events_pb2.WatchAccountEventsRequest(after_seq=self.position))
        try:
            while (batch := await asyncio.wait_for(call.read(), self._idle_timeout)) is not (
                grpc.aio.EOF
            ):
                assert isinstance(batch, events_pb2.AccountEventBatch)
                self.connected = True
                self.received_at = self._clock()
                self.head_seq = batch.head_seq
                for event in batch.events:
                    await self._changes.apply_account_change(change_from_proto(event))
                    self.position = event.seq
                    log.info(
                        "applied an account event",
                        extra={"seq": event.seq, "user_id": event.user_id, "kind": event.kind},
                    )
        finally:
            call.cancel()


class FollowerCollector:
    """Exposes the follower's state to Prometheus."""

    def __init__(self, follower: AccountEventFollower) -> None:
        self._follower = follower

    def collect(self) -> Iterator[Metric]:
        """The current values."""
        follower = self._follower
        yield GaugeMetricFamily(
            "meshchat_chat_account_events_lag",
            "Account events of the auth service known and not yet applied by this replica.",
            value=follower.lag,
        )
        yield GaugeMetricFamily(
            "meshchat_chat_account_events_age_seconds",
            "Seconds since the auth service's account-event stream was last heard from "
            "(+Inf: never).",
            value=follower.age(),
        )
        yield GaugeMetricFamily(
            "meshchat_chat_account_events_connected",
            "1 while the account-event stream is open.",
            value=int(follower.connected),
        )
