"""AccountService: sign-up, validation, permissions, paging."""

from __future__ import annotations

from typing import Any

import pytest

from meshchat_auth.domain import User
from meshchat_auth.service import AccountService
from meshchat_runtime.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from meshchat_runtime.identity import Principal, Role
from tests.support.accounts import make_admin, principal, sign_up
from tests.support.fakes import MemoryAuthStore
from tests.support.fakes.hasher import FakePasswordHasher
from tests.support.passwords import PASSWORD

NEW_PASSWORD = "staple orbit lantern quietly"


async def create(accounts: AccountService, username: str, email: str = "", **kw: Any) -> User:
    """CreateUser with the fields a test varies."""
    return await accounts.create(
        kw.pop("caller", None),
        username=username,
        email=email,
        password=kw.pop("password", PASSWORD),
        password_confirm=kw.pop("password_confirm", PASSWORD),
        role=kw.pop("role", None),
    )


async def admin(accounts: AccountService, auth_store: MemoryAuthStore) -> Principal:
    """An admin caller."""
    return principal(await make_admin(accounts, auth_store))


async def test_sign_up_stores_a_user_with_a_hashed_password(
    accounts: AccountService, auth_store: MemoryAuthStore, hasher: FakePasswordHasher
) -> None:
    user = await sign_up(accounts, "alice", "alice@example.org")
    assert (user.username, user.email, user.role) == ("alice", "alice@example.org", Role.USER)
    assert await auth_store.get_user(user.id) == user
    assert PASSWORD not in user.password_hash
    assert await hasher.verify(user.password_hash, PASSWORD)


@pytest.mark.parametrize(
    ("fields", "field_named"),
    [
        ({"username": "al"}, "username"),
        ({"username": "a" * 33}, "username"),
        ({"username": "-alice"}, "username"),
        ({"username": "al ice"}, "username"),
        ({"username": "x'); DROP TABLE users;--"}, "username"),
        ({"email": "not-an-email"}, "email"),
        ({"email": "a@" + "b" * 250 + ".org"}, "email"),
        ({"password": "short", "password_confirm": "short"}, "password"),
        ({"password_confirm": "something else"}, "password_confirm"),
        ({"password": "x" * 1025, "password_confirm": "x" * 1025}, "password"),
    ],
)
async def test_sign_up_rejects_bad_fields_naming_the_field_and_stores_nothing(
    accounts: AccountService,
    auth_store: MemoryAuthStore,
    fields: dict[str, Any],
    field_named: str,
) -> None:
    username = fields.pop("username", "alice")
    email = fields.pop("email", "")
    with pytest.raises(InvalidArgument) as info:
        await create(accounts, username, email, **fields)
    assert info.value.field == field_named
    assert await auth_store.list_users(None, 10) == []


async def test_names_of_3_and_32_characters_and_odd_emails_are_accepted(
    accounts: AccountService,
) -> None:
    await sign_up(accounts, "o.b")
    await sign_up(accounts, "o" * 32)
    user = await sign_up(accounts, "o.brien_-x", "o'brien\"--;@example.org")
    assert user.email == "o'brien\"--;@example.org"


async def test_a_1_mb_password_is_refused_before_any_hashing(
    accounts: AccountService, hasher: FakePasswordHasher
) -> None:
    huge = "x" * 1_000_000
    with pytest.raises(InvalidArgument, match="at most 1024"):
        await create(accounts, "alice", password=huge, password_confirm=huge)
    assert hasher.hashes == 0


async def test_duplicate_usernames_and_emails_are_refused_ignoring_case(
    accounts: AccountService,
) -> None:
    await sign_up(accounts, "alice", "alice@example.org")
    with pytest.raises(AlreadyExists, match="username"):
        await sign_up(accounts, "ALICE")
    with pytest.raises(AlreadyExists, match="email"):
        await sign_up(accounts, "bob", "Alice@Example.org")


