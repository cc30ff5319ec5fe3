"""The contract of a password hasher, for the real argon2id one and the unit tier's fake."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from meshchat_auth.config import Argon2Parameters
from meshchat_auth.passwords import PasswordHasher
from tests.support.fakes.hasher import FakePasswordHasher
from tests.support.passwords import PASSWORD

# Each entry makes a hasher of a given strength: 0 is the default, 1 a stronger one.
HASHERS: dict[str, Callable[[int], PasswordHasher]] = {
    "argon2id": lambda strength: PasswordHasher(Argon2Parameters(time_cost=2 + strength)),
    "fake": lambda strength: FakePasswordHasher(cost=1 + strength),
}


@pytest.fixture(params=sorted(HASHERS))
def make(request: pytest.FixtureRequest) -> Callable[[int], PasswordHasher]:
    return HASHERS[request.param]


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
