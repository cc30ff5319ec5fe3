"""The chat API over the wire: requests and responses mapped to and from the use cases, the
caller taken from the token, users resolved through the real auth service, and domain errors
as status codes. The rules themselves are tested in tests/unit/chat."""

from __future__ import annotations

import asyncio

import grpc

from meshchat.chat.v1 import chat_pb2
from tests.support.backends import SQLITE_ONLY
from tests.support.people import People
from tests.support.rpc import status_of

INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED
NOT_FOUND = grpc.StatusCode.NOT_FOUND
UNKNOWN_CHAT = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


async def test_create_chat_makes_the_caller_owner_and_resolves_members(people: People) -> None:
    alice, bob, carol = await people("alice"), await people("bob"), await people("carol")
    chat = await alice.create_chat("trio", "bob", "carol", "bob", "alice")
    assert chat.name == "trio"
    assert chat.owner_id == alice.user_id
    assert chat.last_seq == 0
    assert {(m.username, m.user_id) for m in chat.members} == {
        ("alice", alice.user_id),
        ("bob", bob.user_id),
        ("carol", carol.user_id),
    }
    assert all(m.join_time.seconds > 0 for m in chat.members)
    assert await bob.get_chat(chat.id) == chat


@SQLITE_ONLY
async def test_an_unknown_member_is_named_and_nothing_is_created(people: People) -> None:
    alice = await people("alice")
    await people("bob")
    code, details = await status_of(alice.create_chat("x", "bob", "nobody-here"))
    assert code == NOT_FOUND
    assert "nobody-here" in details
    assert list((await alice.list_chats()).chats) == []


@SQLITE_ONLY
async def test_domain_errors_reach_the_client_as_their_status_codes(people: People) -> None:
    alice, bob = await people("alice"), await people("bob")
    root = await people("root", admin=True)
    chat = await alice.create_chat("team", "bob")
    code, details = await status_of(alice.create_chat(""))
    assert (code, details.split(":")[0]) == (INVALID, "name")
    assert (await status_of(alice.list_chats(0, "bm90LWEtdG9rZW4")))[0] == INVALID
    assert (await status_of(bob.add_member(chat.id, "root")))[0] == DENIED
    assert (await status_of(alice.get_chat(UNKNOWN_CHAT)))[0] == NOT_FOUND
    code, _ = await status_of(alice.add_member(chat.id, "bob"))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    code, _ = await status_of(alice.remove_member(chat.id, "alice"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert (await root.get_chat(chat.id)).id == chat.id  # the role comes from the token
    assert [m.username for m in (await bob.remove_member(chat.id, "bob")).members] == ["alice"]
    await root.delete_chat(chat.id)
    assert (await status_of(alice.get_chat(chat.id)))[0] == NOT_FOUND


@SQLITE_ONLY
async def test_list_chats_pages_with_the_returned_token(people: People) -> None:
    alice = await people("alice")
    created = [await alice.create_chat(f"chat {i}") for i in range(3)]
    first = await alice.list_chats(page_size=2)
    assert [c.id for c in first.chats] == [created[2].id, created[1].id]
    rest = await alice.list_chats(page_size=2, page_token=first.next_page_token)
    assert ([c.id for c in rest.chats], rest.next_page_token) == ([created[0].id], "")


@SQLITE_ONLY
async def test_messages_are_numbered_per_chat_and_signed_by_the_token(people: People) -> None:
    alice, bob = await people("alice"), await people("bob")
    chat = await alice.create_chat("pair", "bob")
    other = await bob.create_chat("other", "alice")
    sent = await asyncio.gather(
        *((alice if i % 2 else bob).send(chat.id, f"message {i}") for i in range(20))
    )
    assert sorted(m.seq for m in sent) == list(range(1, 21))
    for message in sent:
        author = alice if int(message.text.split()[1]) % 2 else bob
        assert (message.sender_id, message.sender_username) == (author.user_id, author.username)
        assert message.chat_id == chat.id
    assert (await alice.send(other.id, "elsewhere")).seq == 1
    assert (await bob.get_chat(chat.id)).last_seq == 20
    longest = await alice.send(chat.id, "\U0001f600" * 4096, "c" * 128)
    assert (await alice.send(chat.id, "\U0001f600" * 4096, "c" * 128)) == longest
    assert (await alice.history(chat.id, 1)).messages[0].text == "\U0001f600" * 4096


@SQLITE_ONLY
async def test_history_pages_in_both_directions(people: People) -> None:
    alice, bob = await people("alice"), await people("bob")
    root = await people("root", admin=True)
    chat = await alice.create_chat("history", "bob")
    for i in range(1, 8):
        await alice.send(chat.id, f"m{i}")

    def seqs(page: chat_pb2.ListMessagesResponse) -> tuple[list[int], bool]:
        return [m.seq for m in page.messages], page.has_more

    assert seqs(await bob.history(chat.id)) == ([1, 2, 3, 4, 5, 6, 7], False)
    assert seqs(await bob.history(chat.id, 3)) == ([5, 6, 7], True)
    assert seqs(await bob.history(chat.id, 3, before_seq=5)) == ([2, 3, 4], True)
    assert seqs(await bob.history(chat.id, 3, before_seq=2)) == ([1], False)
    assert seqs(await bob.history(chat.id, 3, after_seq=0)) == ([1, 2, 3], True)
    assert seqs(await bob.history(chat.id, 3, after_seq=4)) == ([5, 6, 7], False)
    assert seqs(await root.history(chat.id, 1, after_seq=7)) == ([], False)
    for limit, cursor in ((501, {}), (-1, {}), (0, {"before_seq": 0}), (0, {"after_seq": -1})):
        assert (await status_of(bob.history(chat.id, limit, **cursor)))[0] == INVALID
    outsider = await people("outsider")
    assert (await status_of(outsider.history(chat.id)))[0] == DENIED
