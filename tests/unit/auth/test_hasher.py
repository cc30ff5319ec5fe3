"""The contract of a password hasher, for the real argon2id one and the unit tier's fake."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import pytest

from meshchat_auth.config import Argon2Parameters
from meshchat_auth.passwords import HashingPool, PasswordHasher
from meshchat_runtime.errors import InvalidArgument, ResourceExhausted
from tests.support.fakes.hasher import FakePasswordHasher
from tests.support.passwords import PASSWORD
from tests.support.rpc import eventually

# Each entry makes a hasher of a given strength (0 is the default, 1 a stronger one) with
# the pool it may use.
HASHERS: dict[str, Callable[[int, HashingPool], PasswordHasher]] = {
    "argon2id": lambda strength, pool: PasswordHasher(
        Argon2Parameters(time_cost=2 + strength), pool
    ),
    "fake": lambda strength, pool: FakePasswordHasher(cost=1 + strength),
}


@pytest.fixture(params=sorted(HASHERS))
def make(request: pytest.FixtureRequest) -> Iterator[Callable[[int], PasswordHasher]]:
    pool = HashingPool(workers=1, queue=4)
    yield lambda strength: HASHERS[request.param](strength, pool)
    pool.close()


async def test_a_new_password_is_checked_for_strength_before_it_is_hashed(
    make: Callable[[int], PasswordHasher],
) -> None:
    hasher = make(0)
    with pytest.raises(InvalidArgument, match="too weak"):
        await hasher.hash_new("password", ())
    with pytest.raises(InvalidArgument, match="too weak"):
        await hasher.hash_new("zorblat2026!", ("zorblat",))
    assert await hasher.verify(await hasher.hash_new(PASSWORD, ("alice",)), PASSWORD)


async def test_a_hash_verifies_its_password_only(make: Callable[[int], PasswordHasher]) -> None:
    hasher = make(0)
    hashed = await hasher.hash(PASSWORD)
    assert PASSWORD not in hashed
    assert await hasher.verify(hashed, PASSWORD)
    assert not await hasher.verify(hashed, PASSWORD + "!")
    assert not await hasher.verify(hashed, "")


async def test_hashes_are_salted(make: Callable[[int], PasswordHasher]) -> None:
    hasher = make(0)
    assert await hasher.hash(PASSWORD) != await hasher.hash(PASSWORD)


async def test_damaged_hashes_verify_nothing(make: Callable[[int], PasswordHasher]) -> None:
    hasher = make(0)
    hashed = await hasher.hash(PASSWORD)
    for damaged in ("", "garbage", hashed[:-4], hashed[: len(hashed) // 2]):
        assert not await hasher.verify(damaged, PASSWORD)
    await hasher.verify_nothing(PASSWORD)


async def test_a_hash_of_other_parameters_needs_a_rehash(
    make: Callable[[int], PasswordHasher],
) -> None:
    weak, strong = make(0), make(1)
    old = await weak.hash(PASSWORD)
    assert not weak.needs_rehash(old)
    assert strong.needs_rehash(old)
    assert await strong.verify(old, PASSWORD)  # still verifies, so login can upgrade it
    assert strong.needs_rehash("garbage")


async def test_a_full_pool_refuses_at_once_with_a_retry_hint() -> None:
    pool = HashingPool(workers=1, queue=1)
    release = threading.Event()
    try:
        running = [asyncio.ensure_future(pool.run(release.wait, 10)) for _ in range(2)]
        await eventually(lambda: pool.pending == 2, what="two jobs in the pool")
        with pytest.raises(ResourceExhausted, match="busy") as info:
            await pool.run(release.wait, 10)
        assert info.value.retry_after > 0
        release.set()
        assert await asyncio.gather(*running) == [True, True]
        await eventually(lambda: pool.pending == 0, what="the pool drained")
    finally:
        release.set()
        pool.close()
