"""The auth service's use cases. No grpc here: servicers translate, these decide."""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from meshchat_auth.config import TokenPolicy
from meshchat_auth.domain import (
    PASSWORD_MAX,
    IssuedTokens,
    NewUser,
    RefreshFamily,
    RefreshToken,
    RotationOutcome,
    User,
    UserChanges,
    attempt_limits,
    validate_email,
    validate_password,
    validate_username,
    well_formed_username,
)
from meshchat_auth.issuer import (
    TokenIssuer,
    hash_refresh_token,
    seal_successor,
    unseal_successor,
)
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
from meshchat_runtime.tokens import REVOKED_MESSAGE, TokenVerifier
from meshchat_runtime.usernames import LOOKUP_MAX

__all__ = ["AccessChecker", "AccountService", "Page", "PasswordCheck", "SessionService"]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50
WRONG_CREDENTIALS = "wrong username or password"

_REFUSED_ROTATIONS = {
    RotationOutcome.UNKNOWN: "invalid refresh token",
    RotationOutcome.REVOKED: "refresh token revoked: log in again",
    RotationOutcome.EXPIRED: "refresh token expired: log in again",
    RotationOutcome.REUSED: (
        "refresh token already used: all sessions of it are revoked, log in again"
    ),
}


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


class PasswordCheck:
    """Verifies a password behind the failed-attempt limits (see
    :func:`~meshchat_auth.domain.attempt_limits`).

    Each check is reserved in the store before the password is verified, atomically across
    concurrent calls and replicas, so parallel guesses cannot all pass a count read before
    any of them was written; past a limit no password is verified at all. A check that
    succeeds takes its reservation back (and clears its account-and-address record); a
    wrong one leaves it counted.
    """

    def __init__(
        self,
        store: AuthStore,
        hasher: PasswordHasher,
        policy: TokenPolicy,
        clock: Clock,
        *,
        on_refusal: Callable[[str], None] = lambda limit: None,
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._policy = policy
        self._clock = clock
        self._on_refusal = on_refusal  # told the limit's name (metrics.LIMITS) on a refusal

    async def verify(self, username: str, address: str, user: User | None, password: str) -> bool:
        """Whether ``password`` is ``user``'s (an unknown user costs the same time);
        ResourceExhausted when a limit is reached or the hashing pool is full."""
        policy = self._policy
        limits = attempt_limits(
            username,
            address,
            policy.max_failed_logins,
            policy.max_failed_logins_per_address,
            policy.max_failed_logins_per_account,
        )
        keys = [limit.key for limit in limits]
        wait = await self._store.reserve_login_attempt(
            limits, self._clock(), policy.failed_login_window
        )
        if wait is not None:
            self._on_refusal("failed_logins")
            raise ResourceExhausted(f"too many failed logins; try again in {int(wait) + 1} s", wait)
        try:
            if user is None:
                await self._hasher.verify_nothing(password)
                return False
            valid = await self._hasher.verify(user.password_hash, password)
        except ResourceExhausted:
            await self._store.release_login_attempt(keys, [])  # nothing was checked
            raise
        if valid:
            await self._store.release_login_attempt(keys[1:], keys[:1])
        return valid

    async def confirm_own(
        self, caller: Principal, user: User, current_password: str, address: str, action: str
    ) -> None:
        """When ``caller`` acts on their own account, require its current password (a
        stolen access token alone must not change or end the account); nothing for an
        admin acting on another's. A wrong password counts under the limits."""
        if caller.user_id != user.id:
            return
        if not current_password:
            raise InvalidArgument("current_password", f"is required to {action}")
        if not await self.verify(user.username, address, user, current_password):
            raise PermissionDenied("current_password: is wrong")


class AccountService:
    """Creating, reading, changing and deleting accounts."""

    def __init__(
        self,
        store: AuthStore,
        hasher: PasswordHasher,
        passwords: PasswordCheck,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._passwords = passwords
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
        password_hash = await self._hasher.hash_new(password, (username, email))
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

    async def lookup(self, usernames: Sequence[str]) -> list[User]:
        """The accounts with these usernames (ignoring case; unknown ones left out), after
        checking every name, in one query."""
        if not usernames:
            raise InvalidArgument("usernames", "give at least one username")
        if len(usernames) > LOOKUP_MAX:
            raise InvalidArgument("usernames", f"give at most {LOOKUP_MAX} usernames")
        for username in usernames:
            validate_username(username, "usernames")
        return await self._store.get_users_by_usernames(usernames)

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
        current_password: str = "",
        address: str = "",
    ) -> User:
        """Change one's own account (email and password only with the current password), or
        any account as an admin; roles are admin-only. A new password revokes every refresh
        family of the user but the caller's own session."""
        if not user_id:
            raise InvalidArgument("id", "is required")
        if caller.user_id != user_id and not caller.is_admin:
            raise PermissionDenied("you may only change your own account")
        if role is not None and not caller.is_admin:
            raise PermissionDenied("only an admin may change a role")
        if email is not None:
            validate_email(email)
        if password is not None:
            validate_password(password, password_confirm or "")
        user = await self.get(user_id=user_id)
        if email is not None or password is not None:
            await self._passwords.confirm_own(
                caller, user, current_password, address, "change your email or password"
            )
        password_hash = None
        if password is not None:
            password_hash = await self._hasher.hash_new(password, (user.username, user.email))
        own_session = caller.session_id if caller.user_id == user_id else ""
        changes = UserChanges(
            email=email,
            role=role,
            password_hash=password_hash,
            revoke_families=password_hash is not None,
            keep_family=own_session or None,
        )
        updated = await self._store.update_user(user_id, changes, self._clock())
        if updated is None:
            raise NotFound(f"no user {user_id!r}")
        if password is not None:
            log.info(
                "password changed: other sessions revoked",
                extra={"user_id": user_id, "by": caller.user_id},
            )
        return updated

    async def delete(
        self, caller: Principal, user_id: str, *, current_password: str = "", address: str = ""
    ) -> None:
        """Delete one's own account (with the current password), or any account as an admin,
        with its tokens."""
        if not user_id:
            raise InvalidArgument("id", "is required")
        if caller.user_id != user_id and not caller.is_admin:
            raise PermissionDenied("you may only delete your own account")
        user = await self.get(user_id=user_id)
        await self._passwords.confirm_own(
            caller, user, current_password, address, "delete your account"
        )
        if not await self._store.delete_user(user_id, self._clock()):
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
    """Login, refresh-token rotation with reuse detection, logout (of one login or all)."""

    def __init__(
        self,
        store: AuthStore,
        hasher: PasswordHasher,
        passwords: PasswordCheck,
        issuer: TokenIssuer,
        policy: TokenPolicy,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._passwords = passwords
        self._issuer = issuer
        self._policy = policy
        self._clock = clock

    async def login(self, username: str, password: str, address: str = "") -> IssuedTokens:
        """Check the password and open a new token family. Unknown users and wrong
        passwords get the same answer, in the same time; guesses are limited per account
        and client ``address`` (see :class:`PasswordCheck`)."""
        if not username:
            raise InvalidArgument("username", "is required")
        if not password:
            raise InvalidArgument("password", "is required")
        if len(password) > PASSWORD_MAX:
            raise InvalidArgument("password", f"must be at most {PASSWORD_MAX} characters")
        if not well_formed_username(username):
            # No account can have it, and the pattern is public: nothing to check or count.
            raise Unauthenticated(WRONG_CREDENTIALS)
        user = await self._store.get_user_by_username(username)
        if not await self._passwords.verify(username, address, user, password) or user is None:
            raise Unauthenticated(WRONG_CREDENTIALS)
        now = self._clock()
        if self._hasher.needs_rehash(user.password_hash):
            user = await self._upgrade_hash(user, password, now)
        family = RefreshFamily(
            str(uuid.uuid4()), user.id, now, now + timedelta(seconds=self._policy.refresh_ttl)
        )
        refresh = self._issuer.refresh_token()
        await self._store.start_family(
            family, RefreshToken(hash_refresh_token(refresh), family.family_id, user.id, now)
        )
        return self._tokens(user, family.family_id, refresh, family.expires_at, now)

    async def _upgrade_hash(self, user: User, password: str, now: datetime) -> User:
        """Rehash with the current parameters; when the pool is full, the next login does
        it instead (the password was right: the login must not fail for this)."""
        try:
            new_hash = await self._hasher.hash(password)
        except ResourceExhausted:
            return user
        upgraded = await self._store.update_user(user.id, UserChanges(password_hash=new_hash), now)
        log.info("password hash upgraded", extra={"user_id": user.id})
        return upgraded or user

    def _tokens(
        self, user: User, family_id: str, refresh: str, refresh_expires: datetime, now: datetime
    ) -> IssuedTokens:
        access, access_expires = self._issuer.access_token(user, family_id, now)
        return IssuedTokens(access, access_expires, refresh, refresh_expires, user)

    async def refresh(self, refresh_token: str) -> IssuedTokens:
        """Use a refresh token up and return a new pair in the same family, in one atomic
        step of the store. A token used moments ago whose successor is still unused (the
        answer was lost) gets that same successor again; any other use of a used token
        revokes the whole family: somebody holds a stolen copy."""
        if not refresh_token:
            raise InvalidArgument("refresh_token", "is required")
        now = self._clock()
        successor = self._issuer.refresh_token()
        rotation = await self._store.rotate_refresh_token(
            hash_refresh_token(refresh_token),
            hash_refresh_token(successor),
            seal_successor(refresh_token, successor),
            now,
            self._policy.refresh_grace,
        )
        if rotation.outcome is RotationOutcome.REUSED:
            log.warning("refresh token reuse: family revoked", extra={"user_id": rotation.user_id})
        if rotation.outcome is RotationOutcome.REPEATED and rotation.successor_sealed:
            repeated = unseal_successor(refresh_token, rotation.successor_sealed)
            if repeated is None:
                raise Unauthenticated(_REFUSED_ROTATIONS[RotationOutcome.UNKNOWN])
            successor = repeated
        elif rotation.outcome is not RotationOutcome.ROTATED:
            raise Unauthenticated(_REFUSED_ROTATIONS[rotation.outcome])
        user = await self._store.get_user(rotation.user_id)
        if user is None or rotation.expires_at is None:
            raise Unauthenticated("the account no longer exists")
        return self._tokens(user, rotation.family_id, successor, rotation.expires_at, now)

    async def logout(self, refresh_token: str) -> None:
        """Revoke the refresh token's family. Unknown tokens are ignored (nothing to end)."""
        if not refresh_token:
            raise InvalidArgument("refresh_token", "is required")
        await self._store.revoke_family_of(hash_refresh_token(refresh_token), self._clock())

    async def logout_everywhere(
        self, caller: Principal, user_id: str, *, current_password: str = "", address: str = ""
    ) -> None:
        """End every login of a user, one's own (with the current password) or, as an admin,
        anyone's: every refresh family revoked and the LOGGED_OUT_EVERYWHERE event recorded
        in one step, so that the services following the events refuse the access tokens
        issued before it. The caller's own login ends too."""
        if not user_id:
            raise InvalidArgument("user_id", "is required")
        if caller.user_id != user_id and not caller.is_admin:
            raise PermissionDenied("you may only end your own logins")
        user = await self._store.get_user(user_id)
        if user is None:
            raise NotFound(f"no user {user_id!r}")
        await self._passwords.confirm_own(
            caller, user, current_password, address, "log out everywhere"
        )
        if not await self._store.log_out_everywhere(user_id, self._clock()):
            raise NotFound(f"no user {user_id!r}")
        log.info("logged out everywhere", extra={"user_id": user_id, "by": caller.user_id})

    def jwks(self) -> list[dict[str, Any]]:
        """The public keys that verify access tokens."""
        return self._issuer.jwks()


class AccessChecker:
    """Authenticates access tokens for the auth service itself and for AccessService.Check.

    Beyond the signature, it reads the account and the token's login in one read: a deleted
    user's tokens, and those of a revoked login (a logout, logging out everywhere, a
    password change's other logins, a detected refresh-token reuse), stop working here at
    once, and the current role counts, not the one in the token.
    """

    def __init__(self, verifier: TokenVerifier, store: AuthStore, policy: AccessPolicy) -> None:
        self._verifier = verifier
        self._store = store
        self._policy = policy

    async def authenticate(self, token: str, method: str = "") -> Principal:
        """The principal of a valid token of an existing account."""
        claims = self._verifier.verify(token)
        found = await self._store.get_user_with_session(claims.user_id, claims.session_id)
        if found is None:
            raise Unauthenticated("the account of this token no longer exists")
        user, session_revoked = found
        if session_revoked:
            raise Unauthenticated(REVOKED_MESSAGE)
        return Principal(
            user.id,
            user.username,
            user.role,
            claims.expires_at,
            claims.token_id,
            claims.session_id,
        )

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
