"""AccessChecker: access tokens of existing accounts, and the access rules per endpoint."""

from __future__ import annotations

import pytest

from meshchat_auth.service import AccessChecker, AccountService, SessionService
from meshchat_runtime.errors import InvalidArgument, PermissionDenied, Unauthenticated
from meshchat_runtime.identity import Role
from tests.support.accounts import make_admin, sign_up
from tests.support.clock import FakeClock
from tests.support.fakes import MemoryAuthStore
from tests.support.passwords import PASSWORD

SEND = "/meshchat.chat.v1.ChatService/SendMessage"
LIST_USERS = "/meshchat.auth.v1.UserService/ListUsers"


async def token_of(sessions: SessionService, username: str) -> str:
    """A fresh access token of the user."""
    return (await sessions.login(username, PASSWORD)).access_token


async def test_check_allows_a_user_endpoint_and_names_the_caller(
    accounts: AccountService, sessions: SessionService, access: AccessChecker
) -> None:
    alice = await sign_up(accounts, "alice")
    tokens = await sessions.login("alice", PASSWORD)
    caller = await access.check(tokens.access_token, SEND)
    assert (caller.user_id, caller.username, caller.role) == (alice.id, "alice", Role.USER)
    assert caller.expires_at == tokens.access_expires_at.timestamp()


@pytest.mark.parametrize("endpoint", [LIST_USERS, "/meshchat.chat.v1.ChatService/Nope", "/e.S/D"])
async def test_check_denies_users_admin_endpoints_and_unknown_ones(
    accounts: AccountService, sessions: SessionService, access: AccessChecker, endpoint: str
) -> None:
    await sign_up(accounts, "alice")
    with pytest.raises(PermissionDenied):
        await access.check(await token_of(sessions, "alice"), endpoint)


async def test_admins_pass_admin_endpoints_but_not_unknown_ones(
    accounts: AccountService,
    sessions: SessionService,
    access: AccessChecker,
    auth_store: MemoryAuthStore,
) -> None:
    await make_admin(accounts, auth_store)
    token = await token_of(sessions, "root")
    assert (await access.check(token, LIST_USERS)).role is Role.ADMIN
    await access.check(token, SEND)
    with pytest.raises(PermissionDenied, match="not a known endpoint"):
        await access.check(token, "/evil.Service/Do")


async def test_the_current_role_counts_not_the_one_in_the_token(
    accounts: AccountService,
    sessions: SessionService,
    access: AccessChecker,
    auth_store: MemoryAuthStore,
) -> None:
    await make_admin(accounts, auth_store)
    token = await token_of(sessions, "root")
    root = await auth_store.get_user_by_username("root")
    assert root is not None
    await accounts.update(await access.authenticate(token), root.id, role=Role.USER)
    with pytest.raises(PermissionDenied):
        await access.check(token, LIST_USERS)


@pytest.mark.parametrize("endpoint", ["", "SendMessage", "meshchat.chat.v1.ChatService/Send"])
async def test_check_rejects_endpoints_that_are_not_method_names(
    accounts: AccountService, sessions: SessionService, access: AccessChecker, endpoint: str
) -> None:
    await sign_up(accounts, "alice")
    with pytest.raises(InvalidArgument) as info:
        await access.check(await token_of(sessions, "alice"), endpoint)
    assert info.value.field == "endpoint"


async def test_check_without_a_token_is_unauthenticated(access: AccessChecker) -> None:
    for token in (None, ""):
        with pytest.raises(Unauthenticated):
            await access.check(token, SEND)


async def test_a_deleted_users_access_tokens_stop_working_at_once(
    accounts: AccountService, sessions: SessionService, access: AccessChecker
) -> None:
    alice = await sign_up(accounts, "alice")
    token = await token_of(sessions, "alice")
    await accounts.delete(await access.authenticate(token), alice.id, current_password=PASSWORD)
    with pytest.raises(Unauthenticated, match="no longer exists"):
        await access.check(token, SEND)


async def test_expired_and_forged_tokens_are_unauthenticated(
    accounts: AccountService,
    sessions: SessionService,
    access: AccessChecker,
    clock: FakeClock,
) -> None:
    await sign_up(accounts, "alice")
    token = await token_of(sessions, "alice")
    head, body, signature = token.split(".")
    with pytest.raises(Unauthenticated):
        await access.check(f"{head}.{body}.{signature[::-1]}", SEND)
    clock.advance(-3600)  # issued an hour ago, so expired for the (real-time) verifier
    with pytest.raises(Unauthenticated, match="expired"):
        await access.check(await token_of(sessions, "alice"), SEND)
