"""The AuthStore contract, run against SQLite, PostgreSQL and the unit tier's in-memory fake
alike, so that the fake cannot drift from the real backends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from meshchat_auth.domain import NewUser, RefreshToken, UserChanges
from meshchat_auth.store import AuthStore, open_store
from meshchat_runtime.errors import AlreadyExists
from meshchat_runtime.identity import Role
from meshchat_runtime.settings import parse_database_url
from tests.support.backends import STORES, database_url_of
from tests.support.fakes import MemoryAuthStore
from tests.support.schema import snapshot

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[AuthStore]:
    opened: AuthStore
    if request.param == "memory":
        opened = MemoryAuthStore()
    else:
        opened = await open_store(parse_database_url(database_url_of(request, request.param)))
    yield opened
    await opened.close()


def new_user(name: str, email: str = "", role: Role = Role.USER) -> NewUser:
    return NewUser(name, email, role, "$argon2id$hash")


async def test_users_round_trip(store: AuthStore) -> None:
    created = await store.create_user(new_user("Alice", "a@example.org"), NOW)
    assert await store.get_user(created.id) == created
    assert await store.get_user_by_username("alice") == created
    assert await store.get_user("not-a-uuid") is None
    assert await store.get_user_by_username("bob") is None


async def test_uniqueness_ignores_case_and_empty_emails(store: AuthStore) -> None:
    await store.create_user(new_user("alice", "A@example.org"), NOW)
    await store.create_user(new_user("bob"), NOW)
    await store.create_user(new_user("carol"), NOW)
    with pytest.raises(AlreadyExists, match="username"):
        await store.create_user(new_user("ALICE"), NOW)
    with pytest.raises(AlreadyExists, match="email"):
        await store.create_user(new_user("dave", "a@EXAMPLE.org"), NOW)


async def test_update_changes_only_given_fields_and_keeps_data_on_conflict(
    store: AuthStore,
) -> None:
    alice = await store.create_user(new_user("alice", "a@example.org"), NOW)
    bob = await store.create_user(new_user("bob", "b@example.org"), NOW)
    later = NOW + timedelta(minutes=1)
    updated = await store.update_user(alice.id, UserChanges(role=Role.ADMIN), later)
    assert updated is not None
    assert (updated.role, updated.email, updated.password_hash) == (
        Role.ADMIN,
        "a@example.org",
        alice.password_hash,
    )
    assert updated.updated_at == later
    with pytest.raises(AlreadyExists):
        await store.update_user(bob.id, UserChanges(email="A@example.org", role=Role.ADMIN), later)
    assert await store.get_user(bob.id) == bob
    assert (
        await store.update_user(
            "00000000-0000-0000-0000-000000000000", UserChanges(email=""), later
        )
        is None
    )


async def test_delete_removes_the_user_and_their_tokens(store: AuthStore) -> None:
    alice = await store.create_user(new_user("alice"), NOW)
    token = RefreshToken(
        "h1", "11111111-1111-1111-1111-111111111111", alice.id, NOW, NOW + timedelta(days=1)
    )
    await store.add_refresh_token(token)
    assert await store.delete_user(alice.id)
    assert await store.get_user(alice.id) is None
    assert await store.get_refresh_token("h1") is None
    assert not await store.delete_user(alice.id)


async def test_list_users_pages_by_lowercase_username(store: AuthStore) -> None:
    for name in ("bob", "Alice", "carol", "dave"):
        await store.create_user(new_user(name), NOW)
    first = await store.list_users(None, 2)
    assert [u.username for u in first] == ["Alice", "bob"]
    rest = await store.list_users("bob", 10)
    assert [u.username for u in rest] == ["carol", "dave"]


async def test_a_refresh_token_is_used_exactly_once(store: AuthStore) -> None:
    alice = await store.create_user(new_user("alice"), NOW)
    family = "22222222-2222-2222-2222-222222222222"
    await store.add_refresh_token(
        RefreshToken("h1", family, alice.id, NOW, NOW + timedelta(days=1))
    )
    results = await asyncio.gather(*(store.use_refresh_token("h1", NOW) for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]
    stored = await store.get_refresh_token("h1")
    assert stored is not None
    assert stored.used_at == NOW


async def test_revoking_a_family_revokes_all_its_tokens(store: AuthStore) -> None:
    alice = await store.create_user(new_user("alice"), NOW)
    family = "33333333-3333-3333-3333-333333333333"
    other = "44444444-4444-4444-4444-444444444444"
    for token_hash, fam in (("a", family), ("b", family), ("c", other)):
        await store.add_refresh_token(
            RefreshToken(token_hash, fam, alice.id, NOW, NOW + timedelta(days=1))
        )
    await store.revoke_family(family, NOW)
    assert not await store.use_refresh_token("b", NOW)
    revoked = await store.get_refresh_token("a")
    assert revoked is not None
    assert revoked.revoked_at == NOW
    assert await store.use_refresh_token("c", NOW)


async def test_text_is_stored_verbatim(store: AuthStore) -> None:
    email = "o'brien\"--;%s\\@example.org"
    created = await store.create_user(new_user("o.brien_-x", email), NOW)
    assert await store.get_user_by_username("O.BRIEN_-X") == created
    assert created.email == email
    assert await store.get_user_by_username("x' OR '1'='1") is None


async def test_login_failures_count_in_a_window(store: AuthStore) -> None:
    assert await store.login_failures("alice") is None
    assert await store.count_login_failure("alice", NOW, 60) == (1, NOW)
    assert await store.count_login_failure("alice", NOW + timedelta(seconds=30), 60) == (2, NOW)
    later = NOW + timedelta(seconds=61)
    assert await store.count_login_failure("alice", later, 60) == (1, later)
    assert await store.login_failures("alice") == (1, later)
    await store.clear_login_failures("alice")
    assert await store.login_failures("alice") is None


async def test_migrations_are_idempotent(database_url: str) -> None:
    """A restart opens the migrated database again: its schema and data stay as they were."""
    first = await open_store(parse_database_url(database_url))
    alice = await first.create_user(new_user("alice", "a@example.org"), NOW)
    family = "55555555-5555-5555-5555-555555555555"
    token = RefreshToken("h1", family, alice.id, NOW, NOW + timedelta(days=1))
    await first.add_refresh_token(token)
    await first.count_login_failure("bob", NOW, 60)
    await first.close()
    before = await snapshot(database_url)
    second = await open_store(parse_database_url(database_url))
    try:
        assert await second.get_user(alice.id) == alice
        assert await second.get_refresh_token("h1") == token
        assert await second.login_failures("bob") == (1, NOW)
    finally:
        await second.close()
    assert await snapshot(database_url) == before
