"""A fast stand-in for the argon2id PasswordHasher."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence

from meshchat_auth.domain import check_password_strength
from meshchat_auth.passwords import PasswordHasher

__all__ = ["FakePasswordHasher"]

_SCHEME = "$fake-sha256$"


class FakePasswordHasher(PasswordHasher):
    """Salted SHA-256 tagged with a cost, so that ``needs_rehash`` has something to compare.

    Fast and not secure: for the unit tier only. It passes the same contract test as the
    real hasher. It subclasses PasswordHasher only because the use cases take that class.
    """

    def __init__(self, cost: int = 1) -> None:  # no super().__init__(): no argon2 here
        self._cost = cost
        self.hashes = 0
        self.verifications = 0

    @staticmethod
    def _digest(salt: str, password: str) -> str:
        return hashlib.sha256(f"{salt}:{password}".encode()).hexdigest()

    def _parse(self, password_hash: str) -> tuple[int, str, str] | None:
        if not password_hash.startswith(_SCHEME):
            return None
        cost, _, rest = password_hash.removeprefix(_SCHEME).partition("$")
        salt, _, digest = rest.partition("$")
        if not (cost.isdigit() and salt and digest):
            return None
        return int(cost), salt, digest

    async def hash(self, password: str) -> str:
        """A new salted hash of ``password``."""
        self.hashes += 1
        salt = secrets.token_hex(8)
        return f"{_SCHEME}{self._cost}${salt}${self._digest(salt, password)}"

    async def hash_new(self, password: str, user_inputs: Sequence[str]) -> str:
        """Check a new password's strength as the real hasher does, then hash it."""
        check_password_strength(password, user_inputs)
        return await self.hash(password)

    async def verify(self, password_hash: str, password: str) -> bool:
        """Whether ``password`` matches; False for a mismatch or a damaged hash."""
        self.verifications += 1
        parsed = self._parse(password_hash)
        if parsed is None:
            return False
        _, salt, digest = parsed
        return hmac.compare_digest(digest, self._digest(salt, password))

    async def verify_nothing(self, password: str) -> None:
        """Spend one verification."""
        await self.verify(f"{_SCHEME}{self._cost}$salt$digest", password)

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether the hash was made with another cost, or is not one of these hashes."""
        parsed = self._parse(password_hash)
        return parsed is None or parsed[0] != self._cost
