"""The User API over the wire: fields mapped to and from the use cases, the caller taken from\nthe token, domain errors as status codes. The rules are tested in tests/unit/auth."""

from __future__ import annotations

import time

import grpc
import grpc.aio

from meshchat.auth.v1 import access_options_pb2, users_pb2
from tests.support.auth_stubs import Stubs, login_admin
from tests.support.passwords import PASSWORD
from tests.support.rpc import status_of
from tests.support.stack import RunningAuth, bearer, register, register_and_login

ADMIN = access_options_pb2.ROLE_ADMIN
USER = access_options_pb2.ROLE_USER


async def test_sign_up_creates_a_user_with_role_user(stubs_any: Stubs) -> None:
    user = await register(stubs_any.channel, "alice", email="alice@example.org")
    assert user.username == "alice"
    assert user.role == USER
    assert user.email == "alice@example.org"
    assert user.id


async def test_a_bad_field_is_invalid_argument_naming_the_field(stubs: Stubs) -> None:
    request = users_pb2.CreateUserRequest(
        username="alice", password=PASSWORD, password_confirm="something else"
    )
    code, details = await status_of(stubs.users.CreateUser(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("password_confirm:")


async def test_a_1_mb_password_is_rejected_quickly(stubs: Stubs) -> None:
    huge = "x" * 1_000_000
    started = time.monotonic()
    code, details = await status_of(
        stubs.users.CreateUser(
            users_pb2.CreateUserRequest(username="alice", password=huge, password_confirm=huge)
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("password:")
    # Not a timing target: proof that no argon2 hash of a megabyte ran (that takes seconds).
    assert time.monotonic() - started < 2


async def test_duplicate_usernames_and_emails_are_already_exists(stubs: Stubs) -> None:
    await register(stubs.channel, "alice", email="alice@example.org")
    code, details = await status_of(register(stubs.channel, "ALICE"))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert "username" in details
    code, details = await status_of(register(stubs.channel, "bob", email="Alice@Example.org"))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert "email" in details


async def test_creating_an_admin_needs_an_admin(stubs: Stubs, auth: RunningAuth) -> None:
    request = users_pb2.CreateUserRequest(
        username="eve", password=PASSWORD, password_confirm=PASSWORD, role=ADMIN
    )
    code, _ = await status_of(stubs.users.CreateUser(request))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    user_token = (await register_and_login(stubs.channel, "bob")).access_token
    code, _ = await status_of(stubs.users.CreateUser(request, metadata=bearer(user_token)))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    admin_token = await login_admin(stubs, auth)
    created = await stubs.users.CreateUser(request, metadata=bearer(admin_token))
    assert created.role == ADMIN


async def test_get_user_hides_other_users_email(stubs: Stubs) -> None:
    await register(stubs.channel, "alice", email="alice@example.org")
    bob = await register_and_login(stubs.channel, "bob")
    seen = await stubs.users.GetUser(
        users_pb2.GetUserRequest(username="alice"), metadata=bearer(bob.access_token)
    )
    assert seen.username == "alice"
    assert seen.email == ""
    code, _ = await status_of(
        stubs.users.GetUser(
            users_pb2.GetUserRequest(username="nobody"), metadata=bearer(bob.access_token)
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = await status_of(stubs.users.GetUser(users_pb2.GetUserRequest(username="alice")))
    assert code == grpc.StatusCode.UNAUTHENTICATED


async def test_update_self_but_not_others_and_roles_only_by_admin(
    stubs: Stubs, auth: RunningAuth
) -> None:
    alice = await register_and_login(stubs.channel, "alice")
    bob = await register_and_login(stubs.channel, "bob")
    updated = await stubs.users.UpdateUser(
        users_pb2.UpdateUserRequest(
            id=alice.user.id, email="new@example.org", current_password=PASSWORD
        ),
        metadata=bearer(alice.access_token),
    )
    assert updated.email == "new@example.org"
    code, _ = await status_of(
        stubs.users.UpdateUser(
            users_pb2.UpdateUserRequest(id=bob.user.id, email="x@example.org"),
            metadata=bearer(alice.access_token),
        )
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, _ = await status_of(
        stubs.users.UpdateUser(
            users_pb2.UpdateUserRequest(id=alice.user.id, role=ADMIN),
            metadata=bearer(alice.access_token),
        )
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED
    admin_token = await login_admin(stubs, auth)
    promoted = await stubs.users.UpdateUser(
        users_pb2.UpdateUserRequest(id=bob.user.id, role=ADMIN), metadata=bearer(admin_token)
    )
    assert promoted.role == ADMIN
    code, details = await status_of(
        stubs.users.UpdateUser(
            users_pb2.UpdateUserRequest(
                id=alice.user.id, password="newpassword1", password_confirm="nope"
            ),
            metadata=bearer(alice.access_token),
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("password_confirm:")
    code, _ = await status_of(
        stubs.users.UpdateUser(
            users_pb2.UpdateUserRequest(id="00000000-0000-0000-0000-000000000000", email=""),
            metadata=bearer(admin_token),
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND


async def test_delete_self_or_as_admin(stubs: Stubs, auth: RunningAuth) -> None:
    alice = await register_and_login(stubs.channel, "alice")
    bob = await register_and_login(stubs.channel, "bob")
    code, _ = await status_of(
        stubs.users.DeleteUser(
            users_pb2.DeleteUserRequest(id=bob.user.id), metadata=bearer(alice.access_token)
        )
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED
    await stubs.users.DeleteUser(
        users_pb2.DeleteUserRequest(id=alice.user.id, current_password=PASSWORD),
        metadata=bearer(alice.access_token),
    )
    admin_token = await login_admin(stubs, auth)
    await stubs.users.DeleteUser(
        users_pb2.DeleteUserRequest(id=bob.user.id), metadata=bearer(admin_token)
    )
    code, _ = await status_of(
        stubs.users.GetUser(users_pb2.GetUserRequest(id=bob.user.id), metadata=bearer(admin_token))
    )
    assert code == grpc.StatusCode.NOT_FOUND


async def test_list_users_is_admin_only_and_paginated(stubs: Stubs, auth: RunningAuth) -> None:
    names = [f"user{i:02d}" for i in range(7)]
    for name in names:
        await register(stubs.channel, name)
    plain = await register_and_login(stubs.channel, "zed")
    code, _ = await status_of(
        stubs.users.ListUsers(users_pb2.ListUsersRequest(), metadata=bearer(plain.access_token))
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED
    admin_token = await login_admin(stubs, auth)
    seen: list[str] = []
    token = ""
    while True:
        page = await stubs.users.ListUsers(
            users_pb2.ListUsersRequest(page_size=3, page_token=token), metadata=bearer(admin_token)
        )
        assert len(page.users) <= 3
        seen.extend(u.username for u in page.users)
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted([*names, "zed", "root"])
    code, _ = await status_of(
        stubs.users.ListUsers(
            users_pb2.ListUsersRequest(page_token="%%%"), metadata=bearer(admin_token)
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
