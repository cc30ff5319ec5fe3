"""Attacks on the chat service that used to succeed (issue 10, items 8 to 12), against a real
chat service: on each backend where storage is involved, on SQLite where it is not."""

from __future__ import annotations

import asyncio
import gc

import grpc
import pytest

from meshchat.auth.v1 import users_pb2, users_pb2_grpc
from meshchat.chat.v1 import chat_pb2
from meshchat_chat.fanout.hub import Subscription
from tests.support.backends import SQLITE_ONLY
from tests.support.people import People, Stream
from tests.support.rpc import eventually, status_of
from tests.support.stack import RunningAuth, RunningChat, bearer, register, register_and_login

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


@SQLITE_ONLY
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


RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


def retry_after(error: grpc.aio.AioRpcError) -> int:
    """The trailing ``retry-after-seconds`` of a refused call."""
    values = [v for k, v in error.trailing_metadata() or () if k == "retry-after-seconds"]
    assert len(values) == 1, error.trailing_metadata()
    return int(values[0])


async def opened(stream: Stream) -> grpc.StatusCode:
    """OK once the stream has caught up, or the code it ended with."""
    try:
        await stream.replay()
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@SQLITE_ONLY
@pytest.mark.parametrize("chat_options", [{"max_streams_per_user": 4}])
async def test_streams_past_the_per_user_cap_are_refused_even_when_opened_at_once(
    people: People, chat: RunningChat
) -> None:
    alice, bob = await people("alice"), await people("bob")
    room = await alice.create_chat("busy", "bob")
    streams = [Stream(alice.connect(room.id)) for _ in range(12)]
    codes = await asyncio.gather(*(opened(s) for s in streams))
    assert sorted(c.name for c in codes) == ["OK"] * 4 + ["RESOURCE_EXHAUSTED"] * 8
    refused = next(s for s, c in zip(streams, codes, strict=True) if c != grpc.StatusCode.OK)
    assert "at most 4 per user" in (await refused.call.details() or "")
    # Another user is not affected.
    bobs = Stream(bob.connect(room.id))
    assert await opened(bobs) == grpc.StatusCode.OK
    for stream in [*streams, bobs]:
        stream.cancel()
    await eventually(lambda: chat.app.hub.stats.streams == 0, what="every stream closed")
    # The slots came back: the cap is whole again.
    again = [Stream(alice.connect(room.id)) for _ in range(4)]
    assert set(await asyncio.gather(*(opened(s) for s in again))) == {grpc.StatusCode.OK}
    for stream in again:
        stream.cancel()


@SQLITE_ONLY
@pytest.mark.parametrize("chat_options", [{"max_streams_per_user": 400}])
async def test_the_state_of_closed_streams_is_released(people: People, chat: RunningChat) -> None:
    alice = await people("alice")
    rooms = [await alice.create_chat(f"room {i}") for i in range(4)]
    gc.collect()
    before = sum(isinstance(o, Subscription) for o in gc.get_objects())
    streams = [Stream(alice.connect(rooms[i % 4].id)) for i in range(400)]
    assert set(await asyncio.gather(*(opened(s) for s in streams))) == {grpc.StatusCode.OK}
    assert chat.app.hub.stats.streams == 400
    for stream in streams:
        stream.cancel()
    await eventually(lambda: chat.app.hub.stats.streams == 0, what="every stream closed")
    del streams
    gc.collect()
    assert sum(isinstance(o, Subscription) for o in gc.get_objects()) == before
    assert chat.app.hub.chats_followed == 0


