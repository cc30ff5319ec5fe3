"""``make bench``: measure meshchat on this machine and write bench-results/.

Every figure comes from real processes on loopback: a bare grpc.aio echo server and a bare
grpc.aio streaming server (the ceilings every figure is also given as a ratio to, measured in
the same run), and the auth and chat services on a throwaway PostgreSQL (durable: fsync and
synchronous_commit on). The load of the fan-out comes from processes of their own
(``benchmarks/load.py``): one sender and two receivers, each holding half the streams.

``python -m benchmarks --quick [--out DIR]`` runs every part briefly and small (a smoke test);
``--login-storm`` runs only the login storm, ``--load-curve`` only the streaming ceiling and the
load curve.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import matplotlib
import psycopg

from benchmarks.echo_server import METHOD as ECHO_METHOD
from benchmarks.login_storm import login_storm
from benchmarks.report import Report, Step, percentile
from devtools.paths import REPO_ROOT
from devtools.postgres import ThrowawayPostgres, throwaway_postgres
from devtools.processes import ServiceProcess, free_port
from meshchat.auth.v1 import auth_pb2, auth_pb2_grpc, users_pb2, users_pb2_grpc
from meshchat.chat.v1 import chat_pb2, chat_pb2_grpc

RESULTS = REPO_ROOT / "bench-results"
PASSWORD = "benchmark password"  # noqa: S105 (throwaway benchmark users)
RECEIVER_PROCESSES = 2
STOP_P99_MS = 100.0
STORM_USER = "storm"


@dataclass(frozen=True)
class Plan:
    """How big and how long: the full run, or the quick smoke test."""

    seconds: float  # each throughput measurement
    members: int
    first_rate: float  # the load curve doubles from here ...
    max_rate: float  # ... until p99 > 100 ms or past this
    step_seconds: float
    idle_streams: int
    remote_authz: bool


FULL = Plan(
    seconds=float(os.environ.get("MESHCHAT_BENCH_SECONDS", "5")),
    members=100,
    first_rate=50,
    max_rate=51_200,
    step_seconds=3.0,
    idle_streams=5000,
    remote_authz=True,
)
QUICK = Plan(
    seconds=0.5,
    members=10,
    first_rate=20,
    max_rate=40,
    step_seconds=0.5,
    idle_streams=100,
    remote_authz=False,
)


def member_names(plan: Plan) -> list[str]:
    """The users who are members of the fan-out's chat."""
    return [f"member{i:03d}" for i in range(plan.members)]


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


async def unary_rate(
    call: Callable[[], Awaitable[Any]], seconds: float, concurrency: int = 64
) -> float:
    """Calls per second that ``concurrency`` callers complete in ``seconds``."""
    done = 0
    for _ in range(concurrency):  # warm up every caller once
        await call()
    started = time.perf_counter()
    end = started + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < end:
            await call()
            done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


def rss_bytes(pid: int) -> int:
    """Resident memory of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class Worker:
    """A child process of the benchmark that talks JSON lines over its stdin and stdout."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, module: str, *args: str) -> Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *args,
            cwd=REPO_ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def tell(self, value: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(value).encode() + b"\n")
        await self.process.stdin.drain()

    async def hear(self, within: float) -> Any:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), within)
        if not line:
            raise RuntimeError(f"a load process ended early (exit {await self.process.wait()})")
        return json.loads(line)

    async def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


