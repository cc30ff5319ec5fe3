"""The replica's one dedicated PostgreSQL LISTEN connection, which feeds the hub.

The PostgreSQL store announces ``<chat id>:<seq>`` for each committed message and
``<chat id>:members`` for membership changes on
:data:`meshchat_chat.store.postgres.NOTIFY_CHANNEL`; the payload never carries the text,
which the hub reads from the store. When the connection
is lost the listener reports unhealthy, reconnects with backoff, and then has the hub read
whatever it may have missed.

Replicas cache chats and their members, so a change of members is not done until every
replica has taken in its announcement: :meth:`PostgresListener.barrier` announces
``sync:<nonce>`` after the change has committed, and each replica's listener answers
``ack:<nonce>`` once it has dispatched it. PostgreSQL delivers notifications in commit order,
so a replica that answers has dispatched the change before. The barrier waits for as many
answers as there are listener connections (a replica without one does not cache).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import psycopg
from psycopg.rows import TupleRow

from meshchat_chat.fanout.hub import Hub
from meshchat_chat.store.postgres import NOTIFY_CHANNEL

__all__ = ["PostgresListener"]

log = logging.getLogger(__name__)

APPLICATION_NAME = "meshchat-chat-listener"
# How long a change of members waits for the other replicas' answers at most.
BARRIER_SECONDS = 2.0
_SYNC = f"""
SELECT pg_notify('{NOTIFY_CHANNEL}', %(payload)s), (
    SELECT count(*) FROM pg_stat_activity
    WHERE application_name = '{APPLICATION_NAME}' AND datname = current_database()
) AS listeners
"""  # noqa: S608


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
        # A second connection, for the barrier's notifications: the listening one is busy
        # waiting for notifications.
        self._sender: psycopg.AsyncConnection[TupleRow] | None = None
        self._acks: dict[str, _Acks] = {}
        self._answers: set[asyncio.Task[None]] = set()

    @property
    def connected(self) -> bool:
        """Whether the LISTEN connection is up."""
        return self._connected.is_set()

    async def barrier(self) -> None:
        """Return once every replica listening has dispatched the announcements committed
        so far (or after BARRIER_SECONDS; at once while this replica is not listening)."""
        sender = self._sender
        if sender is None or not self._connected.is_set():
            return
        nonce = uuid.uuid4().hex
        acks = self._acks[nonce] = _Acks()
        try:
            async with asyncio.timeout(BARRIER_SECONDS):
                cur = await sender.execute(_SYNC, {"payload": f"sync:{nonce}"})
                row = await cur.fetchone()
                await acks.reach(int(row[1]) if row is not None else 0)
        except (TimeoutError, OSError, psycopg.Error) as exc:
            log.warning("replicas did not all answer a change of members: %s", exc or "timeout")
        finally:
            del self._acks[nonce]

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
                self._hub.disconnected()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), retry)
            retry = min(retry * 2, self._max_retry)

    async def _connect(self, application_name: str) -> psycopg.AsyncConnection[TupleRow]:
        return await psycopg.AsyncConnection.connect(
            self._url,
            autocommit=True,
            application_name=application_name,
            connect_timeout=max(2, int(self._check_interval)),
            keepalives=1,
            keepalives_idle=max(1, int(self._check_interval)),
            keepalives_interval=1,
            keepalives_count=3,
        )

    async def _listen(self) -> None:
        conn = await self._connect(APPLICATION_NAME)
        async with conn, await self._connect(f"{APPLICATION_NAME}-sender") as sender:
            await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            self._sender = sender
            self._connected.set()
            log.info("listening for announcements", extra={"channel": NOTIFY_CHANNEL})
            self._hub.resync()
            try:
                while not self._stopping.is_set():
                    async for notify in conn.notifies(timeout=self._check_interval):
                        self._dispatch(notify.payload)
                    # Quiet for a while: make sure the connection is still alive.
                    await conn.execute("SELECT 1")
            finally:
                self._sender = None

    def _dispatch(self, payload: str) -> None:
        chat_id, _, what = payload.partition(":")
        if chat_id == "sync":
            answer = asyncio.create_task(self._answer(what), name="answer a barrier")
            self._answers.add(answer)
            answer.add_done_callback(self._answers.discard)
        elif chat_id == "ack":
            acks = self._acks.get(what)
            if acks is not None:
                acks.add()
        elif what == "members":
            self._hub.membership_changed(chat_id)
        elif what.isdigit():
            self._hub.announce(chat_id, int(what))
        else:
            log.warning("ignoring a malformed announcement", extra={"payload": payload})

    async def _answer(self, nonce: str) -> None:
        sender = self._sender
        if sender is None:
            return
        try:
            await sender.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, f"ack:{nonce}"))
        except (OSError, psycopg.Error) as exc:
            log.warning("cannot answer a barrier: %s", exc)


class _Acks:
    """The answers to one barrier so far."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = asyncio.Event()

    def add(self) -> None:
        self.count += 1
        self._changed.set()

    async def reach(self, wanted: int) -> None:
        while self.count < wanted:
            self._changed.clear()
            await self._changed.wait()
