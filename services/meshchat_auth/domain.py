"""The auth service's domain: users, refresh tokens, and the rules their fields follow."""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import zxcvbn

from meshchat_runtime.errors import InvalidArgument
from meshchat_runtime.identity import Role
from meshchat_runtime.usernames import validate_username, well_formed_username

__all__ = [
    "MIN_PASSWORD_SCORE",
    "AccountEvent",
    "AccountEventKind",
    "AttemptLimit",
    "IssuedTokens",
    "NewUser",
    "RefreshFamily",
    "RefreshToken",
    "Rotation",
    "RotationOutcome",
    "StoredRotation",
    "User",
    "UserChanges",
    "attempt_limits",
    "change_events",
    "check_password_strength",
    "decide_rotation",
    "validate_email",
    "validate_password",
    "validate_username",
    "well_formed_username",
]

# Deliberately simple: one @, no spaces or NULs, a dot in the domain. Delivery proves the rest.
EMAIL_PATTERN = re.compile(r"[^@\s\x00]{1,64}@[^@\s\x00]+\.[^@\s\x00]+")
PASSWORD_MIN = 8
PASSWORD_MAX = 1024
EMAIL_MAX = 254
# zxcvbn's score: 3 is "safely unguessable: moderate protection from an offline slow-hash
# attack" (about 10^8 guesses needed or more), 4 "very unguessable".
MIN_PASSWORD_SCORE = 3
# zxcvbn refuses longer input (its matching is superlinear); a longer password is judged by
# its first 72 characters, which a strong password passes on its own.
STRENGTH_CHECKED_CHARACTERS = 72


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


def check_password_strength(
    password: str, user_inputs: Sequence[str] = (), field: str = "password"
) -> None:
    """Refuse a password that zxcvbn scores below :data:`MIN_PASSWORD_SCORE` (common
    passwords, keyboard walks, repeats, dates, the username or email), saying why. Costs
    milliseconds of CPU: call it where the password is hashed, off the event loop."""
    result = zxcvbn.zxcvbn(
        password[:STRENGTH_CHECKED_CHARACTERS],
        user_inputs=[text for text in user_inputs if text],
        max_length=STRENGTH_CHECKED_CHARACTERS,
    )
    if result["score"] >= MIN_PASSWORD_SCORE:
        return
    feedback = result["feedback"]
    reasons = [feedback["warning"], *feedback["suggestions"]]
    why = " ".join(reason for reason in reasons if reason) or "It is too easy to guess."
    raise InvalidArgument(field, f"is too weak ({why})")


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
    revoke_families: bool = False
    """Revoke the user's refresh families in the same step (a password change)."""
    keep_family: str | None = None
    """The family that survives ``revoke_families`` (the caller's own session)."""


@dataclass(frozen=True, slots=True)
class RefreshFamily:
    """One login: the chain of refresh tokens that rotate from it, revoked as a whole."""

    family_id: str
    user_id: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class RefreshToken:
    """A refresh token to store (only its hash), one link of a rotation family."""

    token_hash: str
    family_id: str
    user_id: str
    issued_at: datetime


class RotationOutcome(enum.Enum):
    """What presenting a refresh token did."""

    ROTATED = "rotated"
    """It was unused: it is used now, and its successor was stored."""
    REPEATED = "repeated"
    """It was used moments ago (within the grace window) and its successor is still unused:
    the answer of the first use was lost, so the same successor is returned again."""
    REUSED = "reused"
    """It was used before: somebody holds a copy. The family is revoked now."""
    REVOKED = "revoked"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class StoredRotation:
    """What the store knows of a presented refresh token, read under the family's lock."""

    family_id: str
    user_id: str
    family_expires_at: datetime
    family_revoked: bool
    used_at: datetime | None
    successor_sealed: bytes | None
    successor_used: bool


@dataclass(frozen=True, slots=True)
class Rotation:
    """The outcome of presenting a refresh token, and the family it belongs to; for
    REPEATED, the successor sealed with the presented token."""

    outcome: RotationOutcome
    family_id: str = ""
    user_id: str = ""
    expires_at: datetime | None = None
    successor_sealed: bytes | None = None


def decide_rotation(
    stored: StoredRotation | None, now: datetime, grace_seconds: float
) -> RotationOutcome:
    """The rule of refresh-token rotation with reuse detection (RFC 9700 section 4.14.2)."""
    if stored is None:
        return RotationOutcome.UNKNOWN
    if stored.family_revoked:
        return RotationOutcome.REVOKED
    if stored.family_expires_at <= now:
        return RotationOutcome.EXPIRED
    if stored.used_at is None:
        return RotationOutcome.ROTATED
    # A concurrent call may have taken its ``now`` before the use it waited for: a negative
    # age is "just now", and without a grace window nothing is.
    in_grace = grace_seconds > 0 and now - stored.used_at < timedelta(seconds=grace_seconds)
    if in_grace and not stored.successor_used and stored.successor_sealed is not None:
        return RotationOutcome.REPEATED
    return RotationOutcome.REUSED


@dataclass(frozen=True, slots=True)
class AttemptLimit:
    """At most ``limit`` unsuccessful password checks per window under ``key``."""

    key: str
    limit: int


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    """What a successful login or refresh returns."""

    access_token: str
    access_expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime
    user: User


def _address_key(address: str) -> str:
    # One IPv6 host commonly holds a whole /64, so that is what counts as one address.
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def attempt_limits(
    username: str, address: str, per_pair: int, per_address: int, per_account: int
) -> tuple[AttemptLimit, AttemptLimit, AttemptLimit]:
    """The limits a password check counts against, the account-and-address pair first: the
    lockout a user meets from their own address, set off only by guesses from there; then
    the address over all accounts (one source trying many); then the account over all
    addresses, a ceiling far above the pair's against guesses spread over many sources."""
    account, source = username.lower(), _address_key(address)
    return (
        AttemptLimit(f"pair {account} {source}", per_pair),
        AttemptLimit(f"address {source}", per_address),
        AttemptLimit(f"account {account}", per_account),
    )


class AccountEventKind(enum.IntEnum):
    """What happened to an account; the values equal ``meshchat.auth.v1.AccountEventKind``."""

    DELETED = 1
    ROLE_CHANGED = 2
    PASSWORD_CHANGED = 3
    LOGGED_OUT_EVERYWHERE = 4


@dataclass(frozen=True, slots=True)
class AccountEvent:
    """One recorded account event, numbered in the order the events happened."""

    seq: int
    user_id: str
    kind: AccountEventKind
    occurred_at: datetime
    kept_session_id: str = ""
    """The login whose tokens stay valid (the one that changed its own password)."""


def change_events(changes: UserChanges, old_role: Role) -> list[tuple[AccountEventKind, str]]:
    """The events (kind, kept session) that applying ``changes`` to an account of
    ``old_role`` records, in the same transaction: a new role, a new password."""
    events: list[tuple[AccountEventKind, str]] = []
    if changes.role is not None and changes.role is not old_role:
        events.append((AccountEventKind.ROLE_CHANGED, ""))
    if changes.password_hash is not None:
        events.append((AccountEventKind.PASSWORD_CHANGED, changes.keep_family or ""))
    return events
