"""The auth service's use cases. No grpc here: servicers translate, these decide."""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from meshchat_auth.config import TokenPolicy
from meshchat_auth.domain import (
    PASSWORD_MAX,
    IssuedTokens,
    NewUser,
    RefreshToken,
    User,
    UserChanges,
    validate_email,
    validate_password,
    validate_username,
)
from meshchat_auth.issuer import TokenIssuer, hash_refresh_token
from meshchat_auth.passwords import PasswordHasher
from meshchat_auth.store import AuthStore
from meshchat_runtime.access import UNAUTHENTICATED_MESSAGE, AccessPolicy
from meshchat_runtime.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from meshchat_runtime.identity import Principal, Role
from meshchat_runtime.timestamps import utc_now
from meshchat_runtime.tokens import TokenVerifier

__all__ = ["AccessChecker", "AccountService", "Page", "SessionService"]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50


@dataclass(frozen=True, slots=True)
class Page:
    """One page of users and the token of the next page ("" on the last)."""

    users: list[User]
    next_page_token: str


def _page_token(username: str) -> str:
    return base64.urlsafe_b64encode(username.lower().encode()).decode()


def _after_username(page_token: str) -> str | None:
    if not page_token:
        return None
    try:
        return base64.b64decode(page_token.encode(), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidArgument("page_token", "is not a token this service returned") from None


class AccountService:
    """Creating, reading, changing and deleting accounts."""

    def __init__(self, store: AuthStore, hasher: PasswordHasher, clock: Clock = utc_now) -> None:
        self._store = store
        self._hasher = hasher
        self._clock = clock

    async def create(
        self,
        caller: Principal | None,
        *,
        username: str,
        email: str,
        password: str,
        password_confirm: str,
        role: Role | None,
    ) -> User:
        """Sign up (role USER), or, for an admin caller, create an account of any role."""
        validate_username(username)
        validate_email(email)
        validate_password(password, password_confirm)
        role = role or Role.USER
        if role is Role.ADMIN and (caller is None or not caller.is_admin):
            raise PermissionDenied("only an admin may create an admin")
        password_hash = await self._hasher.hash(password)
        user = await self._store.create_user(
            NewUser(username, email, role, password_hash), self._clock()
        )
        log.info("user created", extra={"user_id": user.id, "role": role.name})
        return user

    async def get(self, *, user_id: str = "", username: str = "") -> User:
        """Look up an account by id or username."""
        if user_id:
            user = await self._store.get_user(user_id)
        elif username:
            user = await self._store.get_user_by_username(username)
        else:
            raise InvalidArgument("key", "give an id or a username")
        if user is None:
            raise NotFound(f"no user {user_id or username!r}")
        return user

    @staticmethod
    def may_see_private_fields(caller: Principal, user: User) -> bool:
        """Whether the caller may see the user's email."""
        return caller.is_admin or caller.user_id == user.id

    async def update(
        self,
        caller: Principal,
        user_id: str,
        *,
        email: str | None = None,
        password: str | None = None,
        password_confirm: str | None = None,
        role: Role | None = None,
    ) -> User:
        """Change one's own account, or any account as an admin; roles are admin-only."""
        if not user_id:
            raise InvalidArgument("id", "is required")
        if caller.user_id != user_id and not caller.is_admin:
            raise PermissionDenied("you may only change your own account")
        if role is not None and not caller.is_admin:
            raise PermissionDenied("only an admin may change a role")
        if email is not None:
            validate_email(email)
        password_hash = None
        if password is not None:
            validate_password(password, password_confirm or "")
            password_hash = await self._hasher.hash(password)
        changes = UserChanges(email=email, password_hash=password_hash, role=role)
        user = await self._store.update_user(user_id, changes, self._clock())
        if user is None:
            raise NotFound(f"no user {user_id!r}")
        return user

    async def delete(self, caller: Principal, user_id: str) -> None:
        """Delete one's own account, or any account as an admin, with its tokens."""
        if not user_id:
            raise InvalidArgument("id", "is required")
        if caller.user_id != user_id and not caller.is_admin:
            raise PermissionDenied("you may only delete your own account")
        if not await self._store.delete_user(user_id):
            raise NotFound(f"no user {user_id!r}")
        log.info("user deleted", extra={"user_id": user_id, "by": caller.user_id})

    async def list(self, caller: Principal, page_size: int, page_token: str) -> Page:
        """A page of accounts by username (admins only; the access rule says so too)."""
        if not caller.is_admin:
            raise PermissionDenied("only an admin may list users")
        if page_size < 0 or page_size > MAX_PAGE_SIZE:
            raise InvalidArgument("page_size", f"must be 0 to {MAX_PAGE_SIZE}")
        size = page_size or DEFAULT_PAGE_SIZE
        users = await self._store.list_users(_after_username(page_token), size + 1)
        if len(users) > size:
            return Page(users[:size], _page_token(users[size - 1].username))
        return Page(users, "")


class SessionService:
    """Login, refresh-token rotation with reuse detection, logout."""

    def __init__(
        self,
        store: AuthStore,
        hasher: PasswordHasher,
        issuer: TokenIssuer,
        policy: TokenPolicy,
        clock: Clock = utc_now,
        *,
        on_refusal: Callable[[str], None] = lambda limit: None,
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._issuer = issuer
        self._policy = policy
        self._on_refusal = on_refusal  # told the limit's name (metrics.LIMITS) on a refusal
        self._clock = clock

    async def _throttle(self, username_key: str, now: datetime) -> None:
        failures = await self._store.login_failures(username_key)
        if failures is None:
            return
        count, window_start = failures
        window_end = window_start + timedelta(seconds=self._policy.failed_login_window)
        if count >= self._policy.max_failed_logins and window_end > now:
            wait = (window_end - now).total_seconds()
            self._on_refusal("failed_logins")
            raise ResourceExhausted(
                f"too many failed logins for this account; try again in {int(wait) + 1} s", wait
            )

    async def login(self, username: str, password: str) -> IssuedTokens:
        """Check the password and open a new token family. Unknown users and wrong
        passwords get the same answer, in the same time."""
        if not username:
            raise InvalidArgument("username", "is required")
        if not password:
            raise InvalidArgument("password", "is required")
        if len(password) > PASSWORD_MAX:
            raise InvalidArgument("password", f"must be at most {PASSWORD_MAX} characters")
        now = self._clock()
        key = username.lower()
        await self._throttle(key, now)
        user = await self._store.get_user_by_username(username)
        if user is None:
            await self._hasher.verify_nothing(password)
            valid = False
        else:
            valid = await self._hasher.verify(user.password_hash, password)
        if user is None or not valid:
            await self._store.count_login_failure(key, now, self._policy.failed_login_window)
            raise Unauthenticated("wrong username or password")
        await self._store.clear_login_failures(key)
        if self._hasher.needs_rehash(user.password_hash):
            new_hash = await self._hasher.hash(password)
            user = (
                await self._store.update_user(user.id, UserChanges(password_hash=new_hash), now)
                or user
            )
            log.info("password hash upgraded", extra={"user_id": user.id})
        family = str(uuid.uuid4())
        expires = now + timedelta(seconds=self._policy.refresh_ttl)
        return await self._issue(user, family, expires, now)

    async def _issue(
        self, user: User, family_id: str, refresh_expires: datetime, now: datetime
    ) -> IssuedTokens:
        refresh = self._issuer.refresh_token()
        await self._store.add_refresh_token(
            RefreshToken(hash_refresh_token(refresh), family_id, user.id, now, refresh_expires)
        )
        access, access_expires = self._issuer.access_token(user, now)
        return IssuedTokens(access, access_expires, refresh, refresh_expires, user)

    async def refresh(self, refresh_token: str) -> IssuedTokens:
        """Use a refresh token up and return a new pair in the same family. A token that
        was used already revokes its whole family: somebody holds a stolen copy."""
        if not refresh_token:
            raise InvalidArgument("refresh_token", "is required")
        now = self._clock()
        record = await self._store.get_refresh_token(hash_refresh_token(refresh_token))
        if record is None:
            raise Unauthenticated("invalid refresh token")
        if record.revoked_at is not None:
            raise Unauthenticated("refresh token revoked: log in again")
        if record.expires_at <= now:
            raise Unauthenticated("refresh token expired: log in again")
        if record.used_at is not None or not await self._store.use_refresh_token(
            record.token_hash, now
        ):
            await self._store.revoke_family(record.family_id, now)
            log.warning("refresh token reuse: family revoked", extra={"user_id": record.user_id})
            raise Unauthenticated(
                "refresh token already used: all sessions of it are revoked, log in again"
            )
        user = await self._store.get_user(record.user_id)
        if user is None:
            raise Unauthenticated("the account no longer exists")
        return await self._issue(user, record.family_id, record.expires_at, now)

    async def logout(self, refresh_token: str) -> None:
        """Revoke the refresh token's family. Unknown tokens are ignored (nothing to end)."""
        if not refresh_token:
            raise InvalidArgument("refresh_token", "is required")
        record = await self._store.get_refresh_token(hash_refresh_token(refresh_token))
        if record is not None:
            await self._store.revoke_family(record.family_id, self._clock())

    def jwks(self) -> list[dict[str, Any]]:
        """The public keys that verify access tokens."""
        return self._issuer.jwks()


class AccessChecker:
    """Authenticates access tokens for the auth service itself and for AccessService.Check.

    Beyond the signature, it reads the account: a deleted user's tokens stop working here at
    once, and the current role counts, not the one in the token.
    """

    def __init__(self, verifier: TokenVerifier, store: AuthStore, policy: AccessPolicy) -> None:
        self._verifier = verifier
        self._store = store
        self._policy = policy

    async def authenticate(self, token: str, method: str = "") -> Principal:
        """The principal of a valid token of an existing account."""
        claims = self._verifier.verify(token)
        user = await self._store.get_user(claims.user_id)
        if user is None:
            raise Unauthenticated("the account of this token no longer exists")
        return Principal(user.id, user.username, user.role, claims.expires_at, claims.token_id)

    async def check(self, token: str | None, endpoint: str) -> Principal:
        """The caller when ``token`` may call ``endpoint``; Unauthenticated or
        PermissionDenied otherwise. Unknown endpoints are denied."""
        if not endpoint.startswith("/") or endpoint.count("/") != 2:
            raise InvalidArgument(
                "endpoint", "must be a full method name like /package.Service/Method"
            )
        if not token:
            raise Unauthenticated(UNAUTHENTICATED_MESSAGE)
        principal = await self.authenticate(token)
        self._policy.enforce(endpoint, principal)
        return principal