@asynccontextmanager
async def bare_server(module: str) -> AsyncIterator[str]:
    """A bare grpc.aio server process (``benchmarks.echo_server`` or ``.stream_server``)."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, str(port), cwd=REPO_ROOT
    )
    address = f"127.0.0.1:{port}"
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            await asyncio.wait_for(channel.channel_ready(), 20)
        yield address
    finally:
        process.terminate()
        await process.wait()


async def echo_ceiling(report: Report, plan: Plan) -> float:
    async with bare_server("benchmarks.echo_server") as address:
        channels = [grpc.aio.insecure_channel(address) for _ in range(2)]
        calls: list[grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = [
            channel.unary_unary(ECHO_METHOD) for channel in channels
        ]
        counter = 0

        async def call() -> None:
            nonlocal counter
            counter += 1
            await calls[counter % 2](b"x" * 64, timeout=10)

        rate = await unary_rate(call, plan.seconds)
        for channel in channels:
            await channel.close()
    report.add("1. echo ceiling (bare grpc.aio unary)", rate, "calls/s")
    return rate


async def streaming_ceiling(report: Report, plan: Plan) -> float:
    """Messages per second a bare grpc.aio server writes to as many streams as the chat has
    members, held by as many receiver processes as the fan-out uses."""
    async with bare_server("benchmarks.stream_server") as address:
        per_process = math.ceil(plan.members / RECEIVER_PROCESSES)
        workers = [
            await Worker.start(
                "benchmarks.load", "stream-receive", address, str(per_process), str(plan.seconds)
            )
            for _ in range(RECEIVER_PROCESSES)
        ]
        results = [await w.hear(plan.seconds + 60) for w in workers]
        for worker in workers:
            await worker.stop()
    rate = float(sum(r["messages"] for r in results) / max(r["seconds"] for r in results))
    report.add(
        f"1. streaming ceiling (bare grpc.aio, {per_process * RECEIVER_PROCESSES} streams)",
        rate,
        "messages/s",
    )
    return rate


async def start_auth(workdir: Path, auth_db: str) -> ServiceProcess:
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
    return auth


async def start_stack(
    workdir: Path, authz_mode: str, chat_db: str, auth_db: str
) -> tuple[ServiceProcess, ServiceProcess]:
    auth = await start_auth(workdir, auth_db)
    chat = ServiceProcess("meshchat-chat", chat_env(chat_db, auth.address, authz_mode), workdir)
    await asyncio.to_thread(chat.start)
    return auth, chat


def chat_env(chat_db: str, auth_address: str, authz_mode: str) -> dict[str, str]:
    """The environment of the benchmark's chat service (tracing off)."""
    return {
        "MESHCHAT_DATABASE_URL": chat_db,
        "MESHCHAT_AUTH_ADDR": auth_address,
        "MESHCHAT_AUTHZ_MODE": authz_mode,
        "MESHCHAT_LOG_LEVEL": "warning",
        "MESHCHAT_DATABASE_POOL_SIZE": "20",
        # The benchmark measures capacity, not the quotas: the per-user send rate would cap
        # it, and one user holds all the idle streams.
        "MESHCHAT_SEND_INTERVAL": "0",
        "MESHCHAT_MAX_STREAMS_PER_USER": "100000",
    }


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


async def login(auth_address: str, name: str) -> str:
    async with grpc.aio.insecure_channel(auth_address) as channel:
        pair = await auth_pb2_grpc.AuthServiceStub(channel).Login(
            auth_pb2.LoginRequest(username=name, password=PASSWORD), timeout=30
        )
    return pair.access_token


async def get_chat_rate(chat_address: str, token: str, chat_id: str, seconds: float) -> float:
    channels = [grpc.aio.insecure_channel(chat_address) for _ in range(2)]
    stubs = [chat_pb2_grpc.ChatServiceStub(c) for c in channels]
    counter = 0
    request = chat_pb2.GetChatRequest(chat_id=chat_id)

    async def call() -> None:
        nonlocal counter
        counter += 1
        await stubs[counter % 2].GetChat(request, metadata=bearer(token), timeout=10)

    rate = await unary_rate(call, seconds)
    for channel in channels:
        await channel.close()
    return rate


async def get_chat_traced(
    report: Report,
    plan: Plan,
    workdir: Path,
    chat_db: str,
    auth_address: str,
    token: str,
    chat_id: str,
    echo: float,
) -> None:
    """GetChat again on a second chat process with tracing on, every call sampled and its
    spans exported over OTLP to a sink that discards them: what tracing costs when on, next to
    the tracing-off figure of the same run."""
    async with bare_server("benchmarks.otlp_sink") as sink:
        env = {
            **chat_env(chat_db, auth_address, "local"),
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{sink}",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_TRACES_SAMPLER": "always_on",
        }
        traced = ServiceProcess("meshchat-chat", env, workdir)
        await asyncio.to_thread(traced.start)
        try:
            rate = await get_chat_rate(traced.address, token, chat_id, plan.seconds)
        finally:
            await asyncio.to_thread(traced.stop)
    report.add("2. GetChat, local authz, tracing on (every call, OTLP)", rate, "calls/s")
    report.add("2. GetChat, local authz, tracing on / echo ceiling", rate / echo, "")


async def send_rate(chat_address: str, token: str, chat_ids: list[str], seconds: float) -> float:
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

    rate = await unary_rate(call, seconds)
    for channel in channels:
        await channel.close()
    return rate


