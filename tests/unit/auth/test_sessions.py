"""SessionService: login, refresh rotation with reuse detection, logout, throttling."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import jwt
import pytest

from meshchat_auth.config import TokenPolicy
from meshchat_auth.domain import AccountEventKind, UserChanges
from meshchat_auth.issuer import TokenIssuer
from meshchat_auth.keys import KeyRing
from meshchat_auth.service import AccessChecker, AccountService, PasswordCheck, SessionService
from meshchat_runtime.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from meshchat_runtime.timestamps import utc_now
from tests.support.accounts import make_admin, principal, sign_up
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
    # Strong in its first 72 characters, which are all that the strength check reads.
    long_password = ("Tr0ub4dor&3 staple battery horse " * 32)[:1024]
    await sign_up(accounts, "alice", password=long_password)
    await sessions.login("alice", long_password)
    with pytest.raises(Unauthenticated):
        await sessions.login("alice", long_password[:-1])


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


async def test_concurrent_refreshes_of_one_token_share_one_successor(
    accounts: AccountService, sessions: SessionService
) -> None:
    await sign_up(accounts, "alice")
    token = (await sessions.login("alice", PASSWORD)).refresh_token
    results = await asyncio.gather(*(sessions.refresh(token) for _ in range(5)))
    assert len({r.refresh_token for r in results}) == 1


async def test_without_a_grace_window_concurrent_refreshes_let_one_through(
    accounts: AccountService,
    auth_store: MemoryAuthStore,
    hasher: FakePasswordHasher,
    passwords: PasswordCheck,
    keys: KeyRing,
    clock: FakeClock,
) -> None:
    policy = TokenPolicy(refresh_grace=0)
    strict = SessionService(auth_store, hasher, passwords, TokenIssuer(keys, policy), policy, clock)
    await sign_up(accounts, "alice")
    token = (await strict.login("alice", PASSWORD)).refresh_token
    results = await asyncio.gather(
        *(strict.refresh(token) for _ in range(5)), return_exceptions=True
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    assert len(won) == 1
    assert all(isinstance(r, Unauthenticated) for r in results if isinstance(r, BaseException))
    with pytest.raises(Unauthenticated, match="revoked"):
        await strict.refresh(won[0].refresh_token)


async def test_a_repeat_within_the_grace_window_gets_the_same_successor(
    accounts: AccountService, sessions: SessionService, policy: TokenPolicy, clock: FakeClock
) -> None:
    await sign_up(accounts, "alice")
    first = await sessions.login("alice", PASSWORD)
    lost = await sessions.refresh(first.refresh_token)
    clock.advance(policy.refresh_grace - 1)
    again = await sessions.refresh(first.refresh_token)
    assert again.refresh_token == lost.refresh_token
    clock.advance(2)
    with pytest.raises(Unauthenticated, match="already used"):
        await sessions.refresh(first.refresh_token)
    with pytest.raises(Unauthenticated, match="revoked"):
        await sessions.refresh(lost.refresh_token)


async def test_a_repeat_after_the_successor_was_used_is_reuse(
    accounts: AccountService, sessions: SessionService
) -> None:
    await sign_up(accounts, "alice")
    first = await sessions.login("alice", PASSWORD)
    second = await sessions.refresh(first.refresh_token)
    await sessions.refresh(second.refresh_token)
    with pytest.raises(Unauthenticated, match="already used"):
        await sessions.refresh(first.refresh_token)


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


async def test_past_the_limit_no_password_is_verified(
    accounts: AccountService,
    sessions: SessionService,
    policy: TokenPolicy,
    hasher: FakePasswordHasher,
) -> None:
    await sign_up(accounts, "alice")
    results = await asyncio.gather(
        *(sessions.login("alice", "wrong-one", "203.0.113.7") for _ in range(20)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, Unauthenticated) for r in results) == policy.max_failed_logins
    assert sum(isinstance(r, ResourceExhausted) for r in results) == 20 - policy.max_failed_logins
    verified = hasher.verifications
    with pytest.raises(ResourceExhausted):
        await sessions.login("alice", PASSWORD, "203.0.113.7")
    assert hasher.verifications == verified
    # The lockout is the pair's: from another address the user logs in.
    await sessions.login("alice", PASSWORD, "198.51.100.2")


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
    await auth_store.delete_user(alice.id, utc_now())
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


async def test_a_password_change_revokes_the_other_sessions_only(
    accounts: AccountService, sessions: SessionService, access: AccessChecker
) -> None:
    await sign_up(accounts, "alice")
    mine = await sessions.login("alice", PASSWORD)
    other = await sessions.login("alice", PASSWORD)
    caller = await access.authenticate(mine.access_token)
    assert caller.session_id
    new = "staple orbit lantern quietly"
    await accounts.update(
        caller, caller.user_id, password=new, password_confirm=new, current_password=PASSWORD
    )
    await sessions.refresh(mine.refresh_token)
    with pytest.raises(Unauthenticated, match="revoked"):
        await sessions.refresh(other.refresh_token)


async def test_a_caller_without_a_session_id_loses_every_session(
    accounts: AccountService, sessions: SessionService
) -> None:
    alice = await sign_up(accounts, "alice")
    mine = await sessions.login("alice", PASSWORD)
    new = "staple orbit lantern quietly"
    await accounts.update(
        principal(alice), alice.id, password=new, password_confirm=new, current_password=PASSWORD
    )
    with pytest.raises(Unauthenticated, match="revoked"):
        await sessions.refresh(mine.refresh_token)


async def test_logging_out_everywhere_ends_every_login_and_a_new_one_works(
    accounts: AccountService,
    sessions: SessionService,
    access: AccessChecker,
    auth_store: MemoryAuthStore,
    clock: FakeClock,
) -> None:
    alice = await sign_up(accounts, "alice")
    await sign_up(accounts, "bob")
    mine = await sessions.login("alice", PASSWORD)
    other = await sessions.login("alice", PASSWORD)
    bobs = await sessions.login("bob", PASSWORD)
    caller = await access.authenticate(mine.access_token)
    await sessions.logout_everywhere(caller, alice.id, current_password=PASSWORD)
    for pair in (mine, other):
        with pytest.raises(Unauthenticated, match="revoked"):
            await sessions.refresh(pair.refresh_token)
    await sessions.refresh(bobs.refresh_token)
    [event] = await auth_store.account_events(0, 10)
    assert (event.user_id, event.kind, event.occurred_at) == (
        alice.id,
        AccountEventKind.LOGGED_OUT_EVERYWHERE,
        clock.now,
    )
    await sessions.refresh((await sessions.login("alice", PASSWORD)).refresh_token)


async def test_logging_out_everywhere_needs_the_password_or_an_admin(
    accounts: AccountService,
    sessions: SessionService,
    auth_store: MemoryAuthStore,
    policy: TokenPolicy,
) -> None:
    alice, bob = await sign_up(accounts, "alice"), await sign_up(accounts, "bob")
    pair = await sessions.login("alice", PASSWORD)
    with pytest.raises(InvalidArgument) as info:
        await sessions.logout_everywhere(principal(alice), alice.id)
    assert info.value.field == "current_password"
    with pytest.raises(InvalidArgument) as info:
        await sessions.logout_everywhere(principal(alice), "", current_password=PASSWORD)
    assert info.value.field == "user_id"
    # A wrong password counts as a failed check: a stolen access token cannot guess on.
    for _ in range(policy.max_failed_logins):
        with pytest.raises(PermissionDenied, match="current_password"):
            await sessions.logout_everywhere(principal(alice), alice.id, current_password="nope")
    with pytest.raises(ResourceExhausted):
        await sessions.logout_everywhere(principal(alice), alice.id, current_password=PASSWORD)
    with pytest.raises(PermissionDenied, match="only end your own"):
        await sessions.logout_everywhere(principal(bob), alice.id, current_password=PASSWORD)
    assert await auth_store.account_events(0, 10) == []
    await sessions.refresh(pair.refresh_token)
    # An admin ends another user's logins without any password.
    root = principal(await make_admin(accounts, auth_store))
    with pytest.raises(NotFound):
        await sessions.logout_everywhere(root, "00000000-0000-0000-0000-000000000000")
    await sessions.logout_everywhere(root, alice.id)
    with pytest.raises(Unauthenticated, match="revoked"):
        await sessions.refresh(pair.refresh_token)


async def test_the_access_tokens_of_an_ended_login_are_refused_at_once(
    accounts: AccountService, sessions: SessionService, access: AccessChecker
) -> None:
    alice = await sign_up(accounts, "alice")
    first, second, third = [await sessions.login("alice", PASSWORD) for _ in range(3)]
    await sessions.logout(first.refresh_token)
    with pytest.raises(Unauthenticated, match="access token revoked"):
        await access.authenticate(first.access_token)
    caller = await access.authenticate(second.access_token)
    assert caller.user_id == alice.id
    await sessions.logout_everywhere(caller, alice.id, current_password=PASSWORD)
    for pair in (second, third):
        with pytest.raises(Unauthenticated, match="access token revoked"):
            await access.authenticate(pair.access_token)
    fresh = await sessions.login("alice", PASSWORD)
    assert (await access.authenticate(fresh.access_token)).user_id == alice.id
