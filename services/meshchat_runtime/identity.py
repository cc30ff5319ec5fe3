"""Who is calling: roles and the authenticated principal."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Principal", "Role"]


class Role(enum.IntEnum):
    """A user's role; the values equal the proto enum ``meshchat.auth.v1.Role``."""

    USER = 1
    ADMIN = 2

    @classmethod
    def from_name(cls, name: str) -> Role:
        """Parse ``"USER"``/``"ADMIN"`` (any case); raise ValueError otherwise."""
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown role {name!r}") from None

    def includes(self, other: Role) -> bool:
        """Whether this role may do everything ``other`` may."""
        return self >= other


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of one RPC, taken from a verified access token."""

    user_id: str
    username: str
    role: Role
    expires_at: float
    token_id: str = ""
    session_id: str = ""
    """The login the token belongs to (its ``sid`` claim), when the token names one."""
    issued_at: float = 0.0
    """When the token was issued (its ``iat`` claim), seconds since the epoch."""

    @property
    def is_admin(self) -> bool:
        """Whether the caller has the ADMIN role."""
        return self.role is Role.ADMIN
