"""The auth service's domain: users, refresh tokens, and the rules their fields follow."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from meshchat_runtime.errors import InvalidArgument
from meshchat_runtime.identity import Role

__all__ = [
    "IssuedTokens",
    "LoginFailures",
    "NewUser",
    "RefreshToken",
    "User",
    "UserChanges",
    "validate_email",
    "validate_password",
    "validate_username",
]

USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,31}$")
# Deliberately simple: one @, no spaces, a dot in the domain. Delivery proves the rest.
EMAIL_PATTERN = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
PASSWORD_MIN = 8
PASSWORD_MAX = 1024
EMAIL_MAX = 254

LoginFailures = tuple[int, datetime]
"""How many logins failed for an account since when."""


def validate_username(username: str, field: str = "username") -> str:
    """3 to 32 characters: letters, digits, '.', '_', '-', starting with a letter or digit."""
    if not USERNAME_PATTERN.fullmatch(username):
        raise InvalidArgument(
            field,
            "must be 3 to 32 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        )
    return username


def validate_email(email: str, field: str = "email") -> str:
    """Empty (no email) or one plausible address of at most 254 characters."""
    if email and (len(email) > EMAIL_MAX or not EMAIL_PATTERN.fullmatch(email)):
        raise InvalidArgument(field, "must be an email address like name@example.org")
    return email


def validate_password(password: str, confirmation: str, field: str = "password") -> str:
    """8 to 1024 characters (never truncated), equal to its confirmation."""
    if len(password) < PASSWORD_MIN:
        raise InvalidArgument(field, f"must be at least {PASSWORD_MIN} characters")
    if len(password) > PASSWORD_MAX:
        raise InvalidArgument(field, f"must be at most {PASSWORD_MAX} characters")
    if password != confirmation:
        raise InvalidArgument(f"{field}_confirm", "does not match the password")
    return password


@dataclass(frozen=True, slots=True)
class User:
    """A stored account."""

    id: str
    username: str
    email: str
    role: Role
    password_hash: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class NewUser:
    """An account to create; the password is already hashed."""

    username: str
    email: str
    role: Role
    password_hash: str


@dataclass(frozen=True, slots=True)
class UserChanges:
    """Fields to change on an account; None leaves a field as it is."""

    email: str | None = None
    password_hash: str | None = None
    role: Role | None = None


@dataclass(frozen=True, slots=True)
class RefreshToken:
    """A stored refresh token (only its hash), one link of a rotation family."""

    token_hash: str
    family_id: str
    user_id: str
    issued_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    """What a successful login or refresh returns."""

    access_token: str
    access_expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime
    user: User
