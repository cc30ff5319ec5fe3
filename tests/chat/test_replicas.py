"""Several chat replicas on one PostgreSQL: fan-out across replicas through LISTEN/NOTIFY,
a replica killed mid-stream, and health following the database and the LISTEN connection."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import grpc.aio
import psycopg
import pytest
from grpc_health.v1 import health_pb2

from devtools.processes import free_port, health_status
from meshchat.chat.v1 import chat_pb2, chat_pb2_grpc
from meshchat_chat.fanout.listener import APPLICATION_NAME
from tests.chat.proxy import TcpProxy
from tests.support.people import People, Person, Stream
from tests.support.rpc import DEADLINE, eventually, status_of
from tests.support.stack import RunningAuth, RunningChat, start_chat

pytestmark = pytest.mark.postgres

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
async def replicas(
    tmp_path: Path, auth: RunningAuth, postgres_url: str
) -> AsyncIterator[tuple[RunningChat, RunningChat]]:
    """Two chat replicas on one PostgreSQL database."""
    # A flood is what this test is about: the send rate limit is off.
    first = await start_chat(tmp_path / "a", auth, postgres_url, send_interval=0.0)
    second = await start_chat(tmp_path / "b", auth, postgres_url, send_interval=0.0)
    yield first, second
    await first.stop()
    await second.stop()


def seqs_of(messages: list[chat_pb2.Message]) -> list[int]:
    return [m.seq for m in messages]


def on(person: Person, channel: grpc.aio.Channel) -> Person:
    """The same person talking to another replica."""
    return Person(
        person.username, person.user_id, person.access_token, chat_pb2_grpc.ChatServiceStub(channel)
    )


async def test_subscribers_on_both_replicas_get_every_message_once_in_order(
    auth: RunningAuth, replicas: tuple[RunningChat, RunningChat]
) -> None:
    a, b = replicas
    async with auth.channel() as auth_ch, a.channel() as ch_a, b.channel() as ch_b:
        people = People(auth, auth_ch, ch_a)
        alice, bob, carol, dave = [await people(n) for n in ("alice", "bob", "carol", "dave")]
        room = await alice.create_chat("replicated", "bob", "carol", "dave")
        subscribers = [
            Stream(p.connect(room.id)) for p in (alice, bob, on(carol, ch_b), on(dave, ch_b))
        ]
        for stream in subscribers:
            assert await stream.replay() == ([], 0)
        per_sender = 40
        senders = (alice, on(bob, ch_b), carol, on(dave, ch_b))

        async def send_all(sender: Person) -> list[tuple[int, str]]:
            sent = []
            for i in range(per_sender):
                message = await sender.send(room.id, f"{sender.username} {i}")
                sent.append((message.seq, message.text))
            return sent

        batches = await asyncio.gather(*(send_all(s) for s in senders))
        sent = sorted(itertools.chain.from_iterable(batches))
        total = per_sender * len(senders)
        assert [seq for seq, _ in sent] == list(range(1, total + 1))
        received = await asyncio.gather(*(s.messages(total) for s in subscribers))
        for messages in received:
            assert [(m.seq, m.text) for m in messages] == sent
        # The idempotency key holds across replicas.
        first = await alice.send(room.id, "once", "k-1")
        assert await on(alice, ch_b).send(room.id, "once", "k-1") == first
        for stream in subscribers:
            assert seqs_of(await stream.messages(1)) == [total + 1]
            stream.cancel()


async def test_clients_of_a_killed_replica_resume_on_the_other_without_loss(
    tmp_path: Path, auth: RunningAuth, postgres_url: str
) -> None:
    survivor = await start_chat(tmp_path / "survivor", auth, postgres_url, send_interval=0.0)
    port = free_port()
    env = {
        **os.environ,
        "MESHCHAT_LISTEN": f"127.0.0.1:{port}",
        "MESHCHAT_METRICS_LISTEN": "off",
        "MESHCHAT_DATABASE_URL": postgres_url,
        "MESHCHAT_AUTH_ADDR": auth.address,
        "MESHCHAT_LOG_LEVEL": "warning",
        "MESHCHAT_SEND_INTERVAL": "0",
    }
    log_path = tmp_path / "victim.log"
    with log_path.open("wb") as log:
        victim = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "meshchat_chat",
            "serve",
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=log,
        )
    try:

        async def victim_serving() -> bool:
            assert victim.returncode is None, log_path.read_text()
            return await asyncio.to_thread(health_status, f"127.0.0.1:{port}") == SERVING

        await eventually(victim_serving, what="the victim replica SERVING")
        async with (
            auth.channel() as auth_ch,
            survivor.channel() as ch_survivor,
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch_victim,
        ):
            people = People(auth, auth_ch, ch_survivor)
            alice, bob, carol = [await people(n) for n in ("alice", "bob", "carol")]
            room = await alice.create_chat("failover", "bob", "carol")
            total = 150
            seen_enough = asyncio.Event()

            async def follow(person: Person) -> tuple[list[int], int]:
                seen: list[int] = []
                reconnects = 0
                stub_person = on(person, ch_victim)
                while len(seen) < total:
                    stream = Stream(stub_person.connect(room.id, seen[-1] if seen else 0))
                    try:
                        replayed, _ = await stream.replay()
                        seen += seqs_of(replayed)
                        while len(seen) < total:
                            seen += seqs_of(await stream.messages(1))
                            if len(seen) >= 30:
                                seen_enough.set()
                    except grpc.aio.AioRpcError as exc:
                        if exc.code() != grpc.StatusCode.UNAVAILABLE:
                            raise
                        reconnects += 1
                        stub_person = person  # the survivor
                return seen, reconnects

            async def keep_sending() -> None:
                for i in range(total):
                    await alice.send(room.id, f"tick {i}")
                    await asyncio.sleep(0.005)  # a steady flow of messages, not a synchronisation

            readers = [asyncio.create_task(follow(p)) for p in (bob, carol)]
            sender = asyncio.create_task(keep_sending())
            await asyncio.wait_for(seen_enough.wait(), DEADLINE)
            victim.send_signal(signal.SIGKILL)
            await asyncio.wait_for(sender, DEADLINE * 2)
            for seen, reconnects in await asyncio.wait_for(asyncio.gather(*readers), DEADLINE):
                assert seen == list(range(1, total + 1))
                assert reconnects == 1
    finally:
        if victim.returncode is None:
            victim.kill()
        await victim.wait()
        await survivor.stop()


class Resuming:
    """A Connect client that, like a real one, reconnects with after_seq when the service
    answers UNAVAILABLE (its database is away)."""

    def __init__(self, person: Person, chat_id: str) -> None:
        self._person = person
        self._chat_id = chat_id
        self.stream: Stream | None = None
        self.seen: list[int] = []

    async def read(self, count: int) -> list[int]:
        """The next ``count`` seqs (the replay of a first connection included)."""
        wanted = len(self.seen) + count
        while True:
            try:
                if self.stream is None:
                    self.stream = Stream(
                        self._person.connect(self._chat_id, self.seen[-1] if self.seen else 0)
                    )
                    self.seen += seqs_of((await self.stream.replay())[0])
                while len(self.seen) < wanted:
                    self.seen += seqs_of(await self.stream.messages(1))
                return self.seen[wanted - count : wanted]
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                self.stream = None


def health(chat: RunningChat) -> int | None:
    return health_status(chat.address)


async def test_health_follows_the_database_and_the_listener_recovers_what_it_missed(
    tmp_path: Path, auth: RunningAuth, postgres_url: str
) -> None:
    url = urlsplit(postgres_url)
    proxy = TcpProxy(url.hostname or "127.0.0.1", url.port or 5432)
    await proxy.start()
    proxied_url = url._replace(netloc=f"{url.username}@127.0.0.1:{proxy.port}").geturl()
    fragile = await start_chat(tmp_path / "fragile", auth, proxied_url, listen_check_interval=0.5)
    steady = await start_chat(tmp_path / "steady", auth, postgres_url)
    try:
        async with auth.channel() as auth_ch, fragile.channel() as ch_f, steady.channel() as ch_s:
            people = People(auth, auth_ch, ch_s)
            alice, bob = await people("alice"), await people("bob")
            room = await alice.create_chat("weather", "bob")
            reader = Resuming(on(bob, ch_f), room.id)
            assert await reader.read(0) == []
            assert await asyncio.to_thread(health, fragile) == SERVING

            proxy.cut()
            await eventually(
                lambda: asyncio.to_thread(lambda: health(fragile) == NOT_SERVING),
                what="NOT_SERVING without its database",
            )
            # Sent while the fragile replica can neither hear announcements nor read.
            for i in range(3):
                await alice.send(room.id, f"during the outage {i}")
            proxy.restore()
            await eventually(
                lambda: asyncio.to_thread(lambda: health(fragile) == SERVING),
                within=20,
                what="SERVING again",
            )
            assert await reader.read(3) == [1, 2, 3]
            await alice.send(room.id, "after the outage")
            assert await reader.read(1) == [4]

            # Losing only the LISTEN connection: it reconnects and reads what it missed.
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s",
                    (APPLICATION_NAME,),
                )
            for i in range(3):
                await alice.send(room.id, f"listener gone {i}")
            assert await reader.read(3) == [5, 6, 7]
            assert reader.seen == [1, 2, 3, 4, 5, 6, 7]
            assert reader.stream is not None
            reader.stream.cancel()
    finally:
        await fragile.stop()
        await steady.stop()
        await proxy.stop()


async def test_each_replica_caches_chats_and_honours_changes_made_on_the_other(
    auth: RunningAuth, replicas: tuple[RunningChat, RunningChat]
) -> None:
    a, b = replicas
    async with auth.channel() as auth_ch, a.channel() as ch_a, b.channel() as ch_b:
        people = People(auth, auth_ch, ch_a)
        alice, bob = await people("alice"), await people("bob")
        room = await alice.create_chat("cached", "bob")
        bob_b = on(bob, ch_b)
        await eventually(lambda: b.app.listener is not None and b.app.listener.connected)
        await bob_b.get_chat(room.id)
        hits = b.app.cache.hits
        assert len((await bob_b.get_chat(room.id)).members) == 2
        assert b.app.cache.hits == hits + 1, "the second read went to the database"

        await alice.remove_member(room.id, "bob")
        assert (await status_of(bob_b.get_chat(room.id)))[0] == grpc.StatusCode.PERMISSION_DENIED
        assert (await status_of(bob_b.send(room.id, "still here?")))[0] == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        code, _ = await status_of(Stream(bob_b.connect(room.id)).replay())
        assert code == grpc.StatusCode.PERMISSION_DENIED

        await alice.add_member(room.id, "bob")
        assert len((await bob_b.get_chat(room.id)).members) == 2
        sent = await alice.send(room.id, "welcome back")
        # A resume from the message just sent on the other replica is no error.
        stream = Stream(bob_b.connect(room.id, after_seq=sent.seq))
        assert await stream.replay() == ([], sent.seq)
        stream.cancel()

        await alice.delete_chat(room.id)
        assert (await status_of(bob_b.get_chat(room.id)))[0] == grpc.StatusCode.NOT_FOUND
