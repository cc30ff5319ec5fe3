"""Read positions and unread counts, and being told why a chat can no longer be read."""

from __future__ import annotations

import asyncio

import pytest

from meshchat_chat.service import ChatService
from meshchat_runtime.errors import InvalidArgument, NotFound, PermissionDenied
from tests.support.callers import person
from tests.support.fakes import MemoryUserDirectory


async def test_mark_read_moves_forward_only_and_counts_the_unread(
    chats: ChatService, directory: MemoryUserDirectory
) -> None:
    alice, bob = person(directory, "alice"), person(directory, "bob")
    chat = await chats.create_chat(alice, "reads", ["bob"])
    for i in range(4):
        await chats.send_message(alice, chat.id, f"m{i}", "")
    await chats.send_message(bob, chat.id, "mine", "")
    _, state = await chats.get_chat_and_read_state(bob, chat.id)
    assert state is not None
    assert (state.read_seq, state.unread_count) == (0, 4)
    assert (await chats.mark_read(bob, chat.id, 3)).unread_count == 1
    assert (await chats.mark_read(bob, chat.id, 1)).read_seq == 3
    everything = await chats.mark_read(bob, chat.id, 0)
    assert (everything.read_seq, everything.unread_count) == (5, 0)
    with pytest.raises(InvalidArgument, match="beyond"):
        await chats.mark_read(bob, chat.id, 6)
    with pytest.raises(InvalidArgument):
        await chats.mark_read(bob, chat.id, -1)
    page = await chats.list_chats(alice, 10, "")
    assert page.read_states[chat.id].unread_count == 1


async def test_concurrent_marks_keep_the_largest(
    chats: ChatService, directory: MemoryUserDirectory
) -> None:
    alice = person(directory, "alice")
    chat = await chats.create_chat(alice, "race", [])
    for i in range(20):
        await chats.send_message(alice, chat.id, f"m{i}", "")
    barrier = asyncio.Barrier(20)

    async def mark(seq: int) -> None:
        await barrier.wait()
        await chats.mark_read(alice, chat.id, seq)

    await asyncio.gather(*(mark(seq) for seq in range(20, 0, -1)))
    _, state = await chats.get_chat_and_read_state(alice, chat.id)
    assert state is not None
    assert state.read_seq == 20


async def test_an_admin_who_is_no_member_has_no_read_position(
    chats: ChatService, directory: MemoryUserDirectory
) -> None:
    alice, root = person(directory, "alice"), person(directory, "root", admin=True)
    chat = await chats.create_chat(alice, "watched", [])
    assert (await chats.get_chat_and_read_state(root, chat.id))[1] is None
    with pytest.raises(PermissionDenied):
        await chats.mark_read(root, chat.id, 0)


async def test_the_removed_and_the_deleted_are_told_so(
    chats: ChatService, directory: MemoryUserDirectory
) -> None:
    alice, bob, carol = (person(directory, n) for n in ("alice", "bob", "carol"))
    chat = await chats.create_chat(alice, "general", ["bob", "carol"])
    await chats.remove_member(alice, chat.id, "bob")
    with pytest.raises(PermissionDenied, match=r"^you were removed from general by alice$"):
        await chats.get_chat(bob, chat.id)
    with pytest.raises(PermissionDenied, match=r"^you were removed from general by alice$"):
        await chats.send_message(bob, chat.id, "still here?", "")
    await chats.remove_member(carol, chat.id, "carol")
    with pytest.raises(PermissionDenied, match=r"^you left general$"):
        await chats.list_messages(carol, chat.id, 10)
    await chats.add_member(alice, chat.id, "bob")
    await chats.get_chat(bob, chat.id)
    await chats.delete_chat(alice, chat.id)
    with pytest.raises(NotFound, match=r"^general was deleted by alice$"):
        await chats.get_chat(bob, chat.id)
    with pytest.raises(NotFound, match=r"^general was deleted by alice$"):
        await chats.send_message(bob, chat.id, "hello?", "")
    stranger = person(directory, "dave")
    with pytest.raises(NotFound, match="not found"):
        await chats.get_chat(stranger, chat.id)
