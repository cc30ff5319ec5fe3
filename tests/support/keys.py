"""Signing keys held in memory, for the unit tier (no key files)."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from meshchat_auth.keys import KeyRing, SigningKey, jwk_thumbprint

__all__ = ["memory_key_ring"]


def memory_key_ring(count: int = 1) -> KeyRing:
    """A ring of ``count`` new P-256 keys; the last one signs."""
    keys = []
    for i in range(count):
        private = ec.generate_private_key(ec.SECP256R1())
        keys.append(SigningKey(jwk_thumbprint(private.public_key()), private, Path(f"{i:04d}.pem")))
    return KeyRing(keys)
