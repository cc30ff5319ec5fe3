"""argon2id password hashing in a bounded pool of threads, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from meshchat_auth.config import Argon2Parameters, HashingPoolSize
from meshchat_auth.domain import check_password_strength
from meshchat_runtime.errors import ResourceExhausted
from meshchat_runtime.resources import ContainerResources, whole_cpus

__all__ = ["HashingPool", "PasswordHasher", "pool_workers"]

T = TypeVar("T")

# At most this share of the container's memory goes to argon2's buffers, the rest is the
# service's own.
HASHING_MEMORY_SHARE = 0.5
# The first estimate of one hash's duration, until one has been measured.
INITIAL_HASH_SECONDS = 0.05


def pool_workers(
    size: HashingPoolSize, resources: ContainerResources, parameters: Argon2Parameters
) -> int:
    """The configured workers, or (0) one per CPU but one, which stays with the event loop so
    that other calls keep being served, and no more than half the memory can hold."""
    if size.workers:
        return size.workers
    by_cpu = max(1, whole_cpus(resources) - 1)
    per_hash = parameters.memory_kib * 1024 * parameters.parallelism
    by_memory = max(1, int(resources.memory_bytes * HASHING_MEMORY_SHARE) // per_hash)
    return min(by_cpu, by_memory)


class HashingPool:
    """``workers`` threads for CPU-heavy password work, with at most ``queue`` jobs waiting.

    A job beyond that is refused at once with ResourceExhausted and a retry hint (the time
    the queue takes to drain) instead of waiting without bound: under a login storm the
    callers learn to come back, memory stays bounded, and the event loop keeps serving.
    Jobs are counted until their thread finishes, even when the caller has given up.
    """

    def __init__(self, workers: int, queue: int) -> None:
        self.workers = workers
        self.capacity = workers + queue
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="meshchat-hash")
        self._pending = 0
        self._seconds = INITIAL_HASH_SECONDS

    @property
    def pending(self) -> int:
        """Jobs running or waiting."""
        return self._pending

    def retry_after(self) -> float:
        """How long the jobs now pending take to drain, in seconds."""
        return self._seconds * self.capacity / self.workers

    async def run(self, job: Callable[..., T], *args: object) -> T:
        """``job(*args)`` in a worker thread; ResourceExhausted when the pool is full."""
        if self._pending >= self.capacity:
            wait = self.retry_after()
            raise ResourceExhausted(
                f"the server is busy checking passwords; try again in {wait:.1f} s", wait
            )
        loop = asyncio.get_running_loop()
        timing: list[float] = []

        def timed() -> T:
            started = time.perf_counter()
            try:
                return job(*args)
            finally:
                timing.append(time.perf_counter() - started)

        def finished(_: Future[T]) -> None:
            # RuntimeError: the loop has closed, nobody counts any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._finished, timing)

        self._pending += 1
        future = self._executor.submit(timed)
        future.add_done_callback(finished)
        return await asyncio.wrap_future(future)

    def _finished(self, timing: list[float]) -> None:
        self._pending -= 1
        if timing:
            self._seconds = 0.8 * self._seconds + 0.2 * timing[0]

    def close(self) -> None:
        """Stop the threads once their current jobs end; waiting jobs are dropped."""
        self._executor.shutdown(wait=False, cancel_futures=True)


class PasswordHasher:
    """Hashes and verifies passwords with argon2id in the hashing pool."""

    def __init__(self, parameters: Argon2Parameters, pool: HashingPool) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=parameters.time_cost,
            memory_cost=parameters.memory_kib,
            parallelism=parameters.parallelism,
            type=argon2.Type.ID,
        )
        self._pool = pool
        self._dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        """A new salted argon2id hash of ``password``."""
        return await self._pool.run(self._hasher.hash, password)

    async def hash_new(self, password: str, user_inputs: Sequence[str]) -> str:
        """Check a new password's strength (see
        :func:`~meshchat_auth.domain.check_password_strength`), then hash it; both in the
        pool, as both cost CPU."""

        def check_and_hash() -> str:
            check_password_strength(password, user_inputs)
            return self._hasher.hash(password)

        return await self._pool.run(check_and_hash)

    async def verify(self, password_hash: str, password: str) -> bool:
        """Whether ``password`` matches; False for a mismatch or a damaged hash."""

        def verify() -> bool:
            try:
                return self._hasher.verify(password_hash, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        return await self._pool.run(verify)

    async def verify_nothing(self, password: str) -> None:
        """Spend the time of one verification, so that an unknown username takes as long
        to reject as a wrong password."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash("meshchat timing equaliser")
        await self.verify(self._dummy_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether the hash was made with other parameters than the current ones."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True
