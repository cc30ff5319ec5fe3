"""The ES256 signing keys: loaded from a directory (a Kubernetes Secret mount), or generated
once for the embedded default. All keys are published; the newest signs.

"Newest" is the file whose name sorts last (name files by date, e.g. ``2026-11-24.pem``):
file times are not reliable on Secret mounts, and every replica must pick the same key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ec import (
    EllipticCurvePrivateKey,
    EllipticCurvePublicKey,
)

from meshchat_auth.config import GENERATE_KEY, KEYS_DIR
from meshchat_runtime.settings import ConfigError
from meshchat_runtime.tokens import ALGORITHM

__all__ = ["KeyRing", "SigningKey", "generate_key_file", "jwk_thumbprint"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _public_jwk_fields(key: EllipticCurvePublicKey) -> dict[str, str]:
    numbers = key.public_numbers()
    return {
        "crv": "P-256",
        "kty": "EC",
        "x": _b64(numbers.x.to_bytes(32, "big")),
        "y": _b64(numbers.y.to_bytes(32, "big")),
    }


def jwk_thumbprint(key: EllipticCurvePublicKey) -> str:
    """The RFC 7638 thumbprint of the key, used as its ``kid``."""
    canonical = json.dumps(_public_jwk_fields(key), separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(canonical.encode()).digest())


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One private key and its id."""

    kid: str
    private_key: EllipticCurvePrivateKey
    source: Path

    @property
    def public_key(self) -> EllipticCurvePublicKey:
        """The public half."""
        return self.private_key.public_key()

    def jwk(self) -> dict[str, Any]:
        """The public key as a JWK."""
        return {
            **_public_jwk_fields(self.public_key),
            "kid": self.kid,
            "use": "sig",
            "alg": ALGORITHM,
        }


def generate_key_file(directory: Path) -> Path:
    """Write a new P-256 private key, mode 0600, named by the current UTC time."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = directory / f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return path


class KeyRing:
    """Every loaded key by ``kid``; the last by file name signs."""

    def __init__(self, keys: list[SigningKey]) -> None:
        if not keys:
            raise ValueError("a key ring needs at least one key")
        self._keys = sorted(keys, key=lambda k: k.source.name)
        self._by_kid = {k.kid: k for k in self._keys}

    @classmethod
    def load(cls, directory: Path, *, generate: bool) -> KeyRing:
        """Load ``*.pem`` from ``directory``; generate one there when it has none and
        ``generate`` is set. ConfigError (one line) for anything unusable."""
        if generate and not directory.exists():
            try:
                directory.mkdir(mode=0o700, parents=True)
            except OSError as exc:
                raise ConfigError(
                    f"{KEYS_DIR.env}: cannot create {directory}: {exc.strerror}"
                ) from None
        if not directory.is_dir():
            raise ConfigError(f"{KEYS_DIR.env}: {directory} is not a directory")
        try:
            files = sorted(
                p for p in directory.iterdir() if p.suffix == ".pem" and not p.name.startswith(".")
            )
        except OSError as exc:
            raise ConfigError(f"{KEYS_DIR.env}: cannot read {directory}: {exc.strerror}") from None
        if not files:
            if not generate:
                raise ConfigError(
                    f"{KEYS_DIR.env}: no *.pem signing key in {directory} "
                    f"(and {GENERATE_KEY.env} is off)"
                )
            try:
                files = [generate_key_file(directory)]
            except OSError as exc:
                raise ConfigError(
                    f"{KEYS_DIR.env}: cannot write a key to {directory}: {exc.strerror}"
                ) from None
        return cls([cls._load_file(path) for path in files])

    @staticmethod
    def _load_file(path: Path) -> SigningKey:
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except OSError as exc:
            raise ConfigError(f"{KEYS_DIR.env}: cannot read {path}: {exc.strerror}") from None
        except (ValueError, TypeError):
            raise ConfigError(
                f"{KEYS_DIR.env}: {path} is not an unencrypted PEM private key"
            ) from None
        if not isinstance(key, EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise ConfigError(f"{KEYS_DIR.env}: {path} is not an EC P-256 key (ES256 needs one)")
        return SigningKey(jwk_thumbprint(key.public_key()), key, path)

    @property
    def signing_key(self) -> SigningKey:
        """The key that signs new tokens."""
        return self._keys[-1]

    def public_key(self, kid: str) -> EllipticCurvePublicKey | None:
        """The public key with this id, or None (the KeyLookup protocol)."""
        key = self._by_kid.get(kid)
        return key.public_key if key is not None else None

    def jwks(self) -> list[dict[str, Any]]:
        """Every public key as a JWK, newest first."""
        return [k.jwk() for k in reversed(self._keys)]
