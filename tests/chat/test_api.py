"""The chat API and its permission rules, against a real chat service on each backend."""

from __future__ import annotations

import asyncio

import grpc

from meshchat.chat.v1 import chat_pb2
from tests.chat.conftest import People, status_of

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


async def test_the_created_chat_is_the_one_stored(people: People) -> None:
    zoe = await people("zoe")
    await people("Bob")
    await people("alice")
    chat = await zoe.create_chat("order", "alice", "Bob")
    assert await zoe.get_chat(chat.id) == chat
    assert [m.username for m in chat.members] == ["Bob", "alice", "zoe"]


async def test_usernames_are_checked_before_asking_the_auth_service(people: People) -> None:
    alice = await people("alice")
    chat = await alice.create_chat("checks")
    for call, field in (
        (alice.create_chat("x", "u" * 65), "member_usernames"),
        (alice.create_chat("x", ""), "member_usernames"),
        (alice.add_member(chat.id, ""), "username"),
        (alice.add_member(chat.id, "u" * 1_000_000), "username"),
        (alice.remove_member(chat.id, "nul\x00"), "username"),
    ):
        code, details = await status_of(call)
        assert code == INVALID
        assert details.startswith(f"{field}:"), details


async def test_an_unknown_member_is_named_and_nothing_is_created(people: People) -> None:
    alice = await people("alice")
    await people("bob")
    code, details = await status_of(alice.create_chat("x", "bob", "nobody-here"))
    assert code == NOT_FOUND
    assert "nobody-here" in details
    assert list((await alice.list_chats()).chats) == []


async def test_chat_names_are_validated_and_stored_verbatim(people: People) -> None:
    alice = await people("alice")
    for name in ("", "   ", "n" * 101, "nul\x00byte"):
        code, details = await status_of(alice.create_chat(name))
        assert code == INVALID, name
        assert details.startswith("name:"), details
    assert list((await alice.list_chats()).chats) == []
    assert (await alice.create_chat("n" * 100)).name == "n" * 100
    weird = 'Robert\'); DROP TABLE chats;-- "%s" \u00e9\U0001f600'
    assert (await alice.get_chat((await alice.create_chat(weird)).id)).name == weird
    assert len((await alice.list_chats()).chats) == 2


async def test_only_members_and_admins_see_a_chat(people: People) -> None:
    alice, bob = await people("alice"), await people("bob")
    root = await people("root", admin=True)
    chat = await alice.create_chat("private")
    assert (await status_of(bob.get_chat(chat.id)))[0] == DENIED
    assert (await root.get_chat(chat.id)).id == chat.id
    assert (await status_of(alice.get_chat(UNKNOWN_CHAT)))[0] == NOT_FOUND
    code, details = await status_of(alice.get_chat("not-a-chat-id"))
    assert code == INVALID
    assert details.startswith("chat_id:")


async def test_list_chats_pages_through_the_callers_chats_newest_first(people: People) -> None:
    alice, bob = await people("alice"), await people("bob")
    created = [await alice.create_chat(f"chat {i}", "bob") for i in range(5)]
    await bob.create_chat("bob alone")
    names: list[str] = []
    token, pages = "", 0
    while True:
        page = await alice.list_chats(page_size=2, page_token=token)
        names += [c.name for c in page.chats]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert names == [c.name for c in reversed(created)]
    assert pages == 3
    assert len((await bob.list_chats()).chats) == 6
    for size, token in ((501, ""), (-1, ""), (0, "bm90LWEtdG9rZW4")):
        assert (await status_of(alice.list_chats(size, token)))[0] == INVALID


async def test_delete_chat_is_for_the_owner_or_an_admin(people: People) -> None:
    alice, bob = await people("alice"), await people("bob")
    root = await people("root", admin=True)
    first = await alice.create_chat("first", "bob")
    second = await alice.create_chat("second", "bob")
    await alice.send(first.id, "hello")
    assert (await status_of(bob.delete_chat(first.id)))[0] == DENIED
    await alice.delete_chat(first.id)
    assert (await status_of(alice.get_chat(first.id)))[0] == NOT_FOUND
    assert (await status_of(alice.send(first.id, "gone?")))[0] == NOT_FOUND
    assert (await status_of(alice.history(first.id)))[0] == NOT_FOUND
    await root.delete_chat(second.id)
    assert (await status_of(bob.get_chat(second.id)))[0] == NOT_FOUND
    assert (await status_of(alice.delete_chat(second.id)))[0] == NOT_FOUND
    assert list((await bob.list_chats()).chats) == []


