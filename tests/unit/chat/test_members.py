"""ChatService: adding and removing members, and leaving."""

from __future__ import annotations

import pytest

from meshchat_chat.service import ChatService
from meshchat_runtime.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from tests.support.callers import person
from tests.support.fakes import MemoryUserDirectory

UNKNOWN_CHAT = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


async def test_add_member_is_for_the_owner_or_an_admin(
    chats: ChatService, directory: MemoryUserDirectory
) -> None:
    alice, bob, carol = (person(directory, n) for n in ("alice", "bob", "carol"))
    root = person(directory, "root", admin=True)
    directory.add("dave")
    chat = await chats.create_chat(alice, "team", ["bob"])
    with pytest.raises(PermissionDenied):
        await chats.add_member(bob, chat.id, "carol")
    updated = await chats.add_member(alice, chat.id, "carol")
    assert {m.username for m in updated.members} == {"alice", "bob", "carol"}
    assert (await chats.get_chat(carol, chat.id)).id == chat.id
    with pytest.raises(AlreadyExists):
        await chats.add_member(alice, chat.id, "carol")
    with pytest.raises(NotFound, match="ghost"):
        await chats.add_member(alice, chat.id, "ghost")
    assert len((await chats.add_member(root, chat.id, "dave")).members) == 4
    with pytest.raises(NotFound):
        await chats.add_member(alice, UNKNOWN_CHAT, "dave")


@pytest.mark.parametrize("username", ["", "u" * 1_000_000])
async def test_add_member_checks_the_name_before_asking_the_auth_service(
    chats: ChatService, directory: MemoryUserDirectory, username: str
) -> None:
    alice = person(directory, "alice")
    chat = await chats.create_chat(alice, "checks", [])
    with pytest.raises(InvalidArgument) as info:
        await chats.add_member(alice, chat.id, username)
    assert info.value.field == "username"
    assert directory.lookups == []


async def test_remove_member_is_for_the_owner_an_admin_or_the_member_leaving(
    chats: ChatService, directory: MemoryUserDirectory
) -> None:
    alice, bob, carol = (person(directory, n) for n in ("alice", "bob", "carol"))
    root = person(directory, "root", admin=True)
    chat = await chats.create_chat(alice, "team", ["bob", "carol"])
    with pytest.raises(PermissionDenied):
        await chats.remove_member(bob, chat.id, "carol")
    left = await chats.remove_member(carol, chat.id, "carol")
    assert {m.username for m in left.members} == {"alice", "bob"}
    with pytest.raises(PermissionDenied):
        await chats.get_chat(carol, chat.id)
    with pytest.raises(PermissionDenied):
        await chats.send_message(carol, chat.id, "still here?", "")
    with pytest.raises(PermissionDenied):
        await chats.remove_member(carol, chat.id, "carol")  # leaving twice
    removed = await chats.remove_member(alice, chat.id, "bob")
    assert [m.username for m in removed.members] == ["alice"]
    with pytest.raises(NotFound):
        await chats.remove_member(alice, chat.id, "bob")
    with pytest.raises(FailedPrecondition, match="delete the chat"):
        await chats.remove_member(alice, chat.id, "alice")
    await chats.add_member(alice, chat.id, "bob")
    assert [m.username for m in (await chats.remove_member(root, chat.id, "bob")).members] == [
        "alice"
    ]
    with pytest.raises(InvalidArgument):
        await chats.remove_member(alice, chat.id, "nul\x00")
