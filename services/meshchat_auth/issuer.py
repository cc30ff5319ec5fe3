"""Making tokens: access tokens signed with the newest key of the key ring, and opaque
refresh tokens, of which the store keeps only a hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from meshchat_auth.config import TokenPolicy
from meshchat_auth.domain import User
from meshchat_auth.keys import KeyRing
from meshchat_runtime.tokens import ACCESS_TOKEN_TYPE, ALGORITHM

__all__ = [
    "REFRESH_TOKEN_PREFIX",
    "TokenIssuer",
    "hash_refresh_token",
    "seal_successor",
    "unseal_successor",
]

REFRESH_TOKEN_PREFIX = "mcr_"  # noqa: S105 (a prefix, not a secret)
_SEALING_CONTEXT = b"meshchat refresh successor v1"
_NONCE_BYTES = 12


def hash_refresh_token(token: str) -> str:
    """Refresh tokens carry 256 random bits, so a plain SHA-256 is a safe way to store them."""
    return hashlib.sha256(token.encode()).hexdigest()


def _sealing_key(token: str) -> bytes:
    # A key only the holder of ``token`` can derive: the store keeps SHA-256(token), which
    # does not give HMAC-SHA256(token, context).
    return hmac.new(token.encode(), _SEALING_CONTEXT, hashlib.sha256).digest()


def seal_successor(presented: str, successor: str) -> bytes:
    """``successor`` encrypted (AES-256-GCM) under a key derived from ``presented``: what the
    store keeps so that, in the grace window, the holder of the presented token can be given
    the same successor again, while the database never holds a usable refresh token."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    return nonce + AESGCM(_sealing_key(presented)).encrypt(nonce, successor.encode(), None)


def unseal_successor(presented: str, sealed: bytes) -> str | None:
    """The successor sealed by :func:`seal_successor`, or None when it does not open."""
    nonce, ciphertext = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
    try:
        return AESGCM(_sealing_key(presented)).decrypt(nonce, ciphertext, None).decode()
    except (InvalidTag, ValueError):
        return None


class TokenIssuer:
    """Signs access tokens with the newest key and makes refresh tokens."""

    def __init__(self, keys: KeyRing, policy: TokenPolicy) -> None:
        self._keys = keys
        self._policy = policy

    def access_token(self, user: User, family_id: str, now: datetime) -> tuple[str, datetime]:
        """A signed access token for ``user`` and its expiry; its ``sid`` claim names the
        login (refresh family) it belongs to."""
        expires = now + timedelta(seconds=self._policy.access_ttl)
        key = self._keys.signing_key
        claims: dict[str, Any] = {
            "iss": self._policy.issuer,
            "aud": self._policy.audience,
            "sub": user.id,
            "username": user.username,
            "role": user.role.name,
            # To the microsecond (RFC 7519 allows fractions): account events refuse the
            # tokens issued before them, and a login just after one must not look older.
            "iat": round(now.timestamp(), 6),
            "exp": int(expires.timestamp()),
            "jti": uuid.uuid4().hex,
            "sid": family_id,
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
