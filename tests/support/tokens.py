"""Forge access tokens with the auth service's real keys, for tests of token validation."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import jwt

from meshchat_auth.keys import KeyRing

__all__ = ["mint_access_token"]


def mint_access_token(
    keys_dir: Path,
    *,
    user_id: str,
    username: str,
    role: str = "USER",
    issuer: str = "meshchat-auth",
    audience: str = "meshchat",
    expires_in: float = 300,
    typ: str = "at+jwt",
    kid: str | None = None,
    extra_claims: dict[str, Any] | None = None,
) -> str:
    """An ES256 token signed by the newest key in ``keys_dir``, with any claim overridden."""
    key = KeyRing.load(keys_dir, generate=False).signing_key
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": user_id,
        "username": username,
        "role": role,
        "iat": now,
        "exp": int(now + expires_in),
        "jti": uuid.uuid4().hex,
        **(extra_claims or {}),
    }
    return jwt.encode(
        claims, key.private_key, algorithm="ES256", headers={"kid": kid or key.kid, "typ": typ}
    )
