"""The Store contract, run against both backends (SQLite file and PostgreSQL database) and the
unit tier's in-memory fake, so that the fake cannot drift from them."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from meshchat_chat.domain import (
    AccountChange,
    AddOutcome,
    AppliedChange,
    Change,
    ChangeKind,
    ChangeOutcome,
    Chat,
    ChatCursor,
    Departure,
    DepartureReason,
    KeySet,
    Member,
    Message,
    NewChange,
    NewMessage,
    Revocation,
    SendOutcome,
    UserRef,
)
from meshchat_chat.store import Store, open_store
from meshchat_runtime.errors import NotFound
from meshchat_runtime.settings import parse_database_url
from meshchat_runtime.timestamps import utc_now
from tests.support.backends import STORES, database_url_of
from tests.support.chats import UNLIMITED, message, new_chat
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


async def test_concurrent_sends_of_members_strangers_and_retries_each_get_their_answer(
    store: Store,
) -> None:
    chat = await new_chat(store, ALICE, BOB)
    # The sends land at once: on PostgreSQL they share transactions.
    calls = [message(chat, ALICE, f"a{i}") for i in range(20)]
    calls += [message(chat, CAROL, "stranger")] * 3
    calls += [message(chat, BOB, f"retry {i}", "b-1") for i in range(5)]
    calls += [message(chat, BOB, f"b{i}") for i in range(20)]
    results = await asyncio.gather(*(store.send_message(m) for m in calls))
    assert [r.outcome for r in results[20:23]] == [SendOutcome.NOT_MEMBER] * 3
    retries = results[23:28]
    assert len({r.message for r in retries}) == 1
    assert [r.outcome for r in retries].count(SendOutcome.CREATED) == 1
    created = [r.message for r in results if r.outcome is SendOutcome.CREATED and r.message]
    assert sorted(m.seq for m in created) == list(range(1, 42))
    # Each sender's sends are numbered in the order they were made.
    for prefix in ("a", "b"):
        mine = [m for m in created if m.text.startswith(prefix) and m.text[1:].isdigit()]
        assert [m.text for m in sorted(mine, key=lambda m: m.seq)] == [
            f"{prefix}{i}" for i in range(20)
        ]
    assert await store.messages_after(chat.id, 0, 100) == sorted(created, key=lambda m: m.seq)


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
    assert await store.add_member(chat.id, joined, UNLIMITED) is AddOutcome.ADDED
    assert await store.add_member(chat.id, joined, UNLIMITED) is AddOutcome.ALREADY_MEMBER
    loaded = await store.get_chat(chat.id)
    assert loaded is not None
    assert loaded.member(BOB.user_id) == joined
    assert await store.remove_member(_departure(chat, BOB, DepartureReason.REMOVED))
    assert not await store.remove_member(_departure(chat, BOB, DepartureReason.REMOVED))
    loaded = await store.get_chat(chat.id)
    assert loaded is not None
    assert [m.username for m in loaded.members] == ["alice"]
    with pytest.raises(NotFound):
        await store.add_member(str(uuid.uuid4()), joined, UNLIMITED)


async def test_delete_chat_removes_members_and_messages(store: Store) -> None:
    chat = await new_chat(store, ALICE, BOB)
    await store.send_message(message(chat, ALICE, "bye", "k"))
    assert await store.delete_chat(chat.id, "alice", utc_now())
    assert not await store.delete_chat(chat.id, "alice", utc_now())
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
    assert await store.create_chat(chat, max_owned=UNLIMITED)
    loaded = await store.get_chat(chat.id)
    assert loaded is not None
    assert [m.username for m in loaded.members] == sorted(names)


def _departure(chat: Chat, user: UserRef, reason: DepartureReason) -> Departure:
    return Departure(chat.id, user.user_id, chat.name, reason, "alice", utc_now())


def _edit(chat: Chat, seq: int, text: str, actor: UserRef = ALICE) -> NewChange:
    return NewChange(chat.id, seq, ChangeKind.EDITED, actor, utc_now(), text)


def _delete(chat: Chat, seq: int, actor: UserRef = ALICE) -> NewChange:
    return NewChange(chat.id, seq, ChangeKind.DELETED, actor, utc_now())


async def test_changes_take_the_next_seq_and_keep_the_message_s(store: Store) -> None:
    chat = await new_chat(store, ALICE, BOB)
    await store.send_message(message(chat, ALICE, "helo", "c-1"))
    await store.send_message(message(chat, BOB, "hi"))
    edited = await store.change_message(_edit(chat, 1, "hello"))
    assert edited.outcome is ChangeOutcome.CHANGED
    assert edited.change is not None
    assert edited.message is not None
    assert (edited.change.seq, edited.message.seq, edited.message.text) == (3, 1, "hello")
    assert edited.message.edited_at is not None
    assert await store.last_seq(chat.id) == 3
    # History lists the messages as they stand; the log has the changes in their places.
    assert [(m.seq, m.text) for m in await store.messages_before(chat.id, None, 10)] == [
        (1, "hello"),
        (2, "hi"),
    ]
    assert [m.seq for m in await store.messages_after(chat.id, 0, 10)] == [1, 2]
    log = await store.log_after(chat.id, 0, 10)
    assert [e.seq for e in log] == [1, 2, 3]
    assert log[0] == edited.message
    assert log[2] == edited.change
    # The same text again, and a seq that is a change, change nothing.
    same = await store.change_message(_edit(chat, 1, "hello"))
    assert same.outcome is ChangeOutcome.UNCHANGED
    assert (await store.change_message(_edit(chat, 3, "x"))).outcome is ChangeOutcome.NO_MESSAGE
    assert (await store.change_message(_edit(chat, 9, "x"))).outcome is ChangeOutcome.NO_MESSAGE
    assert await store.last_seq(chat.id) == 3
    # The idempotency key still finds the first message, as it stands.
    retry = await store.send_message(message(chat, ALICE, "helo", "c-1"))
    assert retry.outcome is SendOutcome.DUPLICATE
    assert retry.message == edited.message


async def test_a_deletion_erases_the_text_everywhere(store: Store) -> None:
    chat = await new_chat(store, ALICE, BOB)
    await store.send_message(message(chat, BOB, "secret"))
    await store.change_message(_edit(chat, 1, "secret, edited", BOB))
    deleted = await store.change_message(_delete(chat, 1, ALICE))
    assert deleted.outcome is ChangeOutcome.CHANGED
    assert deleted.change is not None
    assert deleted.change.actor == ALICE
    assert deleted.change.seq == 3
    assert deleted.message is not None
    assert deleted.message.deleted_at is not None
    log = await store.log_after(chat.id, 0, 10)
    assert [e.seq for e in log] == [1, 2, 3]
    messages = [e if isinstance(e, Message) else e.message for e in log]
    assert [m.text for m in messages] == ["", "", ""]
    assert all(m.deleted_at is not None for m in messages)
    assert [e.kind for e in log if isinstance(e, Change)] == [
        ChangeKind.EDITED,
        ChangeKind.DELETED,
    ]
    assert await store.get_message(chat.id, 1) == deleted.message
    again = await store.change_message(_delete(chat, 1))
    assert again.outcome is ChangeOutcome.UNCHANGED
    late_edit = await store.change_message(_edit(chat, 1, "back", BOB))
    assert late_edit.outcome is ChangeOutcome.DELETED
    assert await store.last_seq(chat.id) == 3


async def test_concurrent_sends_and_changes_number_without_gaps(store: Store) -> None:
    chat = await new_chat(store, ALICE, BOB)
    for i in range(5):
        await store.send_message(message(chat, ALICE, f"m{i}"))
    barrier = asyncio.Barrier(12)

    async def send(i: int) -> None:
        await barrier.wait()
        await store.send_message(message(chat, BOB, f"n{i}"))

    async def edit(seq: int) -> None:
        await barrier.wait()
        await store.change_message(_edit(chat, seq, f"edited {seq}"))

    async def delete(seq: int) -> None:
        await barrier.wait()
        await store.change_message(_delete(chat, seq))

    await asyncio.gather(
        *(send(i) for i in range(5)), *(edit(s) for s in range(1, 6)), *(delete(s) for s in (1, 2))
    )
    # Ten seqs besides the five first ones at least, and none missing or doubled.
    log = await store.log_after(chat.id, 0, 100)
    assert [e.seq for e in log] == list(range(1, len(log) + 1))
    assert await store.last_seq(chat.id) == len(log)
    assert sum(isinstance(e, Message) for e in log) == 10
    for seq in (1, 2):
        assert await store.get_message(chat.id, seq) is not None
        assert (await store.get_message(chat.id, seq)).text == ""  # type: ignore[union-attr]


async def test_the_read_position_only_moves_forward(store: Store) -> None:
    chat = await new_chat(store, ALICE, BOB)
    for i in range(30):
        await store.send_message(message(chat, ALICE, f"m{i}"))
    barrier = asyncio.Barrier(30)

    async def mark(seq: int) -> int | None:
        await barrier.wait()
        return await store.mark_read(chat.id, BOB.user_id, seq)

    seqs = range(30, 0, -1)
    answers = await asyncio.gather(*(mark(seq) for seq in seqs))
    assert all(a is not None and a >= seq for a, seq in zip(answers, seqs, strict=True))
    assert await store.mark_read(chat.id, BOB.user_id, 3) == 30
    assert await store.mark_read(chat.id, CAROL.user_id, 3) is None
    states = await store.read_states(BOB.user_id, [chat.id])
    assert states[chat.id].read_seq == 30


async def test_read_states_count_the_unread_messages_of_others(store: Store) -> None:
    chat = await new_chat(store, ALICE, BOB)
    other = await new_chat(store, CAROL)
    assert (await store.read_states(BOB.user_id, [chat.id]))[chat.id].last_message_at is None
    for text in ("a", "b", "c"):
        await store.send_message(message(chat, ALICE, text))
    sent = await store.send_message(message(chat, BOB, "mine"))
    await store.change_message(_delete(chat, 2))
    await store.change_message(_edit(chat, 3, "c!"))
    states = await store.read_states(BOB.user_id, [chat.id, other.id, str(uuid.uuid4())])
    assert set(states) == {chat.id}
    assert sent.message is not None
    assert (states[chat.id].read_seq, states[chat.id].unread_count) == (0, 2)
    assert states[chat.id].last_message_at == sent.message.created_at
    await store.mark_read(chat.id, BOB.user_id, 1)
    assert (await store.read_states(BOB.user_id, [chat.id]))[chat.id].unread_count == 1
    alice = (await store.read_states(ALICE.user_id, [chat.id]))[chat.id]
    assert alice.unread_count == 1
    assert await store.read_states(BOB.user_id, []) == {}


async def test_departures_are_kept_until_the_user_comes_back(store: Store) -> None:
    chat = await new_chat(store, ALICE, BOB, CAROL)
    assert await store.departure(chat.id, BOB.user_id) is None
    removed = _departure(chat, BOB, DepartureReason.REMOVED)
    assert await store.remove_member(removed)
    assert await store.departure(chat.id, BOB.user_id) == removed
    joined = Member(BOB.user_id, BOB.username, utc_now())
    assert await store.add_member(chat.id, joined, UNLIMITED) is AddOutcome.ADDED
    assert await store.departure(chat.id, BOB.user_id) is None
    when = utc_now()
    assert await store.delete_chat(chat.id, "alice", when)
    for user in (ALICE, BOB, CAROL):
        assert await store.departure(chat.id, user.user_id) == Departure(
            chat.id, user.user_id, "general", DepartureReason.CHAT_DELETED, "alice", when
        )


def deletion(seq: int, user: UserRef) -> AccountChange:
    return AccountChange(seq, Revocation(user.user_id, utc_now(), deleted=True))


async def test_a_deleted_user_leaves_every_chat_and_hands_over_ownership(store: Store) -> None:
    dave = UserRef(str(uuid.uuid4()), "dave")
    # Members join in the order given: the earliest remaining one inherits.
    shared = await new_chat(store, ALICE, BOB, CAROL)
    tie = await new_chat(store, ALICE, CAROL, BOB)
    alone = await new_chat(store, ALICE)
    member = await new_chat(store, dave, ALICE)
    untouched = await new_chat(store, BOB, CAROL)
    await store.send_message(message(shared, ALICE, "kept"))
    applied = await store.apply_account_change(deletion(7, ALICE))
    assert applied == AppliedChange(tuple(sorted([shared.id, tie.id, member.id])), (alone.id,))
    handed = await store.get_chat(shared.id)
    assert handed is not None
    assert (handed.owner_id, [m.username for m in handed.members]) == (
        BOB.user_id,
        ["bob", "carol"],
    )
    tied = await store.get_chat(tie.id)
    assert tied is not None
    assert tied.owner_id == CAROL.user_id
    assert await store.get_chat(alone.id) is None
    kept = await store.get_chat(member.id)
    assert kept is not None
    assert (kept.owner_id, len(kept.members)) == (dave.user_id, 1)
    assert await store.get_chat(untouched.id) == untouched
    assert await store.list_chats(ALICE.user_id, 10, None) == []
    assert [m.sender_username for m in await store.messages_after(shared.id, 0, 10)] == ["alice"]
    # Applying it again (another replica, a resumed stream) changes nothing.
    assert await store.apply_account_change(deletion(7, ALICE)) == AppliedChange()
    assert await store.account_event_position() == 7


async def test_revocations_merge_per_user_and_the_position_never_goes_back(
    store: Store,
) -> None:
    assert (await store.revocations(), await store.account_event_position()) == ([], 0)
    early = utc_now()
    late = early + timedelta(seconds=1)
    first = Revocation(ALICE.user_id, early, kept_session_id="s1")
    await store.apply_account_change(AccountChange(3, first))
    assert await store.apply_account_change(AccountChange(2, Revocation(BOB.user_id, early))) == (
        AppliedChange()
    )
    assert await store.account_event_position() == 3
    later = Revocation(ALICE.user_id, late)
    await store.apply_account_change(AccountChange(4, later))
    by_user = {r.user_id: r for r in await store.revocations()}
    assert by_user == {
        ALICE.user_id: first.merged(later),
        BOB.user_id: Revocation(BOB.user_id, early),
    }
    assert await store.account_event_position() == 4


def chat_of(owner: UserRef, name: str) -> Chat:
    now = utc_now()
    return Chat(
        str(uuid.uuid4()),
        name,
        owner.user_id,
        now,
        0,
        (Member(owner.user_id, owner.username, now),),
    )


async def test_concurrent_creations_never_pass_the_owners_quota(store: Store) -> None:
    await new_chat(store, BOB)
    created = await asyncio.gather(
        *(store.create_chat(chat_of(ALICE, f"c{i}"), max_owned=3) for i in range(12))
    )
    assert sorted(created) == [False] * 9 + [True] * 3
    assert len(await store.list_chats(ALICE.user_id, 100, None)) == 3
    assert await store.create_chat(chat_of(BOB, "bob's second"), max_owned=3)


async def test_concurrent_additions_never_pass_the_member_limit(store: Store) -> None:
    chat = await new_chat(store, ALICE)
    now = utc_now()
    joining = [Member(str(uuid.uuid4()), f"user{i}", now) for i in range(12)]
    outcomes = await asyncio.gather(*(store.add_member(chat.id, m, 4) for m in joining))
    assert sorted(o.value for o in outcomes) == ["added"] * 3 + ["chat_full"] * 9
    loaded = await store.get_chat(chat.id)
    assert loaded is not None
    assert len(loaded.members) == 4
    assert await store.add_member(chat.id, loaded.members[1], 4) is AddOutcome.ALREADY_MEMBER


async def test_replicas_applying_the_same_event_at_once_agree(store: Store) -> None:
    # Every replica applies every event, and they share the database.
    room = await new_chat(store, ALICE, BOB, CAROL)
    barrier = asyncio.Barrier(4)

    async def apply() -> AppliedChange:
        await barrier.wait()
        return await store.apply_account_change(deletion(5, ALICE))

    outcomes = await asyncio.gather(*(apply() for _ in range(4)))
    # One of them made the change; the others found it made.
    assert sorted(outcomes, key=lambda applied: applied.changed_chats) == [
        *([AppliedChange()] * 3),
        AppliedChange((room.id,)),
    ]
    handed = await store.get_chat(room.id)
    assert handed is not None
    assert (handed.owner_id, [m.username for m in handed.members]) == (
        BOB.user_id,
        ["bob", "carol"],
    )
    assert [r.user_id for r in await store.revocations()] == [ALICE.user_id]
    assert await store.account_event_position() == 5


async def test_the_key_set_kept_is_the_one_fetched_last(store: Store) -> None:
    assert await store.load_key_set() is None
    now = utc_now()
    older = KeySet('{"keys": [{"kid": "a"}]}', now - timedelta(minutes=5))
    newer = KeySet('{"keys": [{"kid": "b"}]}', now)
    await store.save_key_set(newer)
    await store.save_key_set(older)  # a slower replica's fetch, which came in late
    assert await store.load_key_set() == newer
