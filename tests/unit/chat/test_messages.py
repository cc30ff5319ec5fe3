"""ChatService: sending messages (numbering, idempotency, limits) and reading history."""

from __future__ import annotations

import asyncio

import pytest

from meshchat_chat.domain import CaughtUp, Entry, Message, MessageBatch
from meshchat_chat.service import ChatService
from meshchat_runtime.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from tests.support.callers import person
from tests.support.fakes import MemoryChatStore, MemoryUserDirectory

UNKNOWN_CHAT = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


async def test_messages_are_numbered_per_chat_and_signed_by_the_caller(
    chats: ChatService, directory: MemoryUserDirectory
) -> None:
    alice, bob = person(directory, "alice"), person(directory, "bob")
    chat = await chats.create_chat(alice, "pair", ["bob"])
    other = await chats.create_chat(bob, "other", ["alice"])
    sent = await asyncio.gather(
        *(chats.send_message(alice if i % 2 else bob, chat.id, f"m {i}", "") for i in range(20))
    )
    assert sorted(m.seq for m in sent) == list(range(1, 21))
    for message in sent:
        author = (alice if int(message.text.split()[1]) % 2 else bob).principal
        assert (message.sender_id, message.sender_username) == (author.user_id, author.username)
    assert (await chats.send_message(alice, other.id, "elsewhere", "")).seq == 1
    assert (await chats.get_chat(bob, chat.id)).last_seq == 20


async def test_only_members_may_send_not_even_admins(
    chats: ChatService, directory: MemoryUserDirectory
) -> None:
    alice, mallory = person(directory, "alice"), person(directory, "mallory")
    root = person(directory, "root", admin=True)
    chat = await chats.create_chat(alice, "members only", [])
    for outsider in (mallory, root):
        with pytest.raises(PermissionDenied):
            await chats.send_message(outsider, chat.id, "let me in", "")
    with pytest.raises(NotFound):
        await chats.send_message(mallory, UNKNOWN_CHAT, "anyone?", "")
    assert (await chats.get_chat(alice, chat.id)).last_seq == 0


async def test_a_retry_with_the_same_client_message_id_returns_the_first_message(
    chats: ChatService, directory: MemoryUserDirectory
) -> None:
    alice, bob = person(directory, "alice"), person(directory, "bob")
    chat = await chats.create_chat(alice, "retries", ["bob"])
    first = await chats.send_message(alice, chat.id, "exactly once", "client-1")
    await chats.send_message(bob, chat.id, "in between", "")
    assert await chats.send_message(alice, chat.id, "exactly once", "client-1") == first
    with pytest.raises(FailedPrecondition, match="client_message_id 'client-1' was already used"):
        await chats.send_message(alice, chat.id, "a changed retry", "client-1")
    concurrent = await asyncio.gather(
        *(chats.send_message(bob, chat.id, "try", "b-1") for i in range(8))
    )
    assert len(set(concurrent)) == 1
    assert (await chats.send_message(bob, chat.id, "same id, other sender", "client-1")).seq == 4
    history = await chats.list_messages(alice, chat.id, 0)
    assert [m.text for m in history.messages] == [
        "exactly once",
        "in between",
        concurrent[0].text,
        "same id, other sender",
    ]


async def test_a_retry_is_not_published_again(
    chats: ChatService, directory: MemoryUserDirectory
) -> None:
    alice = person(directory, "alice")
    chat = await chats.create_chat(alice, "once", [])
    stream = chats.connect(alice, chat.id, 0)
    assert await anext(stream) == CaughtUp(0)
    first = await chats.send_message(alice, chat.id, "hello", "c-1")
    await chats.send_message(alice, chat.id, "hello", "c-1")
    second = await chats.send_message(alice, chat.id, "next", "")
    live: list[Entry] = []
    while len(live) < 2:
        event = await asyncio.wait_for(anext(stream), 5)
        assert isinstance(event, MessageBatch), event
        live += event.messages
    assert live == [first, second]
    await stream.aclose()


@pytest.mark.parametrize(
    ("text", "client_id", "field"),
    [
        ("", "", "text"),
        ("x" * 4097, "", "text"),
        ("nul\x00", "", "text"),
        ("ok", "c" * 129, "client_message_id"),
    ],
)
async def test_bad_messages_are_refused_naming_the_field_and_store_nothing(
    chats: ChatService,
    directory: MemoryUserDirectory,
    chat_store: MemoryChatStore,
    text: str,
    client_id: str,
    field: str,
) -> None:
    alice = person(directory, "alice")
    chat = await chats.create_chat(alice, "limits", [])
    with pytest.raises(InvalidArgument) as info:
        await chats.send_message(alice, chat.id, text, client_id)
    assert info.value.field == field
    assert await chat_store.last_seq(chat.id) == 0


async def test_the_longest_message_is_kept_whole(
    chats: ChatService, directory: MemoryUserDirectory
) -> None:
    alice = person(directory, "alice")
    chat = await chats.create_chat(alice, "limits", [])
    with pytest.raises(InvalidArgument):
        await chats.send_message(alice, "bad id", "x", "")
    longest = await chats.send_message(alice, chat.id, "\U0001f600" * 4096, "c" * 128)
    assert longest.seq == 1
    assert (await chats.list_messages(alice, chat.id, 0)).messages[0].text == "\U0001f600" * 4096


def seqs(messages: tuple[Message, ...]) -> list[int]:
    return [m.seq for m in messages]


async def test_history_pages_in_both_directions(
    chats: ChatService, directory: MemoryUserDirectory
) -> None:
    alice, bob = person(directory, "alice"), person(directory, "bob")
    root = person(directory, "root", admin=True)
    chat = await chats.create_chat(alice, "history", ["bob"])
    for i in range(1, 8):
        await chats.send_message(alice, chat.id, f"m{i}", "")

    async def page(limit: int, **cursor: int) -> tuple[list[int], bool]:
        result = await chats.list_messages(bob, chat.id, limit, **cursor)
        return seqs(result.messages), result.has_more

    assert await page(0) == ([1, 2, 3, 4, 5, 6, 7], False)
    assert await page(3) == ([5, 6, 7], True)
    assert await page(3, before_seq=5) == ([2, 3, 4], True)
    assert await page(3, before_seq=2) == ([1], False)
    assert await page(3, after_seq=0) == ([1, 2, 3], True)
    assert await page(3, after_seq=4) == ([5, 6, 7], False)
    admin_page = await chats.list_messages(root, chat.id, 1, after_seq=7)
    assert (seqs(admin_page.messages), admin_page.has_more) == ([], False)
    with pytest.raises(PermissionDenied):
        await chats.list_messages(person(directory, "outsider"), chat.id, 0)


@pytest.mark.parametrize(
    ("limit", "cursor"),
    [
        (501, {}),
        (-1, {}),
        (0, {"before_seq": 0}),
        (0, {"after_seq": -1}),
        (0, {"before_seq": 3, "after_seq": 1}),
    ],
)
async def test_history_refuses_bad_limits_and_cursors(
    chats: ChatService, directory: MemoryUserDirectory, limit: int, cursor: dict[str, int]
) -> None:
    alice = person(directory, "alice")
    chat = await chats.create_chat(alice, "history", [])
    with pytest.raises(InvalidArgument):
        await chats.list_messages(alice, chat.id, limit, **cursor)
