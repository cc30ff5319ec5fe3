"""``python -m benchmarks.profile [GetChat] [SendMessage]``: where one call spends the chat
server's CPU, against a bare grpc.aio echo server profiled the same way.

Starts the auth and chat services on a throwaway PostgreSQL (as ``make bench`` does, local
authz, tracing off), drives the method from this process with 64 concurrent callers (GetChat
of one chat, or durable SendMessage to 16 chats), and samples the chat process with py-spy
meanwhile (Python frames only: grpc's Cython and C code shows as the time no meshchat frame
claims, split by thread). The server's CPU time over the sampled window (from ``/proc``, every
thread) divided by the calls answered is the cost of one call; each part's share of the samples
splits it into the table this prints, with PostgreSQL's CPU per call below it (written as
``profile.md``, the raw stacks as ``profile-<method>.txt`` and ``profile-echo.txt``, to
``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc.aio

from benchmarks.__main__ import bearer, make_users, start_stack
from benchmarks.echo_server import METHOD as ECHO_METHOD
from devtools.paths import REPO_ROOT, VENV_BIN
from devtools.postgres import throwaway_postgres
from devtools.processes import free_port
from meshchat.chat.v1 import chat_pb2, chat_pb2_grpc

CALLERS = 64
SAMPLE_RATE = 1000  # samples per second
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Part:
    """A part of the server's work, recognised by a frame of the sampled stack."""

    name: str
    markers: tuple[str, ...]  # substrings of a frame ("function (file)")


# Looked for from the innermost frame outwards: the first frame a part claims decides, so a
# library (jwt, prometheus_client, psycopg) is charged to its own row wherever it is called
# from, the asyncio machinery it uses (a pool's lock, a wait) to it too, and what a wrapper
# does itself to the wrapper's row.
PARTS = (
    Part("token verification (jwt, ECDSA)", ("jwt/", "tokens.py", "cryptography")),
    Part("revocation check", ("revocations.py",)),
    Part("access check (policy)", ("access.py",)),
    Part("metrics (prometheus_client)", ("prometheus_client", "metrics.py")),
    Part("logging", ("logging/", "telemetry.py", "pythonjsonlogger")),
    Part("database (psycopg and its pool)", ("psycopg", "store/postgres.py", "database.py")),
    Part("fan-out hub (publish)", ("fanout/",)),
    Part("conversion to proto", ("chat_to_proto", "_timestamp", "protobuf")),
    Part("use case (service.py, quotas)", ("service.py", "quotas.py", "domain.py")),
    Part("servicer (request, caller)", ("servicer.py",)),
    Part("auth interceptor", ("authenticated (meshchat_runtime", "_admit", "bearer_token")),
    Part("error interceptor, request check", ("mapped (meshchat_runtime", "tolerant", "_checked")),
    Part("interceptor plumbing (intercept_service)", ("interceptors.py",)),
)
# Stacks that no part claims: grpc's own work, by where it runs.
POLLER = "grpc poller thread (C core: HTTP/2, sockets)"
CYTHON = "grpc.aio Cython and asyncio (no Python frames of meshchat)"


def classify(stack: str) -> str:
    """The part a sampled stack (py-spy's raw format, outermost frame first) belongs to."""
    frames = stack.split(";")
    for frame in reversed(frames):
        for part in PARTS:
            if any(marker in frame for marker in part.markers):
                return part.name
    if any("Thread.run (threading.py" in frame for frame in frames):
        return POLLER
    return CYTHON


