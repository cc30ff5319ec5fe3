"""``make bench``: measure meshchat on this machine and write bench-results/.

Every figure comes from real processes on loopback: a bare grpc.aio echo server, and the auth
and chat services on a throwaway PostgreSQL (durable: fsync and synchronous_commit on).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import psycopg

from benchmarks.echo_server import METHOD as ECHO_METHOD
from benchmarks.login_storm import login_storm
from devtools.paths import REPO_ROOT
from devtools.postgres import ThrowawayPostgres, throwaway_postgres
from devtools.processes import ServiceProcess, free_port
from meshchat.auth.v1 import auth_pb2, auth_pb2_grpc, users_pb2, users_pb2_grpc
from meshchat.chat.v1 import chat_pb2, chat_pb2_grpc

RESULTS = REPO_ROOT / "bench-results"
PASSWORD = "benchmark password"  # noqa: S105 (throwaway benchmark users)
DURATION = float(os.environ.get("MESHCHAT_BENCH_SECONDS", "5"))
MEMBERS = 100
OFFERED_RATE = 200.0
FANOUT_SECONDS = 10.0
IDLE_STREAMS = 5000


@dataclass
class Report:
    """What the run measured, and where."""

    machine: dict[str, Any]
    figures: dict[str, float] = field(default_factory=dict)
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)

    def add(self, name: str, value: float, unit: str, target: str = "") -> None:
        self.figures[name] = value
        self.rows.append((name, f"{value:,.2f}", unit, target))
        print(f"  {name}: {value:,.2f} {unit} {target}", flush=True)

    def table(self) -> str:
        lines = ["| measure | value | unit | target |", "|---|---:|---|---|"]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in self.rows]
        return "\n".join(lines)


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


async def unary_rate(
    call: Callable[[], Awaitable[Any]], seconds: float, concurrency: int = 64
) -> float:
    """Calls per second that ``concurrency`` callers complete in ``seconds``."""
    done = 0
    end = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < end:
            await call()
            done += 1

    for _ in range(concurrency):  # warm up every caller once
        await call()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


def rss_bytes(pid: int) -> int:
    """Resident memory of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def echo_ceiling(report: Report, workdir: Path) -> float:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.echo_server", str(port), cwd=REPO_ROOT
    )
    try:
        channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(2)]
        for channel in channels:
            await asyncio.wait_for(channel.channel_ready(), 20)
        calls: list[grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = [
            channel.unary_unary(ECHO_METHOD) for channel in channels
        ]
        counter = 0

        async def call() -> None:
            nonlocal counter
            counter += 1
            await calls[counter % 2](b"x" * 64, timeout=10)

        rate = await unary_rate(call, DURATION)
        for channel in channels:
            await channel.close()
    finally:
        process.terminate()
        await process.wait()
    report.add("1. echo ceiling (bare grpc.aio unary)", rate, "calls/s")
    return rate


@dataclass
class Stack:
    auth: ServiceProcess
    chat: ServiceProcess
    channel: grpc.aio.Channel
    tokens: dict[str, str]


async def start_stack(
    pg: ThrowawayPostgres, workdir: Path, authz_mode: str, chat_db: str, auth_db: str
) -> tuple[ServiceProcess, ServiceProcess]:
    auth = ServiceProcess(
        "meshchat-auth",
        {
            "MESHCHAT_DATABASE_URL": auth_db,
            "MESHCHAT_KEYS_DIR": str(workdir / "keys"),
            "MESHCHAT_ACCESS_TOKEN_TTL": "2h",
            "MESHCHAT_LOG_LEVEL": "warning",
        },
        workdir,
    )
    await asyncio.to_thread(auth.start)
    chat = ServiceProcess(
        "meshchat-chat",
        {
            "MESHCHAT_DATABASE_URL": chat_db,
            "MESHCHAT_AUTH_ADDR": auth.address,
            "MESHCHAT_AUTHZ_MODE": authz_mode,
            "MESHCHAT_LOG_LEVEL": "warning",
            "MESHCHAT_DATABASE_POOL_SIZE": "20",
        },
        workdir,
    )
    await asyncio.to_thread(chat.start)
    return auth, chat


async def make_users(channel: grpc.aio.Channel, names: list[str]) -> dict[str, str]:
    users = users_pb2_grpc.UserServiceStub(channel)
    auth = auth_pb2_grpc.AuthServiceStub(channel)
    semaphore = asyncio.Semaphore(8)

    async def one(name: str) -> tuple[str, str]:
        async with semaphore:
            await users.CreateUser(
                users_pb2.CreateUserRequest(
                    username=name, password=PASSWORD, password_confirm=PASSWORD
                ),
                timeout=30,
            )
            pair = await auth.Login(
                auth_pb2.LoginRequest(username=name, password=PASSWORD), timeout=30
            )
            return name, pair.access_token

    return dict(await asyncio.gather(*(one(n) for n in names)))


async def get_chat_rate(chat_address: str, token: str, chat_id: str) -> float:
    channels = [grpc.aio.insecure_channel(chat_address) for _ in range(2)]
    stubs = [chat_pb2_grpc.ChatServiceStub(c) for c in channels]
    counter = 0
    request = chat_pb2.GetChatRequest(chat_id=chat_id)

    async def call() -> None:
        nonlocal counter
        counter += 1
        await stubs[counter % 2].GetChat(request, metadata=bearer(token), timeout=10)

    rate = await unary_rate(call, DURATION)
    for channel in channels:
        await channel.close()
    return rate


async def send_rate(chat_address: str, token: str, chat_ids: list[str]) -> float:
    channels = [grpc.aio.insecure_channel(chat_address) for _ in range(2)]
    stubs = [chat_pb2_grpc.ChatServiceStub(c) for c in channels]
    counter = 0

    async def call() -> None:
        nonlocal counter
        counter += 1
        await stubs[counter % 2].SendMessage(
            chat_pb2.SendMessageRequest(
                chat_id=chat_ids[counter % len(chat_ids)],
                text="benchmark message",
                client_message_id=uuid.uuid4().hex,
            ),
            metadata=bearer(token),
            timeout=10,
        )

    rate = await unary_rate(call, DURATION)
    for channel in channels:
        await channel.close()
    return rate


async def fanout(
    report: Report, chat_address: str, tokens: dict[str, str], owner: str, members: list[str]
) -> None:
    async with grpc.aio.insecure_channel(chat_address) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        chat = await stub.CreateChat(
            chat_pb2.CreateChatRequest(name="fan-out", member_usernames=members),
            metadata=bearer(tokens[owner]),
            timeout=30,
        )
    total = int(OFFERED_RATE * FANOUT_SECONDS)
    sent_at: dict[int, float] = {}
    received: dict[str, list[tuple[int, float]]] = {m: [] for m in members}
    ready = 0
    all_ready = asyncio.Event()
    finished = asyncio.Event()
    remaining = len(members)
    receive_channels = [
        grpc.aio.insecure_channel(chat_address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(4)
    ]

    async def receive(index: int, member: str) -> None:
        nonlocal ready, remaining
        stub = chat_pb2_grpc.ChatServiceStub(receive_channels[index % len(receive_channels)])
        stream = stub.Connect(
            chat_pb2.ConnectRequest(chat_id=chat.id, after_seq=0), metadata=bearer(tokens[member])
        )
        got = received[member]
        async for event in stream:
            if event.HasField("caught_up"):
                ready += 1
                if ready == len(members):
                    all_ready.set()
            elif event.HasField("message"):
                got.append((event.message.seq, time.perf_counter()))
                if len(got) == total:
                    remaining -= 1
                    if remaining == 0:
                        finished.set()
                    stream.cancel()
                    return

    receivers = [asyncio.create_task(receive(i, m)) for i, m in enumerate(members)]
    await asyncio.wait_for(all_ready.wait(), 60)
    async with grpc.aio.insecure_channel(chat_address) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        start = time.perf_counter()
        pending: set[asyncio.Task[Any]] = set()

        async def send(i: int) -> None:
            sent_at[i] = time.perf_counter()
            message = await stub.SendMessage(
                chat_pb2.SendMessageRequest(
                    chat_id=chat.id, text=f"m{i}", client_message_id=f"fan-{i}"
                ),
                metadata=bearer(tokens[owner]),
                timeout=30,
            )
            seq_sent[message.seq] = sent_at[i]

        seq_sent: dict[int, float] = {}
        for i in range(total):
            delay = start + i / OFFERED_RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the offered rate, not synchronisation
            task = asyncio.create_task(send(i))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(finished.wait(), 60)
    for task in receivers:
        task.cancel()
    for channel in receive_channels:
        await channel.close()
    latencies = [
        (arrival - seq_sent[seq]) * 1000
        for got in received.values()
        for seq, arrival in got
        if seq in seq_sent
    ]
    deliveries = sum(len(g) for g in received.values())
    first = min(seq_sent.values())
    last = max(arrival for got in received.values() for _, arrival in got)
    in_order = all([s for s, _ in got] == sorted({s for s, _ in got}) for got in received.values())
    latencies.sort()
    report.add(
        "4. fan-out deliveries",
        deliveries / (last - first),
        "deliveries/s",
        f"offered {OFFERED_RATE:.0f} msg/s x {len(members)} members",
    )
    report.add("4. fan-out latency p50", latencies[len(latencies) // 2], "ms")
    report.add("4. fan-out latency p99", latencies[int(len(latencies) * 0.99)], "ms", "<= 25 ms")
    report.add("4. fan-out latency max", latencies[-1], "ms")
    report.add(
        "4. fan-out lost deliveries", float(total * len(members) - deliveries), "messages", "0"
    )
    report.add(
        "4. fan-out streams in seq order without duplicates", float(in_order), "1 = yes", "1"
    )


async def idle_streams(report: Report, chat: ServiceProcess, token: str, chat_id: str) -> None:
    assert chat.process is not None
    pid = chat.process.pid
    async with grpc.aio.insecure_channel(chat.address) as channel:
        found = await chat_pb2_grpc.ChatServiceStub(channel).GetChat(
            chat_pb2.GetChatRequest(chat_id=chat_id), metadata=bearer(token), timeout=10
        )
    before = rss_bytes(pid)
    per_client = 2500
    clients = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.idle_client",
            chat.address,
            token,
            chat_id,
            str(found.last_seq),
            str(per_client),
            cwd=REPO_ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(IDLE_STREAMS // per_client)
    ]
    try:
        for client in clients:
            assert client.stdout is not None
            line = await asyncio.wait_for(client.stdout.readline(), 150)
            if line.strip() != b"ready":
                raise RuntimeError("an idle-stream client failed to open its streams")
        after = rss_bytes(pid)
    finally:
        for client in clients:
            assert client.stdin is not None
            client.stdin.close()
        for client in clients:
            await client.wait()
    report.add(
        "5. server memory per idle Connect stream",
        (after - before) / IDLE_STREAMS / 1024,
        "KB",
        "<= 25 KB",
    )
    report.add("5. chat server RSS with 5,000 idle streams", after / 2**20, "MiB")


def versions(pg: ThrowawayPostgres) -> dict[str, Any]:
    with psycopg.connect(pg.admin_url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        pg_version = row[0] if row else "?"
    return {
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "postgresql": pg_version,
        "cores": os.cpu_count(),
        "machine": f"{platform.system()} {platform.machine()} {platform.release()}",
        "cpu": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "?",
        ),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


async def run() -> Report:
    workdir = Path(tempfile.mkdtemp(prefix="meshchat-bench-"))
    with throwaway_postgres() as pg:
        report = Report(versions(pg))
        print(f"meshchat benchmark on {report.machine}", flush=True)
        ceiling = await echo_ceiling(report, workdir)
        auth_db, chat_db = pg.create_database("bench_auth"), pg.create_database("bench_chat")
        for mode in ("local", "remote"):
            auth, chat = await start_stack(pg, workdir, mode, chat_db, auth_db)
            try:
                async with grpc.aio.insecure_channel(auth.address) as channel:
                    if mode == "local":
                        names = ["owner", *(f"member{i:03d}" for i in range(MEMBERS))]
                        tokens = await make_users(channel, names)
                        await login_storm(
                            report, auth.address, "owner", PASSWORD, tokens["owner"], DURATION
                        )
                    else:
                        pair = await auth_pb2_grpc.AuthServiceStub(channel).Login(
                            auth_pb2.LoginRequest(username="owner", password=PASSWORD), timeout=30
                        )
                        tokens["owner"] = pair.access_token
                async with grpc.aio.insecure_channel(chat.address) as channel:
                    stub = chat_pb2_grpc.ChatServiceStub(channel)
                    if mode == "local":
                        chats = [
                            (
                                await stub.CreateChat(
                                    chat_pb2.CreateChatRequest(name=f"bench {i}"),
                                    metadata=bearer(tokens["owner"]),
                                    timeout=30,
                                )
                            ).id
                            for i in range(16)
                        ]
                rate = await get_chat_rate(chat.address, tokens["owner"], chats[0])
                report.add(f"2. GetChat through the chat service, {mode} authz", rate, "calls/s")
                report.add(
                    f"2. ratio to the echo ceiling, {mode} authz",
                    rate / ceiling,
                    "",
                    ">= 0.7 in local mode" if mode == "local" else "",
                )
                if mode == "local":
                    report.add(
                        "3. SendMessage on PostgreSQL (durable), 16 chats",
                        await send_rate(chat.address, tokens["owner"], chats),
                        "messages/s",
                        ">= 1,500",
                    )
                    report.add(
                        "3. SendMessage on PostgreSQL (durable), 1 chat",
                        await send_rate(chat.address, tokens["owner"], chats[:1]),
                        "messages/s",
                    )
                    await fanout(
                        report, chat.address, tokens, "owner", [n for n in tokens if n != "owner"]
                    )
                    await idle_streams(report, chat, tokens["owner"], chats[1])
            finally:
                await asyncio.to_thread(chat.stop)
                await asyncio.to_thread(auth.stop)
    return report


def main() -> None:
    report = asyncio.run(run())
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "results.json").write_text(
        json.dumps({"machine": report.machine, "figures": report.figures}, indent=2) + "\n"
    )
    machine = ", ".join(f"{k} {v}" for k, v in report.machine.items())
    table = f"{report.table()}\n\n{machine}\n"
    (RESULTS / "results.md").write_text(table)
    print()
    print(table)
    print(f"written to {RESULTS}/results.json and results.md")


if __name__ == "__main__":
    main()
