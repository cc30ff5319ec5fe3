"""Edits and deletions: who may make them, how they keep the message's seq and take the next
one, and how Connect streams carry them, live and on resume."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from meshchat_chat.domain import CaughtUp, Change, ChangeKind, Message, MessageBatch, StreamEvent
from meshchat_chat.service import ChatService
from meshchat_runtime.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from tests.support.callers import person
from tests.support.fakes import MemoryUserDirectory

WITHIN = 5.0


async def next_event(stream: AsyncGenerator[StreamEvent, None]) -> StreamEvent:
    return await asyncio.wait_for(anext(stream), WITHIN)


async def replay(stream: AsyncGenerator[StreamEvent, None]) -> tuple[list[int], int]:
    """The replayed seqs and CaughtUp's last_seq."""
    seqs: list[int] = []
    while not isinstance(event := await next_event(stream), CaughtUp):
        assert isinstance(event, MessageBatch), event
        seqs += [m.seq for m in event.messages]
    return seqs, event.last_seq


async def test_a_sender_edits_their_message_and_it_keeps_its_seq(
    chats: ChatService, directory: MemoryUserDirectory
) -> None:
    alice, bob = person(directory, "alice"), person(directory, "bob")
    chat = await chats.create_chat(alice, "edits", ["bob"])
    await chats.send_message(alice, chat.id, "helo", "")
    edited = await chats.edit_message(alice, chat.id, 1, "hello")
    assert (edited.seq, edited.text) == (1, "hello")
    assert edited.edited_at is not None
    again = await chats.edit_message(alice, chat.id, 1, "hello")
    assert again == edited
    page = await chats.list_messages(bob, chat.id, 10)
    assert page.messages == (edited,)
    assert (await chats.get_chat(bob, chat.id)).last_seq == 2
    with pytest.raises(PermissionDenied, match="only its sender may edit"):
        await chats.edit_message(bob, chat.id, 1, "mine now")
    with pytest.raises(NotFound, match="no message #2 in edits"):
        await chats.edit_message(alice, chat.id, 2, "the edit itself")
    with pytest.raises(InvalidArgument):
        await chats.edit_message(alice, chat.id, 1, "")
    with pytest.raises(InvalidArgument):
        await chats.edit_message(alice, chat.id, 0, "x")


async def test_the_sender_the_owner_or_an_admin_deletes(
    chats: ChatService, directory: MemoryUserDirectory
) -> None:
    alice, bob, carol = (person(directory, n) for n in ("alice", "bob", "carol"))
    root = person(directory, "root", admin=True)
    chat = await chats.create_chat(alice, "deletes", ["bob", "carol"])
    for sender in (bob, bob, alice, carol):
        await chats.send_message(sender, chat.id, "text", "")
    with pytest.raises(PermissionDenied, match="only its sender, the chat's owner or an admin"):
        await chats.delete_message(carol, chat.id, 1)
    with pytest.raises(PermissionDenied):
        await chats.delete_message(bob, chat.id, 3)
    deleted = await chats.delete_message(bob, chat.id, 1)
    assert (deleted.text, deleted.deleted_at is not None) == ("", True)
    assert (await chats.delete_message(alice, chat.id, 2)).deleted_at is not None
    assert (await chats.delete_message(root, chat.id, 4)).deleted_at is not None
    assert await chats.delete_message(bob, chat.id, 1) == deleted  # twice: nothing changes
    with pytest.raises(FailedPrecondition, match="was deleted"):
        await chats.edit_message(bob, chat.id, 1, "back")
    texts = [m.text for m in (await chats.list_messages(carol, chat.id, 10)).messages]
    assert texts == ["", "", "text", ""]


async def test_streams_carry_changes_live_and_on_resume(
    chats: ChatService, directory: MemoryUserDirectory
) -> None:
    alice, bob = person(directory, "alice"), person(directory, "bob")
    chat = await chats.create_chat(alice, "live changes", ["bob"])
    await chats.send_message(alice, chat.id, "one", "")
    await chats.send_message(alice, chat.id, "two", "")
    stream = chats.connect(bob, chat.id, 0)
    assert await replay(stream) == ([1, 2], 2)
    await chats.edit_message(alice, chat.id, 1, "one!")
    event = await next_event(stream)
    assert isinstance(event, MessageBatch)
    (change,) = event.messages
    assert isinstance(change, Change)
    assert (change.seq, change.kind, change.message.seq, change.message.text) == (
        3,
        ChangeKind.EDITED,
        1,
        "one!",
    )
    await stream.aclose()
    # Made while bob was away: his resume after the last seq he saw brings it, once.
    await chats.delete_message(alice, chat.id, 2)
    await chats.send_message(alice, chat.id, "three", "")
    resumed = chats.connect(bob, chat.id, 3)
    event = await next_event(resumed)
    assert isinstance(event, MessageBatch)
    deletion, three = event.messages
    assert isinstance(deletion, Change)
    assert (deletion.seq, deletion.kind, deletion.message.seq, deletion.message.text) == (
        4,
        ChangeKind.DELETED,
        2,
        "",
    )
    assert isinstance(three, Message)
    assert (three.seq, three.text) == (5, "three")
    await resumed.aclose()


async def test_a_replay_never_shows_a_deleted_text(
    chats: ChatService, directory: MemoryUserDirectory
) -> None:
    alice = person(directory, "alice")
    chat = await chats.create_chat(alice, "erased", [])
    await chats.send_message(alice, chat.id, "oops", "")
    await chats.edit_message(alice, chat.id, 1, "oops, again")
    await chats.delete_message(alice, chat.id, 1)
    stream = chats.connect(alice, chat.id, 0)
    event = await next_event(stream)
    assert isinstance(event, MessageBatch)
    shown = [e if isinstance(e, Message) else e.message for e in event.messages]
    assert [m.text for m in shown] == ["", "", ""]
    await stream.aclose()


async def test_a_retried_send_after_an_edit_returns_the_message_as_it_stands(
    chats: ChatService, directory: MemoryUserDirectory
) -> None:
    alice = person(directory, "alice")
    chat = await chats.create_chat(alice, "retries", [])
    await chats.send_message(alice, chat.id, "typo", "c-1")
    edited = await chats.edit_message(alice, chat.id, 1, "fixed")
    assert await chats.send_message(alice, chat.id, "typo", "c-1") == edited


async def test_a_stream_behind_a_deletion_never_gets_the_text(
    chats: ChatService, directory: MemoryUserDirectory
) -> None:
    alice, bob = person(directory, "alice"), person(directory, "bob")
    chat = await chats.create_chat(alice, "behind", ["bob"])
    stream = chats.connect(bob, chat.id, 0)
    assert await replay(stream) == ([], 0)
    # Sent and deleted before bob's stream takes anything from the chat's live log.
    await chats.send_message(alice, chat.id, "secret", "")
    await chats.delete_message(alice, chat.id, 1)
    entries: list[Message | Change] = []
    while len(entries) < 2:
        event = await next_event(stream)
        assert isinstance(event, MessageBatch)
        entries += event.messages
    message, deletion = entries
    assert isinstance(message, Message)
    assert (message.seq, message.text, message.deleted_at is not None) == (1, "", True)
    assert isinstance(deletion, Change)
    assert deletion.kind is ChangeKind.DELETED
    await stream.aclose()
