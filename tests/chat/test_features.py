"""Edits, deletions, read positions and departures over the wire, on both backends; and
across two replicas on PostgreSQL. The rules are tested in tests/unit/chat."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from meshchat.chat.v1 import chat_pb2, chat_pb2_grpc
from tests.support.people import People, Person, Stream, entries
from tests.support.rpc import status_of
from tests.support.stack import RunningAuth, start_chat

EDITED = chat_pb2.MessageChange.KIND_EDITED
DELETED = chat_pb2.MessageChange.KIND_DELETED


async def test_edits_and_deletions_reach_open_streams_and_resumes(people: People) -> None:
    alice, bob = await people("alice"), await people("bob")
    room = await alice.create_chat("general", "bob")
    await alice.send(room.id, "helo")
    await bob.send(room.id, "hi")
    stream = Stream(bob.connect(room.id))
    assert [m.seq for m in (await stream.replay())[0]] == [1, 2]

    edited = await alice.edit(room.id, 1, "hello")
    assert (edited.seq, edited.text, edited.HasField("edit_time")) == (1, "hello", True)
    (change,) = await stream.entries(1)
    assert isinstance(change, chat_pb2.MessageChange)
    assert (change.seq, change.kind, change.message.text) == (3, EDITED, "hello")
    assert change.actor_username == "alice"
    stream.cancel()

    # Made while bob was away: a resume after the last seq he saw brings it.
    deleted = await bob.delete_message(room.id, 2)
    assert (deleted.text, deleted.HasField("delete_time")) == ("", True)
    resumed = Stream(bob.connect(room.id, after_seq=3))
    (deletion,) = entries(await resumed.event())
    assert isinstance(deletion, chat_pb2.MessageChange)
    assert (deletion.seq, deletion.kind, deletion.message.seq) == (4, DELETED, 2)
    assert (await resumed.event()).caught_up.last_seq == 4
    resumed.cancel()
    page = await bob.history(room.id)
    assert [
        (m.seq, m.text, m.HasField("edit_time"), m.HasField("delete_time")) for m in page.messages
    ] == [
        (1, "hello", True, False),
        (2, "", False, True),
    ]
    code, details = await status_of(alice.edit(room.id, 2, "not mine"))
    assert (code, details) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "only its sender may edit a message",
    )
    code, _ = await status_of(alice.edit(room.id, 3, "a change"))
    assert code == grpc.StatusCode.NOT_FOUND


async def test_a_resume_replays_changes_in_their_place(people: People) -> None:
    alice = await people("alice")
    room = await alice.create_chat("solo")
    await alice.send(room.id, "one")
    await alice.edit(room.id, 1, "one!")
    await alice.send(room.id, "two")
    stream = Stream(alice.connect(room.id, after_seq=1))
    found = await stream.entries(2)
    assert [(type(e).__name__, e.seq) for e in found] == [("MessageChange", 2), ("Message", 3)]
    stream.cancel()


async def test_read_positions_and_unread_counts(people: People) -> None:
    alice, bob = await people("alice"), await people("bob")
    room = await alice.create_chat("general", "bob")
    for text in ("a", "b", "c"):
        await alice.send(room.id, text)
    chat = await bob.get_chat(room.id)
    assert (chat.read_seq, chat.unread_count, chat.HasField("last_message_time")) == (0, 3, True)
    state = await bob.mark_read(room.id, 2)
    assert (state.read_seq, state.unread_count) == (2, 1)
    assert (await bob.mark_read(room.id, 1)).read_seq == 2
    listed = (await bob.list_chats()).chats
    assert [(c.id, c.read_seq, c.unread_count) for c in listed] == [(room.id, 2, 1)]
    assert (await bob.mark_read(room.id)).read_seq == 3
    code, _ = await status_of(bob.mark_read(room.id, 9))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_removed_and_the_deleted_are_told_so(people: People) -> None:
    alice, bob = await people("alice"), await people("bob")
    room = await alice.create_chat("general", "bob")
    stream = Stream(bob.connect(room.id))
    await stream.replay()
    await alice.remove_member(room.id, "bob")
    assert await stream.status() == (
        grpc.StatusCode.PERMISSION_DENIED,
        "you were removed from general by alice",
    )
    assert await status_of(bob.send(room.id, "hello?")) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "you were removed from general by alice",
    )
    await alice.add_member(room.id, "bob")
    await alice.delete_chat(room.id)
    assert await status_of(bob.get_chat(room.id)) == (
        grpc.StatusCode.NOT_FOUND,
        "general was deleted by alice",
    )


def _on(person: Person, channel: grpc.aio.Channel) -> Person:
    return Person(
        person.username, person.user_id, person.access_token, chat_pb2_grpc.ChatServiceStub(channel)
    )


@pytest.mark.postgres
async def test_changes_and_read_positions_across_replicas(
    tmp_path: Path, auth: RunningAuth, postgres_url: str
) -> None:
    first = await start_chat(tmp_path / "a", auth, postgres_url)
    second = await start_chat(tmp_path / "b", auth, postgres_url)
    try:
        async with auth.channel() as auth_ch, first.channel() as ch_a, second.channel() as ch_b:
            people = People(auth, auth_ch, ch_a)
            alice, bob = await people("alice"), await people("bob")
            room = await alice.create_chat("replicated", "bob")
            bob_b = _on(bob, ch_b)
            stream = Stream(bob_b.connect(room.id))
            await stream.replay()
            await alice.send(room.id, "draft")
            await alice.edit(room.id, 1, "final")
            await alice.send(room.id, "more")
            await alice.delete_message(room.id, 3)
            found = await stream.entries(4)
            assert [e.seq for e in found] == [1, 2, 3, 4]
            assert isinstance(found[1], chat_pb2.MessageChange)
            assert found[1].message.text == "final"
            assert isinstance(found[3], chat_pb2.MessageChange)
            assert (found[3].kind, found[3].message.text) == (DELETED, "")
            stream.cancel()
            assert (await bob_b.mark_read(room.id, 2)).read_seq == 2
            assert (await bob.get_chat(room.id)).read_seq == 2
            await alice.remove_member(room.id, "bob")
            assert await status_of(bob_b.get_chat(room.id)) == (
                grpc.StatusCode.PERMISSION_DENIED,
                "you were removed from replicated by alice",
            )
    finally:
        await first.stop()
        await second.stop()