async def test_creating_an_admin_needs_an_admin(
    accounts: AccountService, auth_store: MemoryAuthStore
) -> None:
    with pytest.raises(PermissionDenied):
        await create(accounts, "eve", role=Role.ADMIN)
    bob = principal(await sign_up(accounts, "bob"))
    with pytest.raises(PermissionDenied):
        await create(accounts, "eve", role=Role.ADMIN, caller=bob)
    root = await admin(accounts, auth_store)
    assert (await create(accounts, "eve", role=Role.ADMIN, caller=root)).role is Role.ADMIN
    assert await auth_store.get_user_by_username("eve") is not None


async def test_get_finds_by_id_or_username(accounts: AccountService) -> None:
    alice = await sign_up(accounts, "alice")
    assert await accounts.get(user_id=alice.id) == alice
    assert await accounts.get(username="ALICE") == alice
    with pytest.raises(NotFound, match="nobody"):
        await accounts.get(username="nobody")
    with pytest.raises(InvalidArgument) as info:
        await accounts.get()
    assert info.value.field == "key"


async def test_only_the_user_and_admins_see_the_email(
    accounts: AccountService, auth_store: MemoryAuthStore
) -> None:
    alice = await sign_up(accounts, "alice", "alice@example.org")
    bob = principal(await sign_up(accounts, "bob"))
    root = await admin(accounts, auth_store)
    assert not accounts.may_see_private_fields(bob, alice)
    assert accounts.may_see_private_fields(principal(alice), alice)
    assert accounts.may_see_private_fields(root, alice)


async def test_update_self_but_not_others_and_roles_only_by_admin(
    accounts: AccountService, auth_store: MemoryAuthStore, hasher: FakePasswordHasher
) -> None:
    alice_user = await sign_up(accounts, "alice")
    alice = principal(alice_user)
    bob = await sign_up(accounts, "bob")
    updated = await accounts.update(
        alice, alice.user_id, email="new@example.org", current_password=PASSWORD
    )
    assert updated.email == "new@example.org"
    assert updated.password_hash == alice_user.password_hash
    with pytest.raises(PermissionDenied):
        await accounts.update(alice, bob.id, email="x@example.org")
    with pytest.raises(PermissionDenied):
        await accounts.update(alice, alice.user_id, role=Role.ADMIN)
    root = await admin(accounts, auth_store)
    assert (await accounts.update(root, bob.id, role=Role.ADMIN)).role is Role.ADMIN
    with pytest.raises(InvalidArgument) as info:
        await accounts.update(alice, alice.user_id, password="newpassword1", password_confirm="no")
    assert info.value.field == "password_confirm"
    with pytest.raises(InvalidArgument) as info:
        await accounts.update(alice, alice.user_id, email="nope")
    assert info.value.field == "email"
    with pytest.raises(NotFound):
        await accounts.update(root, "00000000-0000-0000-0000-000000000000", email="")
    with pytest.raises(InvalidArgument):
        await accounts.update(root, "", email="")
    assert await auth_store.get_user(bob.id) == await accounts.get(user_id=bob.id)


async def test_a_new_password_is_hashed_and_works(
    accounts: AccountService, auth_store: MemoryAuthStore, hasher: FakePasswordHasher
) -> None:
    alice = principal(await sign_up(accounts, "alice"))
    await accounts.update(
        alice,
        alice.user_id,
        password=NEW_PASSWORD,
        password_confirm=NEW_PASSWORD,
        current_password=PASSWORD,
    )
    stored = await auth_store.get_user(alice.user_id)
    assert stored is not None
    assert await hasher.verify(stored.password_hash, NEW_PASSWORD)
    assert not await hasher.verify(stored.password_hash, PASSWORD)