def cpu_seconds(pid: int) -> float:
    """User and system CPU of every thread of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


Call = Callable[[], Awaitable[object]]


async def drive(call: Call, until: float) -> int:
    """``call`` from CALLERS concurrent callers until ``until``; the calls completed."""
    done = 0

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < until:
            await call()
            done += 1

    await asyncio.gather(*(caller() for _ in range(CALLERS)))
    return done


async def sampled(
    pid: int, call: Call, seconds: int, raw: Path, other_cpu: Callable[[], float] = lambda: 0.0
) -> tuple[int, float, float, float, float]:
    """Drive ``call`` for ``seconds`` while py-spy samples ``pid`` into ``raw``: the calls,
    the CPU seconds ``pid`` used, those ``other_cpu`` counts, those of this (calling)
    process, and the seconds it took."""
    await drive(call, time.perf_counter() + 1.0)  # warm up
    spy = await asyncio.create_subprocess_exec(
        str(VENV_BIN / "py-spy"),
        "record",
        "--nonblocking",
        "--format",
        "raw",
        "--rate",
        str(SAMPLE_RATE),
        "--duration",
        str(seconds),
        "--output",
        str(raw),
        "--pid",
        str(pid),
        stdout=asyncio.subprocess.DEVNULL,
        cwd=REPO_ROOT,
    )
    cpu_before, other_before, started = cpu_seconds(pid), other_cpu(), time.perf_counter()
    caller_before = time.process_time()
    calls = await drive(call, started + seconds)
    cpu, other = cpu_seconds(pid) - cpu_before, other_cpu() - other_before
    caller = time.process_time() - caller_before
    elapsed = time.perf_counter() - started
    await spy.wait()
    return calls, cpu, other, caller, elapsed


def two_channels(address: str) -> list[grpc.aio.Channel]:
    return [grpc.aio.insecure_channel(address) for _ in range(2)]


async def profile_echo(seconds: int, out: Path) -> str:
    """The bare grpc.aio echo server, for comparison: what grpc costs by itself."""
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.echo_server", str(port), cwd=REPO_ROOT
    )
    channels = two_channels(f"127.0.0.1:{port}")
    try:
        for channel in channels:
            await asyncio.wait_for(channel.channel_ready(), 20)
        calls: list[grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = [
            channel.unary_unary(ECHO_METHOD) for channel in channels
        ]
        counter = itertools.count()

        async def call() -> object:
            return await calls[next(counter) % 2](b"x" * 64, timeout=10)

        result = await sampled(server.pid, call, seconds, out / "profile-echo.txt")
    finally:
        for channel in channels:
            await channel.close()
        server.terminate()
        await server.wait()
    calls_done, cpu, _, caller, elapsed = result
    text = table(
        "bare grpc.aio echo", (out / "profile-echo.txt").read_text(), calls_done, cpu, elapsed
    )
    return text + f"\nThe callers used {caller / calls_done * 1e6:.0f} µs of CPU per call.\n"


def postgres_cpu(datadir: Path) -> float:
    """User and system CPU so far of the PostgreSQL server of ``datadir`` and its backends."""
    postmaster = int((datadir / "postmaster.pid").read_text().split()[0])
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended meanwhile
            continue
        fields = text.rsplit(")", 1)[1].split()
        if int(stat.parent.name) == postmaster or int(fields[1]) == postmaster:
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


async def profile_chat(method: str, seconds: int, out: Path) -> str:
    """GetChat (one chat) or durable SendMessage (16 chats, as ``make bench``) on the chat
    service, local authz, tracing off; PostgreSQL's CPU per call too."""
    workdir = Path(tempfile.mkdtemp(prefix="meshchat-profile-"))
    with throwaway_postgres() as pg:
        auth_db, chat_db = pg.create_database("prof_auth"), pg.create_database("prof_chat")
        auth, chat = await start_stack(workdir, "local", chat_db, auth_db)
        try:
            assert chat.process is not None
            async with grpc.aio.insecure_channel(auth.address) as channel:
                token = (await make_users(channel, ["owner"]))["owner"]
            channels = two_channels(chat.address)
            stubs = [chat_pb2_grpc.ChatServiceStub(c) for c in channels]
            chat_ids = [
                (
                    await stubs[0].CreateChat(
                        chat_pb2.CreateChatRequest(name=f"profiled {i}"),
                        metadata=bearer(token),
                        timeout=30,
                    )
                ).id
                for i in range(16)
            ]
            counter = itertools.count()

            async def get_chat() -> object:
                stub = stubs[next(counter) % 2]
                request = chat_pb2.GetChatRequest(chat_id=chat_ids[0])
                return await stub.GetChat(request, metadata=bearer(token), timeout=10)

            async def send() -> object:
                n = next(counter)
                request = chat_pb2.SendMessageRequest(
                    chat_id=chat_ids[n % 16], text="profiled", client_message_id=uuid.uuid4().hex
                )
                return await stubs[n % 2].SendMessage(request, metadata=bearer(token), timeout=10)

            raw = out / f"profile-{method}.txt"
            result = await sampled(
                chat.process.pid,
                get_chat if method == "GetChat" else send,
                seconds,
                raw,
                lambda: postgres_cpu(pg.datadir),
            )
            for channel in channels:
                await channel.close()
        finally:
            await asyncio.to_thread(chat.stop)
            await asyncio.to_thread(auth.stop)
    calls_done, cpu, pg_cpu, caller, elapsed = result
    text = table(method, raw.read_text(), calls_done, cpu, elapsed)
    return (
        text + f"\nPostgreSQL used {pg_cpu / calls_done * 1e6:.0f} µs of CPU per call, "
        f"the callers {caller / calls_done * 1e6:.0f} µs.\n"
    )


def table(what: str, raw: str, calls: int, cpu: float, elapsed: float) -> str:
    """The Markdown table of the server's CPU per call by part."""
    samples: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, number = line.rpartition(" ")
        if stack:
            samples[classify(stack)] += int(number)
    total = sum(samples.values()) or 1
    per_call_us = cpu / calls * 1e6
    lines = [
        f"{calls:,} {what} calls in {elapsed:.1f} s ({calls / elapsed:,.0f}/s); the "
        f"server used {cpu:.2f} s of CPU: **{per_call_us:.0f} µs per call**.",
        "",
        "| part | share of samples | µs per call |",
        "|---|---:|---:|",
    ]
    for name, count in samples.most_common():
        lines.append(f"| {name} | {count / total:.1%} | {per_call_us * count / total:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("--seconds", type=int, default=10, help="how long to sample")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench-results")
    parser.add_argument(
        "methods", nargs="*", choices=["GetChat", "SendMessage"], default=["GetChat"]
    )
    args = parser.parse_args()
    if shutil.which("py-spy", path=str(VENV_BIN)) is None:
        raise SystemExit("py-spy is missing: make venv installs it (the dev extras)")
    args.out.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(profile_echo(args.seconds, args.out))
    for method in args.methods:
        result += "\n" + asyncio.run(profile_chat(method, args.seconds, args.out))
    (args.out / "profile.md").write_text(result)
    print(result)


if __name__ == "__main__":
    main()
