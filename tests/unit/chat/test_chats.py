"""ChatService: creating, reading, listing and deleting chats, and their permissions."""

from __future__ import annotations

import pytest

from meshchat_chat.service import ChatService
from meshchat_runtime.errors import InvalidArgument, NotFound, PermissionDenied
from tests.support.callers import person
from tests.support.fakes import MemoryChatStore, MemoryUserDirectory

UNKNOWN_CHAT = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


async def test_create_makes_the_caller_owner_and_resolves_members_once(
    chats: ChatService, directory: MemoryUserDirectory, chat_store: MemoryChatStore
) -> None:
    alice, bob, carol = (person(directory, n) for n in ("alice", "bob", "carol"))
    chat = await chats.create_chat(alice, "trio", ["bob", "carol", "bob", "alice"])
    assert (chat.name, chat.owner_id, chat.last_seq) == ("trio", alice.principal.user_id, 0)
    assert {(m.username, m.user_id) for m in chat.members} == {
        (c.principal.username, c.principal.user_id) for c in (alice, bob, carol)
    }
    assert await chat_store.get_chat(chat.id) == chat
    # One look-up for all of them, on the caller's behalf.
    assert [(sorted(names), caller) for names, caller in directory.lookups] == [
        (["bob", "carol"], alice)
    ]


async def test_members_are_listed_by_username_in_code_point_order(
    chats: ChatService, directory: MemoryUserDirectory, chat_store: MemoryChatStore
) -> None:
    zoe = person(directory, "zoe")
    directory.add("Bob")
    directory.add("alice")
    chat = await chats.create_chat(zoe, "order", ["alice", "Bob"])
    assert [m.username for m in chat.members] == ["Bob", "alice", "zoe"]
    assert await chats.get_chat(zoe, chat.id) == chat


@pytest.mark.parametrize("member", ["u" * 65, "", "nul\x00"])
async def test_member_names_are_checked_before_asking_the_auth_service(
    chats: ChatService, directory: MemoryUserDirectory, member: str
) -> None:
    alice = person(directory, "alice")
    with pytest.raises(InvalidArgument) as info:
        await chats.create_chat(alice, "x", [member])
    assert info.value.field == "member_usernames"
    assert directory.lookups == []


async def test_at_most_500_members_per_request(
    chats: ChatService, directory: MemoryUserDirectory
) -> None:
    alice = person(directory, "alice")
    with pytest.raises(InvalidArgument, match="at most 500"):
        await chats.create_chat(alice, "x", [f"user{i}" for i in range(501)])
    assert directory.lookups == []


async def test_an_unknown_member_is_named_and_nothing_is_created(
    chats: ChatService, directory: MemoryUserDirectory, chat_store: MemoryChatStore
) -> None:
    alice = person(directory, "alice")
    directory.add("bob")
    with pytest.raises(NotFound, match="nobody-here"):
        await chats.create_chat(alice, "x", ["bob", "nobody-here"])
    assert await chat_store.list_chats(alice.principal.user_id, 10, None) == []


@pytest.mark.parametrize("name", ["", "   ", "n" * 101, "nul\x00byte"])
async def test_bad_chat_names_are_refused(
    chats: ChatService, directory: MemoryUserDirectory, name: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        await chats.create_chat(person(directory, "alice"), name, [])
    assert info.value.field == "name"


async def test_names_are_kept_verbatim(chats: ChatService, directory: MemoryUserDirectory) -> None:
    alice = person(directory, "alice")
    for name in ("n" * 100, 'Robert\'); DROP TABLE chats;-- "%s" \u00e9\U0001f600'):
        chat = await chats.create_chat(alice, name, [])
        assert (await chats.get_chat(alice, chat.id)).name == name


async def test_only_members_and_admins_see_a_chat(
    chats: ChatService, directory: MemoryUserDirectory
) -> None:
    alice, bob = person(directory, "alice"), person(directory, "bob")
    root = person(directory, "root", admin=True)
    chat = await chats.create_chat(alice, "private", [])
    with pytest.raises(PermissionDenied):
        await chats.get_chat(bob, chat.id)
    assert (await chats.get_chat(root, chat.id)).id == chat.id
    with pytest.raises(NotFound):
        await chats.get_chat(alice, UNKNOWN_CHAT)
    with pytest.raises(InvalidArgument) as info:
        await chats.get_chat(alice, "not-a-chat-id")
    assert info.value.field == "chat_id"


async def test_list_pages_through_the_callers_chats_newest_first(
    chats: ChatService, directory: MemoryUserDirectory
) -> None:
    alice, bob = person(directory, "alice"), person(directory, "bob")
    created = [await chats.create_chat(alice, f"chat {i}", ["bob"]) for i in range(5)]
    await chats.create_chat(bob, "bob alone", [])
    names: list[str] = []
    token, pages = "", 0
    while True:
        page = await chats.list_chats(alice, 2, token)
        names += [c.name for c in page.chats]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert names == [c.name for c in reversed(created)]
    assert pages == 3
    assert len((await chats.list_chats(bob, 0, "")).chats) == 6


@pytest.mark.parametrize(("size", "token"), [(501, ""), (-1, ""), (0, "bm90LWEtdG9rZW4")])
async def test_list_refuses_bad_sizes_and_tokens(
    chats: ChatService, directory: MemoryUserDirectory, size: int, token: str
) -> None:
    with pytest.raises(InvalidArgument):
        await chats.list_chats(person(directory, "alice"), size, token)


async def test_delete_is_for_the_owner_or_an_admin_and_takes_the_messages(
    chats: ChatService, directory: MemoryUserDirectory, chat_store: MemoryChatStore
) -> None:
    alice, bob = person(directory, "alice"), person(directory, "bob")
    root = person(directory, "root", admin=True)
    first = await chats.create_chat(alice, "first", ["bob"])
    second = await chats.create_chat(alice, "second", ["bob"])
    await chats.send_message(alice, first.id, "hello", "")
    with pytest.raises(PermissionDenied):
        await chats.delete_chat(bob, first.id)
    await chats.delete_chat(alice, first.id)
    with pytest.raises(NotFound):
        await chats.get_chat(alice, first.id)
    with pytest.raises(NotFound):
        await chats.send_message(alice, first.id, "gone?", "")
    with pytest.raises(NotFound):
        await chats.list_messages(alice, first.id, 0)
    assert await chat_store.messages_after(first.id, 0, 10) == []
    await chats.delete_chat(root, second.id)
    with pytest.raises(NotFound):
        await chats.delete_chat(alice, second.id)
    assert (await chats.list_chats(bob, 0, "")).chats == ()