async def test_update_with_another_users_email_changes_nothing(
    accounts: AccountService, auth_store: MemoryAuthStore
) -> None:
    await sign_up(accounts, "alice", "alice@example.org")
    bob = await sign_up(accounts, "bob", "bob@example.org")
    with pytest.raises(AlreadyExists):
        await accounts.update(
            principal(bob), bob.id, email="ALICE@example.org", current_password=PASSWORD
        )
    assert await auth_store.get_user(bob.id) == bob


async def test_delete_self_or_as_admin(
    accounts: AccountService, auth_store: MemoryAuthStore
) -> None:
    alice = principal(await sign_up(accounts, "alice"))
    bob = await sign_up(accounts, "bob")
    with pytest.raises(PermissionDenied):
        await accounts.delete(alice, bob.id)
    await accounts.delete(alice, alice.user_id, current_password=PASSWORD)
    assert await auth_store.get_user(alice.user_id) is None
    root = await admin(accounts, auth_store)
    await accounts.delete(root, bob.id)
    with pytest.raises(NotFound):
        await accounts.get(user_id=bob.id)
    with pytest.raises(NotFound):
        await accounts.delete(root, bob.id)
    with pytest.raises(InvalidArgument):
        await accounts.delete(root, "")


async def test_list_is_admin_only_and_pages_by_username(
    accounts: AccountService, auth_store: MemoryAuthStore
) -> None:
    names = [f"user{i:02d}" for i in (3, 0, 6, 1, 5, 2, 4)]
    for name in names:
        await sign_up(accounts, name)
    plain = principal(await sign_up(accounts, "Zed"))
    with pytest.raises(PermissionDenied):
        await accounts.list(plain, 0, "")
    root = await admin(accounts, auth_store)
    seen: list[str] = []
    token = ""
    while True:
        page = await accounts.list(root, 3, token)
        assert len(page.users) <= 3
        seen += [u.username for u in page.users]
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted([*names, "Zed", "root"], key=str.lower)
    assert len((await accounts.list(root, 0, "")).users) == 9  # 0: the default size


@pytest.mark.parametrize(("size", "token"), [(-1, ""), (501, ""), (0, "%%%")])
async def test_list_refuses_bad_page_sizes_and_tokens(
    accounts: AccountService, auth_store: MemoryAuthStore, size: int, token: str
) -> None:
    root = await admin(accounts, auth_store)
    with pytest.raises(InvalidArgument):
        await accounts.list(root, size, token)


async def test_own_changes_need_the_current_password(
    accounts: AccountService, auth_store: MemoryAuthStore
) -> None:
    alice_user = await sign_up(accounts, "alice")
    alice = principal(alice_user)
    changes: list[dict[str, Any]] = [
        {"email": "eve@example.org"},
        {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
    ]
    for change in changes:
        with pytest.raises(InvalidArgument) as info:
            await accounts.update(alice, alice.user_id, **change)
        assert info.value.field == "current_password"
        with pytest.raises(PermissionDenied, match="current_password"):
            await accounts.update(alice, alice.user_id, current_password="a wrong guess", **change)
    with pytest.raises(InvalidArgument):
        await accounts.delete(alice, alice.user_id)
    with pytest.raises(PermissionDenied):
        await accounts.delete(alice, alice.user_id, current_password="a wrong guess")
    assert await auth_store.get_user(alice.user_id) == alice_user
    # An admin changing another account needs no password of theirs.
    root = await admin(accounts, auth_store)
    await accounts.update(root, alice.user_id, password=NEW_PASSWORD, password_confirm=NEW_PASSWORD)


async def test_a_weak_new_password_is_refused_saying_why(accounts: AccountService) -> None:
    alice = principal(await sign_up(accounts, "alice"))
    with pytest.raises(InvalidArgument, match=r"too weak .*common password"):
        await accounts.update(
            alice,
            alice.user_id,
            password="password",
            password_confirm="password",
            current_password=PASSWORD,
        )
    with pytest.raises(InvalidArgument, match="too weak"):
        await sign_up(accounts, "bob", password="aaaaaaaa")