async def load_curve(
    report: Report, plan: Plan, chat_address: str, tokens: dict[str, str], ceiling: float
) -> None:
    """Offered rates doubling until p99 passes 100 ms: what every member's stream got."""
    members = member_names(plan)
    async with grpc.aio.insecure_channel(chat_address) as channel:
        chat = await chat_pb2_grpc.ChatServiceStub(channel).CreateChat(
            chat_pb2.CreateChatRequest(name="fan-out", member_usernames=members),
            metadata=bearer(tokens["owner"]),
            timeout=30,
        )
    share = math.ceil(len(members) / RECEIVER_PROCESSES)
    receivers = []
    for start in range(0, len(members), share):
        worker = await Worker.start("benchmarks.load", "receive", chat_address, chat.id)
        await worker.tell([tokens[m] for m in members[start : start + share]])
        receivers.append(worker)
    try:
        for worker in receivers:
            await worker.hear(120)
        rate = plan.first_rate
        while rate <= plan.max_rate:
            step = await curve_step(
                plan, chat_address, tokens["owner"], chat.id, rate, receivers, ceiling
            )
            report.curve.append(step)
            print(f"  load curve: {step}", flush=True)
            if step.p99_ms > STOP_P99_MS:
                break
            rate *= 2
    finally:
        for worker in receivers:
            await worker.stop()
    knee = report.knee()
    report.add(
        "4. load curve knee (highest offered rate with p99 <= 25 ms)",
        knee.offered if knee else 0.0,
        "messages/s",
        f"to {len(members)} members",
    )
    if knee is not None:
        report.add("4. deliveries/s at the knee", knee.deliveries_per_s, "deliveries/s")
        report.add("4. deliveries/s at the knee / streaming ceiling", knee.streaming_ratio, "")


async def curve_step(
    plan: Plan,
    address: str,
    token: str,
    chat_id: str,
    rate: float,
    receivers: list[Worker],
    ceiling: float,
) -> Step:
    """One offered rate for ``plan.step_seconds``; then the receivers wait for the rest."""
    sender = await Worker.start(
        "benchmarks.load", "send", address, token, chat_id, str(rate), str(plan.step_seconds)
    )
    sent = await sender.hear(plan.step_seconds + 120)
    await sender.stop()
    drain = max(10.0, plan.step_seconds * 3)
    for worker in receivers:
        await worker.tell({"first": sent["first"], "last": sent["last"], "timeout": drain})
    parts = [await w.hear(drain + 60) for w in receivers]
    histogram: dict[int, int] = {}
    for part in parts:
        for key, count in part["histogram"].items():
            histogram[int(key)] = histogram.get(int(key), 0) + count
    received = sum(p["received"] for p in parts)
    # Over the time from the first send to the last one, while the receivers keep up;
    # a backlog that drains later is in the latencies, not in the rate.
    deliveries_per_s = received / sent["seconds"]
    return Step(
        offered=rate,
        sent=sent["sent"],
        send_errors=sent["errors"],
        deliveries_per_s=deliveries_per_s,
        p50_ms=percentile(histogram, 0.50),
        p99_ms=percentile(histogram, 0.99),
        max_ms=max(p["max_ms"] for p in parts),
        missing=sum(p["expected"] for p in parts) - received,
        in_order=all(p["in_order"] for p in parts),
        streaming_ratio=deliveries_per_s / ceiling,
    )


