"""The verified-token cache of the chat service's local authentication: it skips only the
signature check and the claims' parsing. A cached token is still refused once it expires or
once an account event revokes it, and the cache holds a bounded number of tokens."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

from meshchat_auth.config import TokenPolicy
from meshchat_auth.keys import KeyRing
from meshchat_auth.service import AccountService, SessionService
from meshchat_chat.authclient.revocations import RevocationList, RevokingAuthenticator
from meshchat_chat.domain import Revocation
from meshchat_runtime.errors import Unauthenticated
from meshchat_runtime.identity import Principal
from meshchat_runtime.tokens import REVOKED_MESSAGE, TokenVerifier
from tests.support.accounts import sign_up
from tests.support.clock import FakeClock
from tests.support.passwords import PASSWORD

SEND = "/meshchat.chat.v1.ChatService/SendMessage"


class CountingKeys:
    """The key ring, counting the lookups: one per signature actually checked."""

    def __init__(self, keys: KeyRing) -> None:
        self._keys = keys
        self.lookups = 0

    def public_key(self, kid: str) -> EllipticCurvePublicKey | None:
        self.lookups += 1
        return self._keys.public_key(kid)


class Verifying:
    """An authenticator over the verifier alone (the local one, without the JWKS fetch)."""

    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    async def authenticate(self, token: str, method: str) -> Principal:
        return self._verifier.verify(token)


@pytest.fixture
def counting(keys: KeyRing) -> CountingKeys:
    return CountingKeys(keys)


def verifier_of(
    counting: CountingKeys, policy: TokenPolicy, clock: FakeClock, size: int = 100
) -> TokenVerifier:
    return TokenVerifier(
        counting,
        issuer=policy.issuer,
        audience=policy.audience,
        cache_size=size,
        clock=clock.timestamp,
    )


async def tokens_of(sessions: SessionService, accounts: AccountService, *names: str) -> list[str]:
    result = []
    for name in names:
        await sign_up(accounts, name)
        result.append((await sessions.login(name, PASSWORD)).access_token)
    return result


async def test_a_cached_token_is_refused_once_it_expires(
    accounts: AccountService,
    sessions: SessionService,
    counting: CountingKeys,
    policy: TokenPolicy,
    clock: FakeClock,
) -> None:
    (token,) = await tokens_of(sessions, accounts, "alice")
    verifier = verifier_of(counting, policy, clock)
    principal = verifier.verify(token)
    assert verifier.verify(token) == principal
    assert counting.lookups == 1  # the second call was the cache's
    clock.advance(principal.expires_at - clock.timestamp() + 6)  # past exp and the leeway
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.verify(token)


async def test_a_cached_token_is_refused_once_revoked(
    accounts: AccountService,
    sessions: SessionService,
    counting: CountingKeys,
    policy: TokenPolicy,
    clock: FakeClock,
) -> None:
    (token,) = await tokens_of(sessions, accounts, "alice")
    revocations = RevocationList()
    authenticator = RevokingAuthenticator(
        Verifying(verifier_of(counting, policy, clock)), revocations
    )
    principal = await authenticator.authenticate(token, SEND)
    revocations.add(Revocation(principal.user_id, datetime.now(UTC), deleted=True))
    with pytest.raises(Unauthenticated, match=REVOKED_MESSAGE):
        await authenticator.authenticate(token, SEND)
    assert counting.lookups == 1  # refused although the verification came from the cache


async def test_the_cache_holds_at_most_its_size_the_least_recently_used_go(
    accounts: AccountService,
    sessions: SessionService,
    counting: CountingKeys,
    policy: TokenPolicy,
    clock: FakeClock,
) -> None:
    first, second, third = await tokens_of(sessions, accounts, "alice", "bob", "carol")
    verifier = verifier_of(counting, policy, clock, size=2)
    for token in (first, second, first, third):  # third evicts second, the least recently used
        verifier.verify(token)
    assert counting.lookups == 3
    verifier.verify(first)
    verifier.verify(third)
    assert counting.lookups == 3
    verifier.verify(second)
    assert counting.lookups == 4
