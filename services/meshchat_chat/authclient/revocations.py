"""The access tokens that the chat service refuses although they verify: those that account
events of the auth service revoked (a deleted user's, a demoted admin's, those issued before
a password change). The set lives in memory, loaded from chat's database at start and kept
up to date by the follower of the events (:mod:`meshchat_chat.authclient.events`)."""

from __future__ import annotations

from collections.abc import Iterable

from meshchat_chat.domain import Revocation
from meshchat_runtime.errors import Unauthenticated
from meshchat_runtime.identity import Principal
from meshchat_runtime.interceptors import Authenticator
from meshchat_runtime.tokens import REVOKED_MESSAGE

__all__ = ["RevocationList", "RevokingAuthenticator"]


class RevocationList:
    """The revocation of each user that has one."""

    def __init__(self, revocations: Iterable[Revocation] = ()) -> None:
        self._by_user = {r.user_id: r for r in revocations}

    def __len__(self) -> int:
        return len(self._by_user)

    def add(self, revocation: Revocation) -> None:
        """Merge a new revocation into the user's."""
        old = self._by_user.get(revocation.user_id)
        self._by_user[revocation.user_id] = old.merged(revocation) if old else revocation

    def check(self, principal: Principal) -> None:
        """Raise Unauthenticated when ``principal``'s token is revoked."""
        revocation = self._by_user.get(principal.user_id)
        if revocation is not None and revocation.refuses(principal):
            raise Unauthenticated(REVOKED_MESSAGE)


class RevokingAuthenticator:
    """Another authenticator's principal, unless its token is revoked."""

    def __init__(self, authenticator: Authenticator, revocations: RevocationList) -> None:
        self._authenticator = authenticator
        self._revocations = revocations

    async def authenticate(self, token: str, method: str) -> Principal:
        """The token's principal; Unauthenticated when it is invalid or revoked."""
        principal = await self._authenticator.authenticate(token, method)
        self._revocations.check(principal)
        return principal
