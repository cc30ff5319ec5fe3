"""The login-storm line of ``make bench``: the p99 of an unrelated unary call to the auth
service (GetUser) while logins arrive at a steady 50 per second, against its idle p99. Each
login costs one argon2id verification; the bounded hashing pool must keep them from
starving the event loop (issue 10, item 4: at most twice the idle p99)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import grpc
import grpc.aio

from meshchat.auth.v1 import auth_pb2, auth_pb2_grpc, users_pb2, users_pb2_grpc

__all__ = ["LOGIN_RATE", "login_storm"]

LOGIN_RATE = 50.0
PROBE_RATE = 100.0


class Report(Protocol):
    """Where the figures go (benchmarks.__main__.Report)."""

    def add(self, name: str, value: float, unit: str, target: str = "") -> None:
        """Record one figure."""
        ...


async def paced(
    rate: float, seconds: float, call: Callable[[], Awaitable[Any]]
) -> tuple[list[float], int]:
    """Start ``call`` ``rate`` times a second for ``seconds``, each on its own (an open
    workload: a slow answer does not slow the arrivals); the latencies in ms of the calls
    that succeeded, and how many failed."""
    latencies: list[float] = []
    failed = 0

    async def one() -> None:
        nonlocal failed
        started = time.perf_counter()
        try:
            await call()
        except grpc.aio.AioRpcError:
            failed += 1
            return
        latencies.append((time.perf_counter() - started) * 1000)

    tasks = []
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing the offered rate, not synchronisation
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return sorted(latencies), failed


def p99(latencies: list[float]) -> float:
    """The 99th percentile of sorted latencies."""
    return latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]


async def login_storm(
    report: Report, auth_address: str, username: str, password: str, token: str, seconds: float
) -> None:
    """Measure GetUser's p99 idle, then under 50 logins/s of ``username``."""
    async with grpc.aio.insecure_channel(auth_address) as channel:
        users = users_pb2_grpc.UserServiceStub(channel)
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        metadata = (("authorization", f"Bearer {token}"),)

        def probe() -> Awaitable[users_pb2.User]:
            request = users_pb2.GetUserRequest(username=username)
            return users.GetUser(request, metadata=metadata, timeout=10)

        def login() -> Awaitable[auth_pb2.TokenPair]:
            request = auth_pb2.LoginRequest(username=username, password=password)
            return auth.Login(request, timeout=10)

        idle, _ = await paced(PROBE_RATE, seconds, probe)
        storm = asyncio.create_task(paced(LOGIN_RATE, seconds, login))
        loaded, _ = await paced(PROBE_RATE, seconds, probe)
        logins, refused = await storm
    report.add("6. GetUser p99, idle", p99(idle), "ms")
    report.add(
        f"6. GetUser p99 while {LOGIN_RATE:.0f} logins/s arrive", p99(loaded), "ms", "<= 2x idle"
    )
    report.add("6. ratio of the two", p99(loaded) / p99(idle), "", "<= 2")
    report.add("6. login p99 during the storm", p99(logins) if logins else 0.0, "ms")
    report.add("6. logins refused (RESOURCE_EXHAUSTED)", float(refused), "logins")
