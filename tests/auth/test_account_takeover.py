"""Issue 10, items 5 and 6, against real servers on both backends: a stolen access token
changing the password, a password change that ends no session, and weak passwords."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest

from meshchat.auth.v1 import auth_pb2, users_pb2
from meshchat_auth.domain import MIN_PASSWORD_SCORE
from tests.support.auth_stubs import Stubs, login_admin
from tests.support.passwords import PASSWORD
from tests.support.rpc import status_of
from tests.support.stack import (
    RunningAuth,
    bearer,
    register,
    register_and_login,
)

NEW_PASSWORD = "staple orbit lantern quietly"


def change_password(
    user_id: str, password: str = NEW_PASSWORD, current: str = ""
) -> users_pb2.UpdateUserRequest:
    return users_pb2.UpdateUserRequest(
        id=user_id, password=password, password_confirm=password, current_password=current
    )


async def refresh_code(stubs: Stubs, refresh_token: str) -> grpc.StatusCode:
    try:
        await stubs.auth.Refresh(auth_pb2.RefreshRequest(refresh_token=refresh_token))
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_a_stolen_access_token_alone_changes_nothing(stubs_any: Stubs) -> None:
    victim = await register_and_login(stubs_any.channel, "alice")
    stolen = bearer(victim.access_token)
    users = stubs_any.users
    requests: dict[str, Callable[[], Awaitable[Any]]] = {
        "password": lambda: users.UpdateUser(change_password(victim.user.id), metadata=stolen),
        "email": lambda: users.UpdateUser(
            users_pb2.UpdateUserRequest(id=victim.user.id, email="eve@example.org"),
            metadata=stolen,
        ),
        "delete": lambda: users.DeleteUser(
            users_pb2.DeleteUserRequest(id=victim.user.id), metadata=stolen
        ),
    }
    for what, call in requests.items():
        code, details = await status_of(call())
        assert (what, code) == (what, grpc.StatusCode.INVALID_ARGUMENT)
        assert details.startswith("current_password:")
    code, details = await status_of(
        stubs_any.users.UpdateUser(
            change_password(victim.user.id, current="a wrong guess"), metadata=stolen
        )
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "current_password" in details
    await stubs_any.auth.Login(auth_pb2.LoginRequest(username="alice", password=PASSWORD))


async def test_guessing_the_current_password_is_throttled_like_a_login(stubs_any: Stubs) -> None:
    victim = await register_and_login(stubs_any.channel, "alice")
    stolen = bearer(victim.access_token)
    for _ in range(5):
        code, _ = await status_of(
            stubs_any.users.UpdateUser(
                change_password(victim.user.id, current="another guess"), metadata=stolen
            )
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED
    code, _ = await status_of(
        stubs_any.users.UpdateUser(
            change_password(victim.user.id, current=PASSWORD), metadata=stolen
        )
    )
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_a_password_change_ends_every_other_session(stubs_any: Stubs) -> None:
    mine = await register_and_login(stubs_any.channel, "alice")
    attackers = await stubs_any.auth.Login(
        auth_pb2.LoginRequest(username="alice", password=PASSWORD)
    )
    await stubs_any.users.UpdateUser(
        change_password(mine.user.id, current=PASSWORD),
        metadata=bearer(mine.access_token),
    )
    assert await refresh_code(stubs_any, attackers.refresh_token) == grpc.StatusCode.UNAUTHENTICATED
    # The session that changed the password goes on.
    assert await refresh_code(stubs_any, mine.refresh_token) == grpc.StatusCode.OK
    code, _ = await status_of(
        stubs_any.auth.Login(auth_pb2.LoginRequest(username="alice", password=PASSWORD))
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED
    await stubs_any.auth.Login(auth_pb2.LoginRequest(username="alice", password=NEW_PASSWORD))


async def test_an_admins_reset_ends_every_session(stubs_any: Stubs, auth_any: RunningAuth) -> None:
    alice = await register_and_login(stubs_any.channel, "alice")
    admin_token = await login_admin(stubs_any, auth_any)
    await stubs_any.users.UpdateUser(change_password(alice.user.id), metadata=bearer(admin_token))
    assert await refresh_code(stubs_any, alice.refresh_token) == grpc.StatusCode.UNAUTHENTICATED


async def test_own_changes_with_the_current_password_work(stubs_any: Stubs) -> None:
    alice = await register_and_login(stubs_any.channel, "alice")
    updated = await stubs_any.users.UpdateUser(
        users_pb2.UpdateUserRequest(
            id=alice.user.id, email="alice@example.org", current_password=PASSWORD
        ),
        metadata=bearer(alice.access_token),
    )
    assert updated.email == "alice@example.org"
    # An email change ends no session.
    assert await refresh_code(stubs_any, alice.refresh_token) == grpc.StatusCode.OK


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("12345678", "common password"),
        ("password", "common password"),
        ("aaaaaaaa", "Repeats"),
        ("qwertyuiop", "common password"),
        ("alice2026!", "add another word"),
    ],
)
async def test_weak_passwords_are_refused_saying_why(
    stubs_any: Stubs, password: str, why: str
) -> None:
    code, details = await status_of(register(stubs_any.channel, "alice", password=password))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("password: is too weak (")
    assert why.lower() in details.lower()


async def test_a_password_made_of_the_username_is_weak(stubs: Stubs) -> None:
    # Strong for zxcvbn on its own (score 4), weak once the username is known.
    code, details = await status_of(register(stubs.channel, "zorblat", password="zorblat2026!"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "too weak" in details
    await register(stubs.channel, "someone", password="zorblat2026!")


async def test_a_weak_new_password_is_refused_too(stubs: Stubs) -> None:
    alice = await register_and_login(stubs.channel, "alice")
    code, details = await status_of(
        stubs.users.UpdateUser(
            change_password(alice.user.id, "password1", current=PASSWORD),
            metadata=bearer(alice.access_token),
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "too weak" in details
    assert MIN_PASSWORD_SCORE == 3
