"""Attacks on the chat service that used to succeed (issue 10, items 8 to 12), against a real
chat service on each backend."""

from __future__ import annotations

import asyncio

import grpc

from meshchat.chat.v1 import chat_pb2
from tests.chat.conftest import People, status_of

INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def test_a_member_named_twice_in_different_case_is_added_once(people: People) -> None:
    alice, bob = await people("alice"), await people("bob")
    chat = await alice.create_chat("twice", "bob", "BOB", "Bob", "ALICE")
    assert sorted((m.username, m.user_id) for m in chat.members) == [
        ("alice", alice.user_id),
        ("bob", bob.user_id),
    ]
    assert await alice.get_chat(chat.id) == chat
    code, _ = await status_of(alice.add_member(chat.id, "BOB"))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    left = await bob.remove_member(chat.id, "BOB")
    assert [m.username for m in left.members] == ["alice"]


async def test_nul_and_other_non_usernames_are_invalid_before_any_look_up(
    people: People,
) -> None:
    alice = await people("alice")
    for bad in ("bob\x00", "\x00", "bo b", "-bob", "b" * 33):
        code, details = await status_of(alice.create_chat("x", bad))
        assert code == INVALID, repr(bad)
        assert details.startswith("member_usernames:"), details
    for text in ("nul\x00", "\x00"):
        code, details = await status_of(alice.send((await alice.create_chat("n")).id, text))
        assert (code, details.split(":")[0]) == (INVALID, "text")


async def test_an_idempotent_retry_with_different_text_is_refused(people: People) -> None:
    alice = await people("alice")
    chat = await alice.create_chat("retries")
    first = await alice.send(chat.id, "pay bob 10", "m-1")
    assert await alice.send(chat.id, "pay bob 10", "m-1") == first
    code, details = await status_of(alice.send(chat.id, "pay bob 1000", "m-1"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "client_message_id 'm-1'" in details
    assert "different text" in details
    history = await alice.history(chat.id)
    assert [m.text for m in history.messages] == ["pay bob 10"]


async def test_concurrent_retries_with_different_texts_store_one_and_refuse_the_rest(
    people: People,
) -> None:
    alice = await people("alice")
    chat = await alice.create_chat("race")
    results = await asyncio.gather(
        *(alice.send(chat.id, f"text {i}", "same-id") for i in range(8)), return_exceptions=True
    )
    stored = [r for r in results if isinstance(r, chat_pb2.Message)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(stored) == 1, results
    assert {r.code() for r in refused} == {grpc.StatusCode.FAILED_PRECONDITION}
    assert [m.text for m in (await alice.history(chat.id)).messages] == [stored[0].text]