async def test_add_member_is_for_the_owner_or_an_admin(people: People) -> None:
    alice, bob = await people("alice"), await people("bob")
    carol, root = await people("carol"), await people("root", admin=True)
    await people("dave")
    chat = await alice.create_chat("team", "bob")
    assert (await status_of(bob.add_member(chat.id, "carol")))[0] == DENIED
    updated = await alice.add_member(chat.id, "carol")
    assert {m.username for m in updated.members} == {"alice", "bob", "carol"}
    code, _ = await status_of(alice.add_member(chat.id, "carol"))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    code, details = await status_of(alice.add_member(chat.id, "ghost"))
    assert code == NOT_FOUND
    assert "ghost" in details
    assert len((await root.add_member(chat.id, "dave")).members) == 4
    assert (await carol.get_chat(chat.id)).id == chat.id
    assert (await status_of(alice.add_member(UNKNOWN_CHAT, "dave")))[0] == NOT_FOUND


async def test_remove_member_is_for_the_owner_an_admin_or_the_member_leaving(
    people: People,
) -> None:
    alice, bob, carol = await people("alice"), await people("bob"), await people("carol")
    root = await people("root", admin=True)
    chat = await alice.create_chat("team", "bob", "carol")
    assert (await status_of(bob.remove_member(chat.id, "carol")))[0] == DENIED
    left = await carol.remove_member(chat.id, "carol")
    assert {m.username for m in left.members} == {"alice", "bob"}
    assert (await status_of(carol.get_chat(chat.id)))[0] == DENIED
    assert (await status_of(carol.send(chat.id, "still here?")))[0] == DENIED
    removed = await alice.remove_member(chat.id, "bob")
    assert [m.username for m in removed.members] == ["alice"]
    assert (await status_of(alice.remove_member(chat.id, "bob")))[0] == NOT_FOUND
    code, _ = await status_of(alice.remove_member(chat.id, "alice"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    await alice.add_member(chat.id, "bob")
    assert [m.username for m in (await root.remove_member(chat.id, "bob")).members] == ["alice"]


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


async def test_only_members_may_send(people: People) -> None:
    alice, mallory = await people("alice"), await people("mallory")
    root = await people("root", admin=True)
    chat = await alice.create_chat("members only")
    code, _ = await status_of(mallory.send(chat.id, "let me in"))
    assert code == DENIED
    assert (await status_of(root.send(chat.id, "admins read, members write")))[0] == DENIED
    assert (await status_of(mallory.send(UNKNOWN_CHAT, "anyone?")))[0] == NOT_FOUND
    assert (await alice.get_chat(chat.id)).last_seq == 0


async def test_a_retry_with_the_same_client_message_id_returns_the_first_message(
    people: People,
) -> None:
    alice, bob = await people("alice"), await people("bob")
    chat = await alice.create_chat("retries", "bob")
    first = await alice.send(chat.id, "exactly once", "client-1")
    await bob.send(chat.id, "in between")
    retry = await alice.send(chat.id, "exactly once", "client-1")
    assert retry == first
    concurrent = await asyncio.gather(*(bob.send(chat.id, "try", "b-1") for i in range(8)))
    assert len({m.seq for m in concurrent}) == 1
    assert (await bob.send(chat.id, "same id, other sender", "client-1")).seq == 4
    history = await alice.history(chat.id)
    assert [m.text for m in history.messages] == [
        "exactly once",
        "in between",
        concurrent[0].text,
        "same id, other sender",
    ]


async def test_bad_messages_are_refused_and_store_nothing(people: People) -> None:
    alice = await people("alice")
    chat = await alice.create_chat("limits")
    for text, client_id, field in (
        ("", "", "text"),
        ("x" * 4097, "", "text"),
        ("nul\x00", "", "text"),
        ("ok", "c" * 129, "client_message_id"),
    ):
        code, details = await status_of(alice.send(chat.id, text, client_id))
        assert code == INVALID
        assert details.startswith(f"{field}:"), details
    assert (await status_of(alice.send("bad id", "x")))[0] == INVALID
    assert (await alice.get_chat(chat.id)).last_seq == 0
    longest = await alice.send(chat.id, "\U0001f600" * 4096, "c" * 128)
    assert longest.seq == 1
    assert (await alice.history(chat.id)).messages[0].text == "\U0001f600" * 4096


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