async def idle_streams(
    report: Report, plan: Plan, chat: ServiceProcess, token: str, chat_id: str
) -> None:
    assert chat.process is not None
    pid = chat.process.pid
    async with grpc.aio.insecure_channel(chat.address) as channel:
        found = await chat_pb2_grpc.ChatServiceStub(channel).GetChat(
            chat_pb2.GetChatRequest(chat_id=chat_id), metadata=bearer(token), timeout=10
        )
    before = rss_bytes(pid)
    per_client = max(1, plan.idle_streams // 2)
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
        for _ in range(2)
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
    streams = per_client * 2
    report.add(
        "5. server memory per idle Connect stream",
        (after - before) / streams / 1024,
        "KB",
        "<= 20 KB",
    )
    report.add(f"5. chat server RSS with {streams:,} idle streams", after / 2**20, "MiB")


def versions(pg: ThrowawayPostgres) -> dict[str, Any]:
    with psycopg.connect(pg.admin_url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        pg_version = row[0] if row else "?"
    return {
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "postgresql": pg_version,
        "matplotlib": matplotlib.__version__,
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
        "load average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "sides": "server and load generators share the machine's cores; "
        "load: 1 sender and 2 receiver processes",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


async def measure_stack(
    report: Report, plan: Plan, pg: ThrowawayPostgres, workdir: Path, ceilings: tuple[float, float]
) -> None:
    echo, streaming = ceilings
    auth_db, chat_db = pg.create_database("bench_auth"), pg.create_database("bench_chat")
    tokens: dict[str, str] = {}
    chats: list[str] = []
    for mode in ("local", "remote") if plan.remote_authz else ("local",):
        auth, chat = await start_stack(workdir, mode, chat_db, auth_db)
        try:
            if mode == "local":
                async with grpc.aio.insecure_channel(auth.address) as channel:
                    names = ["owner", STORM_USER, *member_names(plan)]
                    tokens = await make_users(channel, names)
                    # Its own user: the storm may trip the login throttle of the user it uses.
                    await login_storm(
                        report, auth.address, STORM_USER, PASSWORD, tokens[STORM_USER], plan.seconds
                    )
                async with grpc.aio.insecure_channel(chat.address) as channel:
                    stub = chat_pb2_grpc.ChatServiceStub(channel)
                    for i in range(16):
                        created = await stub.CreateChat(
                            chat_pb2.CreateChatRequest(name=f"bench {i}"),
                            metadata=bearer(tokens["owner"]),
                            timeout=30,
                        )
                        chats.append(created.id)
            else:
                tokens["owner"] = await login(auth.address, "owner")
            rate = await get_chat_rate(chat.address, tokens["owner"], chats[0], plan.seconds)
            report.add(f"2. GetChat, {mode} authz", rate, "calls/s")
            report.add(
                f"2. GetChat, {mode} authz / echo ceiling",
                rate / echo,
                "",
                ">= 0.8" if mode == "local" else "",
            )
            if mode == "local":
                await get_chat_traced(
                    report, plan, workdir, chat_db, auth.address, tokens["owner"], chats[0], echo
                )
                for label, ids in (("16 chats", chats), ("1 chat", chats[:1])):
                    sends = await send_rate(chat.address, tokens["owner"], ids, plan.seconds)
                    report.add(f"3. durable SendMessage, {label}", sends, "messages/s")
                    report.add(f"3. durable SendMessage, {label} / echo ceiling", sends / echo, "")
                await load_curve(report, plan, chat.address, tokens, streaming)
                await idle_streams(report, plan, chat, tokens["owner"], chats[1])
        finally:
            await asyncio.to_thread(chat.stop)
            await asyncio.to_thread(auth.stop)


async def run(plan: Plan) -> Report:
    workdir = Path(tempfile.mkdtemp(prefix="meshchat-bench-"))
    with throwaway_postgres() as pg:
        report = Report(versions(pg))
        print(f"meshchat benchmark on {report.machine}", flush=True)
        report.figures["members"] = plan.members
        ceilings = (await echo_ceiling(report, plan), await streaming_ceiling(report, plan))
        await measure_stack(report, plan, pg, workdir, ceilings)
    return report


async def run_login_storm(plan: Plan) -> Report:
    """The login storm (6) alone, against an auth service of its own."""
    workdir = Path(tempfile.mkdtemp(prefix="meshchat-bench-"))
    with throwaway_postgres() as pg:
        report = Report(versions(pg))
        auth = await start_auth(workdir, pg.create_database("bench_auth"))
        try:
            async with grpc.aio.insecure_channel(auth.address) as channel:
                tokens = await make_users(channel, [STORM_USER])
            await login_storm(
                report, auth.address, STORM_USER, PASSWORD, tokens[STORM_USER], plan.seconds
            )
        finally:
            await asyncio.to_thread(auth.stop)
    return report


async def run_load_curve(plan: Plan) -> Report:
    """The streaming ceiling and the load curve (4) alone, against a stack of their own."""
    workdir = Path(tempfile.mkdtemp(prefix="meshchat-bench-"))
    with throwaway_postgres() as pg:
        report = Report(versions(pg))
        report.figures["members"] = plan.members
        streaming = await streaming_ceiling(report, plan)
        auth, chat = await start_stack(
            workdir, "local", pg.create_database("bench_chat"), pg.create_database("bench_auth")
        )
        try:
            async with grpc.aio.insecure_channel(auth.address) as channel:
                tokens = await make_users(channel, ["owner", *member_names(plan)])
            await load_curve(report, plan, chat.address, tokens, streaming)
        finally:
            await asyncio.to_thread(chat.stop)
            await asyncio.to_thread(auth.stop)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a brief, small run (smoke test)")
    parser.add_argument(
        "--login-storm", action="store_true", help="only the login storm (6), for tuning it"
    )
    parser.add_argument(
        "--load-curve",
        action="store_true",
        help="only the streaming ceiling and the load curve (4), for tuning the fan-out",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the results")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    if args.login_storm:
        report = asyncio.run(run_login_storm(plan))
    elif args.load_curve:
        report = asyncio.run(run_load_curve(plan))
    else:
        report = asyncio.run(run(plan))
    report.write(args.out)
    print()
    print(report.markdown())
    print(f"written to {args.out}/results.json, results.md and load-curve.png")


if __name__ == "__main__":
    main()
