"""The AuthStore contract, run against SQLite, PostgreSQL and the unit tier's in-memory fake
alike, so that the fake cannot drift from the real backends."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from meshchat_auth.domain import (
    AccountEvent,
    AccountEventKind,
    AttemptLimit,
    NewUser,
    RefreshFamily,
    RefreshToken,
    RotationOutcome,
    UserChanges,
)
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


async def test_users_are_looked_up_by_many_usernames_at_once(store: AuthStore) -> None:
    alice = await store.create_user(new_user("Alice"), NOW)
    bob = await store.create_user(new_user("bob"), NOW)
    await store.create_user(new_user("carol"), NOW)
    found = await store.get_users_by_usernames(["alice", "BOB", "Bob", "nobody", "%", "_ob"])
    assert sorted(found, key=lambda u: u.username) == [alice, bob]
    assert await store.get_users_by_usernames(["nobody"]) == []


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


async def start(store: AuthStore, user_id: str, family_id: str, token_hash: str) -> None:
    await store.start_family(
        RefreshFamily(family_id, user_id, NOW, NOW + timedelta(days=1)),
        RefreshToken(token_hash, family_id, user_id, NOW),
    )


FAMILY = "11111111-1111-1111-1111-111111111111"
OTHER_FAMILY = "44444444-4444-4444-4444-444444444444"


async def test_delete_removes_the_user_and_their_tokens(store: AuthStore) -> None:
    alice = await store.create_user(new_user("alice"), NOW)
    await start(store, alice.id, FAMILY, "h1")
    assert await store.delete_user(alice.id, NOW)
    assert await store.get_user(alice.id) is None
    rotation = await store.rotate_refresh_token("h1", "h2", b"sealed", NOW, 0)
    assert rotation.outcome is RotationOutcome.UNKNOWN
    assert not await store.delete_user(alice.id, NOW)


async def test_list_users_pages_by_lowercase_username(store: AuthStore) -> None:
    for name in ("bob", "Alice", "carol", "dave"):
        await store.create_user(new_user(name), NOW)
    first = await store.list_users(None, 2)
    assert [u.username for u in first] == ["Alice", "bob"]
    rest = await store.list_users("bob", 10)
    assert [u.username for u in rest] == ["carol", "dave"]


async def test_a_refresh_token_rotates_exactly_once_and_reuse_revokes_the_family(
    store: AuthStore,
) -> None:
    alice = await store.create_user(new_user("alice"), NOW)
    await start(store, alice.id, FAMILY, "h1")
    rotations = await asyncio.gather(
        *(store.rotate_refresh_token("h1", f"next{i}", b"sealed", NOW, 0) for i in range(8))
    )
    # One wins; the first loser detects the reuse and revokes, the others find it revoked.
    outcomes = sorted(r.outcome.value for r in rotations)
    assert outcomes == ["reused"] + ["revoked"] * 6 + ["rotated"]
    winner = next(i for i, r in enumerate(rotations) if r.outcome is RotationOutcome.ROTATED)
    assert rotations[winner].family_id == FAMILY
    assert rotations[winner].user_id == alice.id
    # The reuse came after the winner's successor was stored, and revoked it too.
    late = await store.rotate_refresh_token(f"next{winner}", "h3", b"sealed", NOW, 0)
    assert late.outcome is RotationOutcome.REVOKED


async def test_within_the_grace_window_the_same_successor_is_returned(store: AuthStore) -> None:
    alice = await store.create_user(new_user("alice"), NOW)
    await start(store, alice.id, FAMILY, "h1")
    first = await store.rotate_refresh_token("h1", "h2", b"sealed h2", NOW, 30)
    assert first.outcome is RotationOutcome.ROTATED
    again = await store.rotate_refresh_token(
        "h1", "other", b"sealed other", NOW + timedelta(seconds=5), 30
    )
    assert again.outcome is RotationOutcome.REPEATED
    assert again.successor_sealed == b"sealed h2"
    # Once the successor is used, the old token is a reuse even within the window.
    assert (await store.rotate_refresh_token("h2", "h3", b"sealed h3", NOW, 30)).outcome is (
        RotationOutcome.ROTATED
    )
    late = await store.rotate_refresh_token("h1", "h4", b"x", NOW + timedelta(seconds=6), 30)
    assert late.outcome is RotationOutcome.REUSED
    assert (await store.rotate_refresh_token("h3", "h5", b"x", NOW, 30)).outcome is (
        RotationOutcome.REVOKED
    )


async def test_after_the_grace_window_a_repeat_is_a_reuse(store: AuthStore) -> None:
    alice = await store.create_user(new_user("alice"), NOW)
    await start(store, alice.id, FAMILY, "h1")
    await store.rotate_refresh_token("h1", "h2", b"sealed", NOW, 30)
    late = await store.rotate_refresh_token("h1", "h3", b"x", NOW + timedelta(seconds=31), 30)
    assert late.outcome is RotationOutcome.REUSED


async def test_an_expired_family_does_not_rotate(store: AuthStore) -> None:
    alice = await store.create_user(new_user("alice"), NOW)
    await start(store, alice.id, FAMILY, "h1")
    late = await store.rotate_refresh_token("h1", "h2", b"x", NOW + timedelta(days=2), 30)
    assert late.outcome is RotationOutcome.EXPIRED


async def test_revoking_a_family_revokes_all_its_tokens(store: AuthStore) -> None:
    alice = await store.create_user(new_user("alice"), NOW)
    await start(store, alice.id, FAMILY, "a")
    await store.rotate_refresh_token("a", "b", b"x", NOW, 0)
    await start(store, alice.id, OTHER_FAMILY, "c")
    await store.revoke_family_of("a", NOW)
    assert (await store.rotate_refresh_token("b", "d", b"x", NOW, 0)).outcome is (
        RotationOutcome.REVOKED
    )
    assert (await store.rotate_refresh_token("c", "e", b"x", NOW, 0)).outcome is (
        RotationOutcome.ROTATED
    )


async def test_a_password_change_revokes_the_other_families(store: AuthStore) -> None:
    alice = await store.create_user(new_user("alice"), NOW)
    await start(store, alice.id, FAMILY, "a")
    await start(store, alice.id, OTHER_FAMILY, "b")
    changes = UserChanges(password_hash="$argon2id$new", revoke_families=True, keep_family=FAMILY)
    await store.update_user(alice.id, changes, NOW)
    assert (await store.rotate_refresh_token("a", "c", b"x", NOW, 0)).outcome is (
        RotationOutcome.ROTATED
    )
    assert (await store.rotate_refresh_token("b", "d", b"x", NOW, 0)).outcome is (
        RotationOutcome.REVOKED
    )
    everything = UserChanges(password_hash="$argon2id$newer", revoke_families=True)
    await store.update_user(alice.id, everything, NOW)
    assert (await store.rotate_refresh_token("c", "e", b"x", NOW, 0)).outcome is (
        RotationOutcome.REVOKED
    )


async def test_logging_out_everywhere_revokes_every_family_and_records_the_event(
    store: AuthStore,
) -> None:
    alice = await store.create_user(new_user("alice"), NOW)
    bob = await store.create_user(new_user("bob"), NOW)
    await start(store, alice.id, FAMILY, "a")
    await store.rotate_refresh_token("a", "b", b"x", NOW, 0)
    await start(store, alice.id, OTHER_FAMILY, "c")
    await start(store, bob.id, "55555555-5555-5555-5555-555555555555", "d")
    later = NOW + timedelta(minutes=1)
    assert not await store.log_out_everywhere("00000000-0000-0000-0000-000000000000", later)
    assert not await store.log_out_everywhere("not-a-uuid", later)
    assert await store.log_out_everywhere(alice.id, later)
    for token in ("b", "c"):
        rotation = await store.rotate_refresh_token(token, f"{token}2", b"x", later, 0)
        assert rotation.outcome is RotationOutcome.REVOKED
    assert (await store.rotate_refresh_token("d", "d2", b"x", later, 0)).outcome is (
        RotationOutcome.ROTATED
    )
    # A user without a login left still gets the event: access tokens may be out there.
    assert await store.log_out_everywhere(alice.id, later)
    kind = AccountEventKind.LOGGED_OUT_EVERYWHERE
    assert await store.account_events(0, 10) == [
        AccountEvent(1, alice.id, kind, later),
        AccountEvent(2, alice.id, kind, later),
    ]


async def log_out_everywhere(store: AuthStore, user_id: str) -> bool:
    return await store.log_out_everywhere(user_id, NOW)


async def reset_password(store: AuthStore, user_id: str) -> bool:
    changes = UserChanges(password_hash="$argon2id$new", revoke_families=True)
    return await store.update_user(user_id, changes, NOW) is not None


@pytest.mark.parametrize("revoke_all", [log_out_everywhere, reset_password])
async def test_rotations_at_the_moment_every_family_is_revoked_keep_no_token(
    store: AuthStore, revoke_all: Callable[[AuthStore, str], Awaitable[bool]]
) -> None:
    alice = await store.create_user(new_user("alice"), NOW)
    families = [f"{i:08d}-1111-1111-1111-111111111111" for i in range(6)]
    for i, family in enumerate(families):
        await start(store, alice.id, family, f"t{i}")
    barrier = asyncio.Barrier(len(families) + 1)

    async def rotate(i: int) -> RotationOutcome:
        await barrier.wait()
        return (await store.rotate_refresh_token(f"t{i}", f"s{i}", b"x", NOW, 0)).outcome

    async def revoke() -> bool:
        await barrier.wait()
        return await revoke_all(store, alice.id)

    revoked, *rotations = await asyncio.gather(revoke(), *(rotate(i) for i in range(len(families))))
    assert revoked
    assert set(rotations) <= {RotationOutcome.ROTATED, RotationOutcome.REVOKED}
    # Whichever came first, no first token and no successor rotates now (a successor that
    # was never stored is unknown).
    for i, outcome in enumerate(rotations):
        first = await store.rotate_refresh_token(f"t{i}", f"t{i}+", b"x", NOW, 0)
        successor = await store.rotate_refresh_token(f"s{i}", f"s{i}+", b"x", NOW, 0)
        assert first.outcome is RotationOutcome.REVOKED
        assert successor.outcome is (
            RotationOutcome.REVOKED
            if outcome is RotationOutcome.ROTATED
            else RotationOutcome.UNKNOWN
        )


async def test_a_user_is_read_with_whether_a_login_of_theirs_is_revoked(store: AuthStore) -> None:
    alice = await store.create_user(new_user("alice"), NOW)
    await start(store, alice.id, FAMILY, "a")
    await start(store, alice.id, OTHER_FAMILY, "b")
    assert await store.get_user_with_session(alice.id, FAMILY) == (alice, False)
    await store.revoke_family_of("a", NOW)
    assert await store.get_user_with_session(alice.id, FAMILY) == (alice, True)
    assert await store.get_user_with_session(alice.id, OTHER_FAMILY) == (alice, False)
    for unknown in ("", "not-a-uuid", "99999999-9999-9999-9999-999999999999"):
        assert await store.get_user_with_session(alice.id, unknown) == (alice, False)
    assert await store.get_user_with_session("00000000-0000-0000-0000-000000000000", FAMILY) is None
    assert await store.get_user_with_session("not-a-uuid", "") is None


async def test_login_attempts_are_reserved_atomically_within_their_limits(
    store: AuthStore,
) -> None:
    limits = [AttemptLimit("pair", 3), AttemptLimit("address", 10)]
    reservations = await asyncio.gather(
        *(store.reserve_login_attempt(limits, NOW, 60) for _ in range(10))
    )
    assert reservations.count(None) == 3
    waits = [wait for wait in reservations if wait is not None]
    assert all(59 <= wait <= 60 for wait in waits)
    # Refused attempts were not counted: the address has room for 7 more under another pair.
    others = [AttemptLimit("other pair", 100), AttemptLimit("address", 10)]
    again = [await store.reserve_login_attempt(others, NOW, 60) for _ in range(8)]
    assert again.count(None) == 7


async def test_a_released_attempt_gives_its_count_back(store: AuthStore) -> None:
    limits = [AttemptLimit("pair", 1), AttemptLimit("address", 2)]
    assert await store.reserve_login_attempt(limits, NOW, 60) is None
    assert await store.reserve_login_attempt(limits, NOW, 60) is not None
    await store.release_login_attempt(["address"], ["pair"])
    assert await store.reserve_login_attempt(limits, NOW, 60) is None
    assert await store.reserve_login_attempt(limits, NOW, 60) is not None


async def test_a_window_ends(store: AuthStore) -> None:
    limits = [AttemptLimit("pair", 1)]
    assert await store.reserve_login_attempt(limits, NOW, 60) is None
    later = NOW + timedelta(seconds=61)
    assert await store.reserve_login_attempt(limits, NOW + timedelta(seconds=30), 60) == 30
    assert await store.reserve_login_attempt(limits, later, 60) is None


async def test_text_is_stored_verbatim(store: AuthStore) -> None:
    email = "o'brien\"--;%s\\@example.org"
    created = await store.create_user(new_user("o.brien_-x", email), NOW)
    assert await store.get_user_by_username("O.BRIEN_-X") == created
    assert created.email == email
    assert await store.get_user_by_username("x' OR '1'='1") is None


async def count_login_records(database_url: str) -> int:
    """The rows of the failed-login table, read beside the store."""
    url = parse_database_url(database_url)
    if url.sqlite_path is not None:
        with contextlib.closing(sqlite3.connect(url.sqlite_path)) as conn:
            row = conn.execute("SELECT count(*) FROM login_failures").fetchone()
    else:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            cur = await conn.execute("SELECT count(*) FROM login_failures")
            row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_expired_login_records_are_pruned(database_url: str) -> None:
    store = await open_store(parse_database_url(database_url))
    try:
        for i in range(150):
            await store.reserve_login_attempt([AttemptLimit(f"spray {i}", 5)], NOW, 60)
        assert await count_login_records(database_url) == 150
        later = NOW + timedelta(seconds=61)
        for i in range(2):
            await store.reserve_login_attempt([AttemptLimit(f"later {i}", 5)], later, 60)
    finally:
        await store.close()
    # Two reservations pruned up to 100 expired records each, and added their own.
    assert await count_login_records(database_url) == 2


async def test_migrations_are_idempotent(database_url: str) -> None:
    """A restart opens the migrated database again: its schema and data stay as they were."""
    first = await open_store(parse_database_url(database_url))
    alice = await first.create_user(new_user("alice", "a@example.org"), NOW)
    await start(first, alice.id, "55555555-5555-5555-5555-555555555555", "h1")
    await first.reserve_login_attempt([AttemptLimit("bob", 1)], NOW, 60)
    await first.close()
    before = await snapshot(database_url)
    second = await open_store(parse_database_url(database_url))
    try:
        assert await second.get_user(alice.id) == alice
        assert await second.reserve_login_attempt([AttemptLimit("bob", 1)], NOW, 60) == 60
    finally:
        await second.close()
    assert await snapshot(database_url) == before


async def test_account_changes_record_their_events_in_the_same_step(store: AuthStore) -> None:
    alice = await store.create_user(new_user("alice", "a@example.org"), NOW)
    bob = await store.create_user(new_user("bob", "b@example.org"), NOW)
    assert (await store.account_events(0, 10), await store.last_account_event_seq()) == ([], 0)
    t1, t2, t3 = (NOW + timedelta(minutes=i) for i in (1, 2, 3))
    await store.update_user(alice.id, UserChanges(email="new@example.org"), t1)
    await store.update_user(alice.id, UserChanges(role=Role.USER), t1)
    await store.update_user(alice.id, UserChanges(role=Role.ADMIN), t1)
    await store.update_user(
        alice.id, UserChanges(password_hash="$new", revoke_families=True, keep_family=FAMILY), t2
    )
    # A change that fails records nothing.
    with pytest.raises(AlreadyExists):
        await store.update_user(bob.id, UserChanges(email="new@example.org", role=Role.ADMIN), t2)
    assert not await store.delete_user("00000000-0000-0000-0000-000000000000", t3)
    assert await store.delete_user(bob.id, t3)
    kinds = AccountEventKind
    assert await store.account_events(0, 10) == [
        AccountEvent(1, alice.id, kinds.ROLE_CHANGED, t1),
        AccountEvent(2, alice.id, kinds.PASSWORD_CHANGED, t2, FAMILY),
        AccountEvent(3, bob.id, kinds.DELETED, t3),
    ]
    assert [e.seq for e in await store.account_events(1, 1)] == [2]
    assert await store.account_events(3, 10) == []
    assert await store.last_account_event_seq() == 3


async def test_concurrent_changes_get_gapless_numbers(store: AuthStore) -> None:
    users = [await store.create_user(new_user(f"user{i}"), NOW) for i in range(8)]
    barrier = asyncio.Barrier(len(users))

    async def delete(user_id: str) -> None:
        await barrier.wait()
        assert await store.delete_user(user_id, NOW)

    await asyncio.gather(*(delete(u.id) for u in users))
    events = await store.account_events(0, 100)
    assert [e.seq for e in events] == list(range(1, len(users) + 1))
    assert {e.user_id for e in events} == {u.id for u in users}
