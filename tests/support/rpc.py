"""Waiting on conditions and on failing calls, with deadlines."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
import pytest

__all__ = ["DEADLINE", "eventually", "status_of"]

# Every wait in the real-server tests is bounded; a test that waits longer than this has failed.
DEADLINE = 15.0


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], within: float = DEADLINE, what: str = ""
) -> None:
    """Return once ``condition()`` holds; fail when it does not within ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        outcome = condition()
        if outcome if isinstance(outcome, bool) else await outcome:
            return
        if loop.time() > deadline:
            raise AssertionError(f"not within {within} s: {what or condition}")
        await asyncio.sleep(0.01)


async def status_of(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    """Await an RPC that must fail; its status code and details."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code(), info.value.details() or ""
