"""The replica's one dedicated PostgreSQL LISTEN connection, which feeds the hub.

The PostgreSQL store announces ``<chat id>:<seq>`` for each committed message and
``<chat id>:members`` for membership changes on
:data:`meshchat_chat.store.postgres.NOTIFY_CHANNEL`; the payload never carries the text,
which the hub reads from the store. When the connection
is lost the listener reports unhealthy, reconnects with backoff, and then has the hub read
whatever it may have missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg

from meshchat_chat.fanout.hub import Hub
from meshchat_chat.store.postgres import NOTIFY_CHANNEL

__all__ = ["PostgresListener"]

log = logging.getLogger(__name__)

APPLICATION_NAME = "meshchat-chat-listener"


class PostgresListener:
    """LISTENs on the chat channel and hands each announcement to the hub."""

    def __init__(
        self,
        url: str,
        hub: Hub,
        *,
        check_interval: float = 5.0,
        min_retry: float = 0.2,
        max_retry: float = 2.0,
    ) -> None:
        self._url = url
        self._hub = hub
        self._check_interval = check_interval
        self._min_retry = min_retry
        self._max_retry = max_retry
        self._connected = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def probe(self) -> bool:
        """Whether the LISTEN connection is up (a health dependency)."""
        return self._connected.is_set()

    async def start(self, first_wait: float = 10.0) -> None:
        """Start listening; waits up to ``first_wait`` seconds for the first connection, then goes on
        trying in the background (health says NOT_SERVING meanwhile)."""
        self._task = asyncio.create_task(self._run(), name="postgres listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), first_wait)

    async def stop(self) -> None:
        """Close the connection."""
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        retry = self._min_retry
        while not self._stopping.is_set():
            try:
                await self._listen()
                retry = self._min_retry
            except (OSError, psycopg.Error) as exc:
                log.warning("LISTEN connection lost: %s", exc, extra={"retry_seconds": retry})
            finally:
                self._connected.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), retry)
            retry = min(retry * 2, self._max_retry)

    async def _listen(self) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self._url,
            autocommit=True,
            application_name=APPLICATION_NAME,
            connect_timeout=max(2, int(self._check_interval)),
            keepalives=1,
            keepalives_idle=max(1, int(self._check_interval)),
            keepalives_interval=1,
            keepalives_count=3,
        )
        async with conn:
            await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            self._connected.set()
            log.info("listening for announcements", extra={"channel": NOTIFY_CHANNEL})
            self._hub.resync()
            while not self._stopping.is_set():
                async for notify in conn.notifies(timeout=self._check_interval):
                    self._dispatch(notify.payload)
                # Quiet for a while: make sure the connection is still alive.
                await conn.execute("SELECT 1")

    def _dispatch(self, payload: str) -> None:
        chat_id, _, what = payload.partition(":")
        if what == "members":
            self._hub.membership_changed(chat_id)
        elif what.isdigit():
            self._hub.announce(chat_id, int(what))
        else:
            log.warning("ignoring a malformed announcement", extra={"payload": payload})
