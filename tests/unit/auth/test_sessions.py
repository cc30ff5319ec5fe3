"""SessionService: login, refresh rotation with reuse detection, logout, throttling."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import jwt
import pytest

from meshchat_auth.config import TokenPolicy
from meshchat_auth.domain import UserChanges
from meshchat_auth.issuer import TokenIssuer
from meshchat_auth.keys import KeyRing
from meshchat_auth.service import AccountService, SessionService
from meshchat_runtime.errors import InvalidArgument, ResourceExhausted, Unauthenticated
from tests.support.accounts import sign_up
from tests.support.clock import FakeClock
from tests.support.fakes import MemoryAuthStore
from tests.support.fakes.hasher import FakePasswordHasher
from tests.support.keys import memory_key_ring
from tests.support.passwords import PASSWORD


async def test_login_returns_tokens_with_the_policys_lifetimes(
    accounts: AccountService,
    sessions: SessionService,
    keys: KeyRing,
    policy: TokenPolicy,
    clock: FakeClock,
) -> None:
    alice = await sign_up(accounts, "alice")
    tokens = await sessions.login("alice", PASSWORD)
    assert tokens.user == alice
    assert tokens.access_expires_at == clock.now + timedelta(seconds=policy.access_ttl)
    assert tokens.refresh_expires_at == clock.now + timedelta(seconds=policy.refresh_ttl)
    assert tokens.refresh_token.startswith("mcr_")
    header = jwt.get_unverified_header(tokens.access_token)
    assert (header["kid"], header["typ"]) == (keys.signing_key.kid, "at+jwt")
    claims = jwt.decode(
        tokens.access_token,
        keys.signing_key.public_key,
        algorithms=["ES256"],
        audience=policy.audience,
        options={"verify_exp": False},
    )
    assert (claims["sub"], claims["username"], claims["role"]) == (alice.id, "alice", "USER")


async def test_usernames_log_in_regardless_of_case(
    accounts: AccountService, sessions: SessionService
) -> None:
    await sign_up(accounts, "Alice")
    assert (await sessions.login("aLICE", PASSWORD)).user.username == "Alice"


async def test_unknown_user_and_wrong_password_get_the_same_answer_and_work(
    accounts: AccountService, sessions: SessionService, hasher: FakePasswordHasher
) -> None:
    await sign_up(accounts, "alice")
    with pytest.raises(Unauthenticated) as wrong:
        await sessions.login("alice", "nope-nope")
    verified = hasher.verifications
    with pytest.raises(Unauthenticated) as unknown:
        await sessions.login("nobody", "nope-nope")
    assert str(wrong.value) == str(unknown.value) == "wrong username or password"
    assert hasher.verifications == verified + 1  # the unknown name spent a verification too


@pytest.mark.parametrize(
    ("username", "password", "field"),
    [("", PASSWORD, "username"), ("alice", "", "password"), ("alice", "p" * 1025, "password")],
)
async def test_login_refuses_empty_fields_and_overlong_passwords_unhashed(
    sessions: SessionService,
    hasher: FakePasswordHasher,
    username: str,
    password: str,
    field: str,
) -> None:
    with pytest.raises(InvalidArgument) as info:
        await sessions.login(username, password)
    assert info.value.field == field
    assert hasher.verifications == 0


async def test_a_1024_character_password_is_kept_whole(
    accounts: AccountService, sessions: SessionService
) -> None:
    await sign_up(accounts, "alice", password="p" * 1024)
    await sessions.login("alice", "p" * 1024)
    with pytest.raises(Unauthenticated):
        await sessions.login("alice", "p" * 1023)


async def test_refresh_rotates_and_reuse_revokes_the_family(
    accounts: AccountService, sessions: SessionService
) -> None:
    await sign_up(accounts, "alice")
    first = await sessions.login("alice", PASSWORD)
    second = await sessions.refresh(first.refresh_token)
    assert second.refresh_token != first.refresh_token
    assert second.refresh_expires_at == first.refresh_expires_at  # a family does not outlive
    third = await sessions.refresh(second.refresh_token)
    # Replaying a used token (a thief's copy) revokes the family, the newest token included.
    with pytest.raises(Unauthenticated, match="already used"):
        await sessions.refresh(first.refresh_token)
    with pytest.raises(Unauthenticated, match="revoked"):
        await sessions.refresh(third.refresh_token)
    # Another login is another family and is unaffected.
    other = await sessions.login("alice", PASSWORD)
    await sessions.refresh(other.refresh_token)


async def test_concurrent_refreshes_of_one_token_let_one_through(
    accounts: AccountService, sessions: SessionService
) -> None:
    await sign_up(accounts, "alice")
    token = (await sessions.login("alice", PASSWORD)).refresh_token
    results = await asyncio.gather(
        *(sessions.refresh(token) for _ in range(5)), return_exceptions=True
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, Unauthenticated) for r in results if isinstance(r, BaseException))


async def test_refresh_tokens_expire(
    accounts: AccountService, sessions: SessionService, policy: TokenPolicy, clock: FakeClock
) -> None:
    await sign_up(accounts, "alice")
    token = (await sessions.login("alice", PASSWORD)).refresh_token
    clock.advance(policy.refresh_ttl)
    with pytest.raises(Unauthenticated, match="expired"):
        await sessions.refresh(token)


async def test_logout_revokes_the_family_and_ignores_unknown_tokens(
    accounts: AccountService, sessions: SessionService
) -> None:
    await sign_up(accounts, "alice")
    pair = await sessions.login("alice", PASSWORD)
    rotated = await sessions.refresh(pair.refresh_token)
    await sessions.logout(rotated.refresh_token)
    with pytest.raises(Unauthenticated, match="revoked"):
        await sessions.refresh(rotated.refresh_token)
    await sessions.logout("mcr_unknown")
    with pytest.raises(InvalidArgument):
        await sessions.logout("")


async def test_garbage_refresh_tokens_are_unauthenticated(
    accounts: AccountService, sessions: SessionService
) -> None:
    await sign_up(accounts, "alice")
    pair = await sessions.login("alice", PASSWORD)
    for token in ("mcr_nope", pair.access_token, "' OR 1=1 --"):
        with pytest.raises(Unauthenticated):
            await sessions.refresh(token)
    with pytest.raises(InvalidArgument) as info:
        await sessions.refresh("")
    assert info.value.field == "refresh_token"


async def test_failed_logins_are_throttled_per_account_for_the_window(
    accounts: AccountService, sessions: SessionService, policy: TokenPolicy, clock: FakeClock
) -> None:
    await sign_up(accounts, "alice")
    await sign_up(accounts, "bob")
    for _ in range(policy.max_failed_logins):
        with pytest.raises(Unauthenticated):
            await sessions.login("alice", "wrong-one")
    clock.advance(10)
    with pytest.raises(ResourceExhausted, match="try again in 51 s") as info:
        await sessions.login("ALICE", PASSWORD)  # even the right password, any case
    assert info.value.retry_after == policy.failed_login_window - 10
    await sessions.login("bob", PASSWORD)  # another account is not affected
    clock.advance(policy.failed_login_window)
    await sessions.login("alice", PASSWORD)


async def test_a_successful_login_clears_the_failures(
    accounts: AccountService, sessions: SessionService, policy: TokenPolicy
) -> None:
    await sign_up(accounts, "alice")
    for _ in range(2):
        for _ in range(policy.max_failed_logins - 1):
            with pytest.raises(Unauthenticated):
                await sessions.login("alice", "wrong-one")
        await sessions.login("alice", PASSWORD)


async def test_a_deleted_users_refresh_tokens_stop_working(
    accounts: AccountService, sessions: SessionService, auth_store: MemoryAuthStore
) -> None:
    alice = await sign_up(accounts, "alice")
    pair = await sessions.login("alice", PASSWORD)
    await auth_store.delete_user(alice.id)
    with pytest.raises(Unauthenticated):
        await sessions.refresh(pair.refresh_token)


async def test_login_upgrades_a_hash_made_with_other_parameters(
    accounts: AccountService,
    sessions: SessionService,
    auth_store: MemoryAuthStore,
    hasher: FakePasswordHasher,
    clock: FakeClock,
) -> None:
    alice = await sign_up(accounts, "alice")
    old_hash = await FakePasswordHasher(cost=2).hash(PASSWORD)
    await auth_store.update_user(alice.id, UserChanges(password_hash=old_hash), clock())
    await sessions.login("alice", PASSWORD)
    stored = await auth_store.get_user(alice.id)
    assert stored is not None
    assert stored.password_hash != old_hash
    assert not hasher.needs_rehash(stored.password_hash)
    await sessions.login("alice", PASSWORD)


def test_the_issuer_publishes_every_key_newest_first(policy: TokenPolicy) -> None:
    ring = memory_key_ring(2)
    jwks = TokenIssuer(ring, policy).jwks()
    assert jwks[0]["kid"] == ring.signing_key.kid
    assert len(jwks) == 2
