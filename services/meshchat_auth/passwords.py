"""argon2id password hashing, off the event loop."""

from __future__ import annotations

import asyncio

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from meshchat_auth.config import Argon2Parameters

__all__ = ["PasswordHasher"]


class PasswordHasher:
    """Hashes and verifies passwords with argon2id in a worker thread."""

    def __init__(self, parameters: Argon2Parameters) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=parameters.time_cost,
            memory_cost=parameters.memory_kib,
            parallelism=parameters.parallelism,
            type=argon2.Type.ID,
        )
        self._dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        """A new salted argon2id hash of ``password``."""
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        """Whether ``password`` matches; False for a mismatch or a damaged hash."""
        try:
            return await asyncio.to_thread(self._hasher.verify, password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

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
