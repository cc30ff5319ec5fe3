"""Making tokens: access tokens signed with the newest key of the key ring, and opaque
refresh tokens, of which the store keeps only a hash."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from meshchat_auth.config import TokenPolicy
from meshchat_auth.domain import User
from meshchat_auth.keys import KeyRing
from meshchat_runtime.tokens import ACCESS_TOKEN_TYPE, ALGORITHM

__all__ = ["REFRESH_TOKEN_PREFIX", "TokenIssuer", "hash_refresh_token"]

REFRESH_TOKEN_PREFIX = "mcr_"  # noqa: S105 (a prefix, not a secret)


def hash_refresh_token(token: str) -> str:
    """Refresh tokens carry 256 random bits, so a plain SHA-256 is a safe way to store them."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenIssuer:
    """Signs access tokens with the newest key and makes refresh tokens."""

    def __init__(self, keys: KeyRing, policy: TokenPolicy) -> None:
        self._keys = keys
        self._policy = policy

    def access_token(self, user: User, now: datetime) -> tuple[str, datetime]:
        """A signed access token for ``user`` and its expiry."""
        expires = now + timedelta(seconds=self._policy.access_ttl)
        key = self._keys.signing_key
        claims: dict[str, Any] = {
            "iss": self._policy.issuer,
            "aud": self._policy.audience,
            "sub": user.id,
            "username": user.username,
            "role": user.role.name,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(
            claims,
            key.private_key,
            algorithm=ALGORITHM,
            headers={"kid": key.kid, "typ": ACCESS_TOKEN_TYPE},
        )
        return token, datetime.fromtimestamp(claims["exp"], UTC)

    @staticmethod
    def refresh_token() -> str:
        """A new opaque refresh token."""
        return REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)

    def jwks(self) -> list[dict[str, Any]]:
        """The public keys that verify the tokens."""
        return self._keys.jwks()
