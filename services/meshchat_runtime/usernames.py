"""The username rule, one for both services: the auth service enforces it on sign-up, and the
chat service checks names against it before it asks the auth service about any of them."""

from __future__ import annotations

import re

from meshchat_runtime.errors import InvalidArgument

__all__ = [
    "LOOKUP_MAX",
    "USERNAME_PATTERN",
    "USERNAME_RULE",
    "validate_username",
    "well_formed_username",
]

LOOKUP_MAX = 500
"""The most usernames one ``UserService.LookupUsers`` call resolves."""

USERNAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{2,31}")
USERNAME_RULE = (
    "must be 3 to 32 characters of letters, digits, '.', '_' or '-', "
    "starting with a letter or digit"
)


def validate_username(username: str, field: str = "username") -> str:
    """3 to 32 characters: letters, digits, '.', '_', '-', starting with a letter or digit
    (so never a NUL, a space or a control character)."""
    if not USERNAME_PATTERN.fullmatch(username):
        raise InvalidArgument(field, USERNAME_RULE)
    return username


def well_formed_username(username: str) -> bool:
    """Whether an account could have this username (the pattern is public)."""
    return USERNAME_PATTERN.fullmatch(username) is not None
