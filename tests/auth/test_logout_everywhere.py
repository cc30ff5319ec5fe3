"""LogoutEverywhere against real servers on both backends: it ends every login of a user
(their own with the current password, anyone's as an admin), also those refreshing at that
very moment, and a fresh login works after it. What the chat service makes of it is
tests/chat/test_revocation.py's."""

from __future__ import annotations

import asyncio

import grpc
import grpc.aio

from meshchat.auth.v1 import auth_pb2, users_pb2
from tests.support.auth_stubs import Stubs, login_admin
from tests.support.passwords import PASSWORD
from tests.support.rpc import status_of
from tests.support.stack import RunningAuth, bearer, register_and_login

OK = grpc.StatusCode.OK
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


def everywhere(user_id: str, current_password: str = "") -> auth_pb2.LogoutEverywhereRequest:
    return auth_pb2.LogoutEverywhereRequest(user_id=user_id, current_password=current_password)


async def refresh(stubs: Stubs, refresh_token: str) -> tuple[grpc.StatusCode, str]:
    """The outcome of presenting ``refresh_token``, and the successor when it rotated."""
    try:
        pair = await stubs.auth.Refresh(auth_pb2.RefreshRequest(refresh_token=refresh_token))
    except grpc.aio.AioRpcError as error:
        return error.code(), ""
    return OK, pair.refresh_token


async def login(stubs: Stubs, username: str) -> auth_pb2.TokenPair:
    return await stubs.auth.Login(auth_pb2.LoginRequest(username=username, password=PASSWORD))


async def test_logging_out_everywhere_ends_every_login_of_the_caller(stubs_any: Stubs) -> None:
    mine = await register_and_login(stubs_any.channel, "alice")
    laptop = await login(stubs_any, "alice")
    phone = await login(stubs_any, "alice")
    _, phone_next = await refresh(stubs_any, phone.refresh_token)
    bob = await register_and_login(stubs_any.channel, "bob")
    logout_everywhere = stubs_any.auth.LogoutEverywhere
    code, details = await status_of(logout_everywhere(everywhere(mine.user.id)))
    assert code == UNAUTHENTICATED  # a token is needed
    # A stolen access token alone cannot end the victim's logins.
    code, details = await status_of(
        logout_everywhere(everywhere(mine.user.id), metadata=bearer(mine.access_token))
    )
    assert (code, details) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "current_password: is required to log out everywhere",
    )
    code, _ = await status_of(
        logout_everywhere(
            everywhere(mine.user.id, "a wrong guess"), metadata=bearer(mine.access_token)
        )
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert (await refresh(stubs_any, laptop.refresh_token))[0] == OK

    await logout_everywhere(everywhere(mine.user.id, PASSWORD), metadata=bearer(mine.access_token))

    for token in (mine.refresh_token, phone_next):
        assert (await refresh(stubs_any, token))[0] == UNAUTHENTICATED
    # The auth service refuses the access tokens of those logins at once, too.
    for access_token in (mine.access_token, laptop.access_token):
        code, details = await status_of(
            stubs_any.users.GetUser(
                users_pb2.GetUserRequest(id=mine.user.id), metadata=bearer(access_token)
            )
        )
        assert (code, details) == (UNAUTHENTICATED, "access token revoked: log in again")
    assert (await refresh(stubs_any, bob.refresh_token))[0] == OK
    fresh = await login(stubs_any, "alice")
    assert (await refresh(stubs_any, fresh.refresh_token))[0] == OK


async def test_only_an_admin_ends_another_users_logins(
    stubs_any: Stubs, auth_any: RunningAuth
) -> None:
    alice = await register_and_login(stubs_any.channel, "alice")
    mallory = await register_and_login(stubs_any.channel, "mallory")
    code, details = await status_of(
        stubs_any.auth.LogoutEverywhere(
            everywhere(alice.user.id, PASSWORD), metadata=bearer(mallory.access_token)
        )
    )
    assert (code, details) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "you may only end your own logins",
    )
    assert (await refresh(stubs_any, alice.refresh_token))[0] == OK
    admin = bearer(await login_admin(stubs_any, auth_any))
    code, _ = await status_of(
        stubs_any.auth.LogoutEverywhere(
            everywhere("00000000-0000-0000-0000-000000000000"), metadata=admin
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND
    _, current = await refresh(stubs_any, alice.refresh_token)  # the rotated-to token goes too
    await stubs_any.auth.LogoutEverywhere(everywhere(alice.user.id), metadata=admin)
    assert (await refresh(stubs_any, current))[0] == UNAUTHENTICATED


async def test_logins_refreshing_at_that_moment_end_too(stubs_any: Stubs) -> None:
    """Every login refreshes at the same moment as the call: whichever the store ran first,
    no successor survives (the rotation and the revocation never interleave)."""
    alice = await register_and_login(stubs_any.channel, "alice")
    logins = [await login(stubs_any, "alice") for _ in range(6)]
    barrier = asyncio.Barrier(len(logins) + 1)

    async def rotate(pair: auth_pb2.TokenPair) -> tuple[grpc.StatusCode, str]:
        await barrier.wait()
        return await refresh(stubs_any, pair.refresh_token)

    async def log_out() -> None:
        await barrier.wait()
        await stubs_any.auth.LogoutEverywhere(
            everywhere(alice.user.id, PASSWORD), metadata=bearer(alice.access_token)
        )

    logging_out = asyncio.create_task(log_out())
    outcomes = await asyncio.gather(*(rotate(pair) for pair in logins))
    await logging_out
    assert {code for code, _ in outcomes} <= {OK, UNAUTHENTICATED}
    for pair, (_, successor) in zip(logins, outcomes, strict=True):
        for token in (pair.refresh_token, successor):
            if token:
                assert (await refresh(stubs_any, token))[0] == UNAUTHENTICATED
