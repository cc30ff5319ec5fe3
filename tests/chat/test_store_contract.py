"""The Store contract, run against both backends (SQLite file and PostgreSQL database) and the
unit tier's in-memory fake, so that the fake cannot drift from them."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator

import pytest

from meshchat_chat.domain import Chat, ChatCursor, Member, NewMessage, SendOutcome, UserRef
from meshchat_chat.store import Store, open_store
from meshchat_runtime.errors import NotFound
from meshchat_runtime.settings import parse_database_url
from meshchat_runtime.timestamps import utc_now
from tests.support.backends import STORES, database_url_of
from tests.support.chats import message, new_chat
from tests.support.fakes import MemoryChatStore
from tests.support.schema import snapshot

ALICE = UserRef(str(uuid.uuid4()), "alice")
BOB = UserRef(str(uuid.uuid4()), "bob")
CAROL = UserRef(str(uuid.uuid4()), "carol")


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    opened: Store
    if request.param == "memory":
        opened = MemoryChatStore()
    else:
        opened = await open_store(parse_database_url(database_url_of(request, request.param)))
    try:
        yield opened
    finally:
        await opened.close()


async def test_migrations_are_idempotent(database_url: str) -> None:
    """A restart opens the migrated database again: its schema and data stay as they were."""
    first = await open_store(parse_database_url(database_url))
    chat = await new_chat(first, ALICE, BOB)
    sent = await first.send_message(message(chat, ALICE, "kept", "c-1"))
    await first.close()
    before = await snapshot(database_url)
    second = await open_store(parse_database_url(database_url))
    try:
        assert await second.get_chat(chat.id) == dataclasses.replace(chat, last_seq=1)
        assert await second.messages_after(chat.id, 0, 10) == [sent.message]
    finally:
        await second.close()
    assert await snapshot(database_url) == before


async def test_create_and_get_chat_round_trips(store: Store) -> None:
    chat = await new_chat(store, ALICE, BOB, name='Robert\'); DROP TABLE chats;-- "x" %s')
    loaded = await store.get_chat(chat.id)
    assert loaded == chat
    assert loaded.member(BOB.user_id) is not None
    assert loaded.member_named("carol") is None
    assert await store.get_chat(str(uuid.uuid4())) is None


async def test_list_chats_pages_newest_first(store: Store) -> None:
    chats = [await new_chat(store, ALICE, BOB, name=f"c{i}", age=10 - i) for i in range(5)]
    await new_chat(store, CAROL, name="not alice's")
    page1 = await store.list_chats(ALICE.user_id, 2, None)
    assert [c.name for c in page1] == ["c4", "c3"]
    cursor = ChatCursor(page1[-1].created_at, page1[-1].id)
    page2 = await store.list_chats(ALICE.user_id, 10, cursor)
    assert [c.name for c in page2] == ["c2", "c1", "c0"]
    assert page2[0].members == chats[2].members
    assert await store.list_chats(str(uuid.uuid4()), 10, None) == []


async def test_messages_are_numbered_without_gaps_under_concurrency(store: Store) -> None:
    chat = await new_chat(store, ALICE, BOB)
    results = await asyncio.gather(
        *(store.send_message(message(chat, ALICE if i % 2 else BOB, f"m{i}")) for i in range(40))
    )
    assert all(r.outcome is SendOutcome.CREATED for r in results)
    assert sorted(r.message.seq for r in results if r.message) == list(range(1, 41))
    assert await store.last_seq(chat.id) == 40
    stored = await store.messages_after(chat.id, 0, 100)
    assert [m.seq for m in stored] == list(range(1, 41))
    by_seq = {r.message.seq: r.message for r in results if r.message}
    assert stored == [by_seq[m.seq] for m in stored]


async def test_client_message_id_makes_a_send_idempotent(store: Store) -> None:
    chat = await new_chat(store, ALICE, BOB)
    first = await store.send_message(message(chat, ALICE, "original", "c-1"))
    retry = await store.send_message(message(chat, ALICE, "changed on retry", "c-1"))
    assert first.outcome is SendOutcome.CREATED
    assert retry.outcome is SendOutcome.DUPLICATE
    assert retry.message == first.message
    other_sender = await store.send_message(message(chat, BOB, "bob's", "c-1"))
    no_id_1 = await store.send_message(message(chat, ALICE, "same"))
    no_id_2 = await store.send_message(message(chat, ALICE, "same"))
    assert other_sender.outcome is SendOutcome.CREATED
    assert [r.message.seq for r in (other_sender, no_id_1, no_id_2) if r.message] == [2, 3, 4]
    assert await store.last_seq(chat.id) == 4


async def test_concurrent_retries_store_one_message(store: Store) -> None:
    chat = await new_chat(store, ALICE)
    results = await asyncio.gather(
        *(store.send_message(message(chat, ALICE, f"try {i}", "same-id")) for i in range(10))
    )
    assert [r.outcome for r in results].count(SendOutcome.CREATED) == 1
    assert {r.message for r in results} == {results[0].message}
    assert await store.last_seq(chat.id) == 1
    assert len(await store.messages_after(chat.id, 0, 100)) == 1


async def test_non_members_and_missing_chats_store_nothing(store: Store) -> None:
    chat = await new_chat(store, ALICE)
    assert (await store.send_message(message(chat, BOB))).outcome is SendOutcome.NOT_MEMBER
    missing = NewMessage(str(uuid.uuid4()), ALICE, "x", "", utc_now())
    assert (await store.send_message(missing)).outcome is SendOutcome.NO_CHAT
    assert await store.last_seq(chat.id) == 0
    assert await store.messages_after(chat.id, 0, 10) == []
    assert await store.last_seq(missing.chat_id) is None


async def test_history_pages_in_both_directions(store: Store) -> None:
    chat = await new_chat(store, ALICE)
    for i in range(1, 11):
        await store.send_message(message(chat, ALICE, f"m{i}"))
    assert [m.seq for m in await store.messages_before(chat.id, None, 3)] == [8, 9, 10]
    assert [m.seq for m in await store.messages_before(chat.id, 8, 3)] == [5, 6, 7]
    assert [m.seq for m in await store.messages_before(chat.id, 2, 3)] == [1]
    assert [m.seq for m in await store.messages_after(chat.id, 0, 3)] == [1, 2, 3]
    assert [m.seq for m in await store.messages_after(chat.id, 8, 3)] == [9, 10]
    assert await store.messages_after(chat.id, 10, 3) == []


async def test_members_come_and_go(store: Store) -> None:
    chat = await new_chat(store, ALICE)
    joined = Member(BOB.user_id, BOB.username, utc_now())
    assert await store.add_member(chat.id, joined)
    assert not await store.add_member(chat.id, joined)
    loaded = await store.get_chat(chat.id)
    assert loaded is not None
    assert loaded.member(BOB.user_id) == joined
    assert await store.remove_member(chat.id, BOB.user_id)
    assert not await store.remove_member(chat.id, BOB.user_id)
    loaded = await store.get_chat(chat.id)
    assert loaded is not None
    assert [m.username for m in loaded.members] == ["alice"]
    with pytest.raises(NotFound):
        await store.add_member(str(uuid.uuid4()), joined)


async def test_delete_chat_removes_members_and_messages(store: Store) -> None:
    chat = await new_chat(store, ALICE, BOB)
    await store.send_message(message(chat, ALICE, "bye", "k"))
    assert await store.delete_chat(chat.id)
    assert not await store.delete_chat(chat.id)
    assert await store.get_chat(chat.id) is None
    assert await store.messages_after(chat.id, 0, 10) == []
    assert await store.list_chats(BOB.user_id, 10, None) == []


async def test_text_is_stored_verbatim(store: Store) -> None:
    chat = await new_chat(store, ALICE)
    text = "'; DELETE FROM messages; -- %s %(x)s \\ \" \u00e9\u4e2d\U0001f600"
    sent = await store.send_message(message(chat, ALICE, text, "\u00e9'\"%"))
    assert sent.message is not None
    assert (await store.messages_after(chat.id, 0, 1))[0] == sent.message
    assert sent.message.text == text


async def test_ping(store: Store) -> None:
    assert await store.ping()


async def test_members_joined_together_come_in_code_point_order(store: Store) -> None:
    now = utc_now()
    names = ["alice", "Zed", "Bob", "\u00e9mile"]
    chat = Chat(
        id=str(uuid.uuid4()),
        name="order",
        owner_id="owner",
        created_at=now,
        last_seq=0,
        members=tuple(Member(str(uuid.uuid4()), n, now) for n in names),
    )
    await store.create_chat(chat)
    loaded = await store.get_chat(chat.id)
    assert loaded is not None
    assert [m.username for m in loaded.members] == sorted(names)