@SQLITE_ONLY
@pytest.mark.parametrize("chat_options", [{"send_burst": 3, "send_interval": 60.0}])
async def test_sends_past_the_burst_wait_their_turn(people: People) -> None:
    alice, bob = await people("alice"), await people("bob")
    room = await alice.create_chat("flood", "bob")
    results = await asyncio.gather(
        *(alice.send(room.id, f"m{i}") for i in range(10)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(refused) == 7, results
    for error in refused:
        assert error.code() == RESOURCE_EXHAUSTED
        assert "sending too fast" in (error.details() or "")
        assert "try again in" in (error.details() or "")
        assert 1 <= retry_after(error) <= 60
    assert len((await alice.history(room.id)).messages) == 3
    assert (await bob.send(room.id, "not me")).seq == 4


@SQLITE_ONLY
@pytest.mark.parametrize("chat_options", [{"send_burst": 1, "send_interval": 0.2}])
async def test_the_send_rate_refills(people: People) -> None:
    alice = await people("alice")
    room = await alice.create_chat("steady")
    await alice.send(room.id, "first")
    code, details = await status_of(alice.send(room.id, "too soon"))
    assert code == RESOURCE_EXHAUSTED
    assert "try again in 0.2 s" in details

    async def sent() -> bool:
        try:
            await alice.send(room.id, "later")
        except grpc.aio.AioRpcError as error:
            if error.code() != RESOURCE_EXHAUSTED:
                raise
            return False
        return True

    await eventually(sent, what="a send once the bucket refilled")


@pytest.mark.parametrize("chat_options", [{"max_chats_per_user": 2}])
async def test_chats_per_owner_are_limited_even_when_created_at_once(people: People) -> None:
    alice = await people("alice")
    results = await asyncio.gather(
        *(alice.create_chat(f"c{i}") for i in range(8)), return_exceptions=True
    )
    created = [r for r in results if isinstance(r, chat_pb2.Chat)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(created) == 2
    assert {r.code() for r in refused} == {RESOURCE_EXHAUSTED}
    assert "you own 2 chats" in (refused[0].details() or "")
    assert len((await alice.list_chats()).chats) == 2
    await alice.delete_chat(created[0].id)
    await alice.create_chat("room again")


@pytest.mark.parametrize("chat_options", [{"max_members_per_chat": 3}])
async def test_members_per_chat_are_limited_even_when_added_at_once(people: People) -> None:
    alice = await people("alice")
    names = [f"user{i}" for i in range(6)]
    for name in names:
        await people(name)
    code, details = await status_of(alice.create_chat("big", *names[:3]))
    assert (code, details) == (RESOURCE_EXHAUSTED, "a chat has at most 3 members")
    room = await alice.create_chat("small", names[0])
    results = await asyncio.gather(
        *(alice.add_member(room.id, name) for name in names[1:]), return_exceptions=True
    )
    assert sum(isinstance(r, chat_pb2.Chat) for r in results) == 1, results
    assert {r.code() for r in results if isinstance(r, grpc.aio.AioRpcError)} == {
        RESOURCE_EXHAUSTED
    }
    assert len((await alice.get_chat(room.id)).members) == 3


def auth_calls(auth: RunningAuth, method: str) -> float:
    """How many calls of a UserService method the auth service has answered."""
    registry = auth.app.server.registry
    return sum(
        registry.get_sample_value(
            "grpc_server_handled_total",
            {
                "grpc_service": "meshchat.auth.v1.UserService",
                "grpc_method": method,
                "grpc_type": "unary",
                "grpc_code": code.name,
            },
        )
        or 0.0
        for code in grpc.StatusCode
    )


@SQLITE_ONLY
async def test_create_chat_asks_the_auth_service_once_however_many_it_names(
    people: People, auth: RunningAuth
) -> None:
    alice = await people("alice")
    await people("bob")
    unknown = [f"ghost-{i}" for i in range(499)]
    results = await asyncio.gather(
        *(alice.create_chat(f"c{i}", "bob", *unknown) for i in range(10)), return_exceptions=True
    )
    for result in results:
        assert isinstance(result, grpc.aio.AioRpcError), result
        assert result.code() == grpc.StatusCode.NOT_FOUND
        assert (result.details() or "").startswith("users not found: 'ghost-0', 'ghost-1'")
        assert (result.details() or "").endswith("and 494 more")
    assert auth_calls(auth, "LookupUsers") == 10
    assert auth_calls(auth, "GetUser") == 0
    assert list((await alice.list_chats()).chats) == []


@SQLITE_ONLY
async def test_an_invalid_username_costs_the_auth_service_nothing(
    people: People, auth: RunningAuth
) -> None:
    alice = await people("alice")
    await people("bob")
    before = auth_calls(auth, "LookupUsers")
    code, details = await status_of(alice.create_chat("x", "bob", *(["ok-name"] * 3), "no way"))
    assert code == INVALID
    assert details.startswith("member_usernames: must be 3 to 32 characters")
    assert auth_calls(auth, "LookupUsers") == before


async def test_the_lookup_rpc_needs_a_token_and_hides_emails(auth: RunningAuth) -> None:
    async with auth.channel() as channel:
        await register(channel, "erin", email="erin@example.org")
        pair = await register_and_login(channel, "frank")
        stub = users_pb2_grpc.UserServiceStub(channel)
        request = users_pb2.LookupUsersRequest(usernames=["ERIN", "nobody", "frank"])
        code, _ = await status_of(stub.LookupUsers(request, timeout=10))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        reply = await stub.LookupUsers(request, metadata=bearer(pair.access_token), timeout=10)
        assert sorted((u.username, u.email) for u in reply.users) == [("erin", ""), ("frank", "")]
        for usernames in ([], ["ok-name"] * 501, ["bad\x00"]):
            code, details = await status_of(
                stub.LookupUsers(
                    users_pb2.LookupUsersRequest(usernames=usernames),
                    metadata=bearer(pair.access_token),
                    timeout=10,
                )
            )
            assert (code, details.split(":")[0]) == (INVALID, "usernames")
