"""Revocation reaches the chat service: the auth service's account events, followed by the
chat service through its (stand-in) sidecar, refuse a deleted user's tokens, end their open
streams and remove them from every chat; refuse a demoted admin's and a changed password's
older tokens, and every token of a user who logged out everywhere; and chat keeps serving
while the auth service is away, catching up after.

The chat service runs on both backends (the deletion is applied to its data); the auth
service on SQLite (its events on both backends are tests/auth's)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import grpc
import grpc.aio
import pytest

from meshchat.auth.v1 import auth_pb2, auth_pb2_grpc, users_pb2, users_pb2_grpc
from meshchat.chat.v1 import chat_pb2_grpc
from meshchat_auth.domain import UserChanges
from meshchat_runtime.identity import Role
from meshchat_runtime.timestamps import utc_now
from tests.support.passwords import PASSWORD
from tests.support.people import People, Person, Stream
from tests.support.rpc import eventually, status_of
from tests.support.sidecar import Sidecar
from tests.support.stack import RunningAuth, RunningChat, start_auth, start_chat

CHAT_IDENTITY = "chat.meshchat.test"
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED
# The revocation delay the docs promise: the feed's poll plus the follower's apply.
REVOCATION_DEADLINE = 2.0


@pytest.fixture
async def auth(tmp_path: Path) -> AsyncIterator[RunningAuth]:
    """An auth service on SQLite that lets the chat service's identity watch its events."""
    running = await start_auth(tmp_path / "auth", service_callers=(CHAT_IDENTITY,))
    yield running
    await running.stop()


@pytest.fixture
async def sidecar(auth: RunningAuth) -> AsyncIterator[Sidecar]:
    """The chat service's way to the auth service, as its mesh identity."""
    running = Sidecar(auth.address, CHAT_IDENTITY)
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def chat(
    tmp_path: Path, auth: RunningAuth, sidecar: Sidecar, database_url: str
) -> AsyncIterator[RunningChat]:
    """A chat service in local mode (the default), once per storage backend."""
    running = await start_chat(
        tmp_path / "chat",
        sidecar.address,
        database_url,
        issuer=auth.config.tokens.issuer,
        audience=auth.config.tokens.audience,
    )
    yield running
    await running.stop()


async def refused(person: Person) -> bool:
    """Whether the chat service refuses the person's token (UNAUTHENTICATED)."""
    try:
        await person.list_chats()
    except grpc.aio.AioRpcError as exc:
        if exc.code() != UNAUTHENTICATED:
            raise
        return True
    return False


async def caught_up(chat: RunningChat) -> None:
    """Wait until the chat service has applied every event it has heard of (tokens are
    refused before the store has applied the event)."""
    follower = chat.app.follower
    await eventually(
        lambda: follower.position == follower.head_seq, what="the follower applied every event"
    )


async def delete(auth: RunningAuth, person: Person) -> None:
    """The person deletes their own account."""
    async with auth.channel() as channel:
        await users_pb2_grpc.UserServiceStub(channel).DeleteUser(
            users_pb2.DeleteUserRequest(id=person.user_id, current_password=PASSWORD),
            metadata=person.md,
        )


async def test_a_deleted_users_token_stream_and_memberships_go(
    auth: RunningAuth, chat: RunningChat, people: People
) -> None:
    alice, bob = await people("alice"), await people("bob")
    await people("carol")
    shared = await alice.create_chat("handed over", "bob", "carol")
    alone = await alice.create_chat("nobody left")
    with_bob = await bob.create_chat("bob's", "alice")
    await alice.send(shared.id, "before")
    stream = Stream(alice.connect(shared.id))
    assert (await stream.replay())[1] == 1

    await delete(auth, alice)

    code, details = await stream.status(within=REVOCATION_DEADLINE)
    assert (code, details) == (UNAUTHENTICATED, "access token revoked: log in again")
    await eventually(lambda: refused(alice), within=REVOCATION_DEADLINE, what="refused")
    code, _ = await status_of(alice.send(with_bob.id, "still here?"))
    assert code == UNAUTHENTICATED
    await caught_up(chat)
    handed = await bob.get_chat(shared.id)
    # The earliest remaining member (bob joined before carol) owns it now.
    assert handed.owner_id == bob.user_id
    assert [m.username for m in handed.members] == ["bob", "carol"]
    assert [m.username for m in (await bob.get_chat(with_bob.id)).members] == ["bob"]
    assert await chat.app.store.get_chat(alone.id) is None
    assert [c.id for c in (await bob.list_chats()).chats] == [with_bob.id, shared.id]
    # The new owner manages the chat; the history keeps the deleted sender's name.
    await bob.remove_member(shared.id, "carol")
    assert [m.sender_username for m in (await bob.history(shared.id)).messages] == ["alice"]
    assert chat.app.follower.connected


async def test_a_demoted_admin_can_no_longer_delete_anothers_chat(
    auth: RunningAuth, chat: RunningChat, people: People
) -> None:
    root = await people("root", admin=True)
    alice = await people("alice")
    first = await alice.create_chat("first")
    await root.delete_chat(first.id)
    second = await alice.create_chat("second")
    await auth.app.store.update_user(root.user_id, UserChanges(role=Role.USER), utc_now())

    await eventually(lambda: refused(root), within=REVOCATION_DEADLINE, what="refused")
    code, _ = await status_of(root.delete_chat(second.id))
    assert code == UNAUTHENTICATED
    async with auth.channel() as channel:
        pair = await auth_pb2_grpc.AuthServiceStub(channel).Login(
            auth_pb2.LoginRequest(username="root", password=PASSWORD)
        )
    again = Person("root", root.user_id, pair.access_token, root.stub)
    code, _ = await status_of(again.delete_chat(second.id))
    assert code == DENIED
    assert (await alice.get_chat(second.id)).name == "second"


async def test_a_password_change_keeps_only_the_changing_login(
    auth: RunningAuth, chat: RunningChat, people: People
) -> None:
    alice = await people("alice")
    async with auth.channel() as channel:
        other = await auth_pb2_grpc.AuthServiceStub(channel).Login(
            auth_pb2.LoginRequest(username="alice", password=PASSWORD)
        )
        stolen = Person("alice", alice.user_id, other.access_token, alice.stub)
        room = await alice.create_chat("mine")
        stream = Stream(stolen.connect(room.id))
        await stream.replay()
        new_password = "a different Tr0ub4dor&3 horse"
        await users_pb2_grpc.UserServiceStub(channel).UpdateUser(
            users_pb2.UpdateUserRequest(
                id=alice.user_id,
                password=new_password,
                password_confirm=new_password,
                current_password=PASSWORD,
            ),
            metadata=alice.md,
        )
    code, _ = await stream.status(within=REVOCATION_DEADLINE)
    assert code == UNAUTHENTICATED
    assert await refused(stolen)
    # The login that changed the password keeps working.
    assert [c.id for c in (await alice.list_chats()).chats] == [room.id]


async def test_logging_out_everywhere_ends_every_login_at_chat_too(
    auth: RunningAuth, chat: RunningChat, people: People
) -> None:
    alice, bob = await people("alice"), await people("bob")
    async with auth.channel() as channel:
        sessions = auth_pb2_grpc.AuthServiceStub(channel)
        laptop = await sessions.Login(auth_pb2.LoginRequest(username="alice", password=PASSWORD))
        on_laptop = Person("alice", alice.user_id, laptop.access_token, alice.stub)
        room = await alice.create_chat("everywhere", "bob")
        streams = [Stream(alice.connect(room.id)), Stream(on_laptop.connect(room.id))]
        for stream in streams:
            await stream.replay()
        await sessions.LogoutEverywhere(
            auth_pb2.LogoutEverywhereRequest(user_id=alice.user_id, current_password=PASSWORD),
            metadata=alice.md,
        )
        for stream in streams:
            code, details = await stream.status(within=REVOCATION_DEADLINE)
            assert (code, details) == (UNAUTHENTICATED, "access token revoked: log in again")
        for person in (alice, on_laptop):
            await eventually(partial(refused, person), within=REVOCATION_DEADLINE, what="refused")
        code, _ = await status_of(
            sessions.Refresh(auth_pb2.RefreshRequest(refresh_token=laptop.refresh_token))
        )
        assert code == UNAUTHENTICATED
        # Another user is not touched, and a fresh login of alice works at once.
        await bob.send(room.id, "still here")
        fresh = await sessions.Login(auth_pb2.LoginRequest(username="alice", password=PASSWORD))
    again = Person("alice", alice.user_id, fresh.access_token, alice.stub)
    assert [c.id for c in (await again.list_chats()).chats] == [room.id]
    await again.send(room.id, "back")


async def test_chat_serves_while_auth_is_away_and_catches_up(
    auth: RunningAuth, chat: RunningChat, sidecar: Sidecar, people: People
) -> None:
    alice, bob = await people("alice"), await people("bob")
    room = await alice.create_chat("outage", "bob")
    follower = chat.app.follower
    await eventually(lambda: follower.connected, what="the follower is connected")
    sidecar.cut()
    await eventually(lambda: not follower.connected, what="the follower noticed")
    await delete(auth, bob)
    # Local mode: chat verifies tokens without the auth service and keeps serving.
    await alice.send(room.id, "still here")
    assert not await refused(bob)
    sidecar.restore()
    await eventually(lambda: refused(bob), what="the deleted user's token is refused")
    await caught_up(chat)
    assert [m.username for m in (await alice.get_chat(room.id)).members] == ["alice"]


async def test_a_new_replica_restores_the_revocations_and_resumes(
    tmp_path: Path,
    auth: RunningAuth,
    chat: RunningChat,
    sidecar: Sidecar,
    people: People,
    database_url: str,
) -> None:
    alice, bob = await people("alice"), await people("bob")
    await delete(auth, bob)
    await eventually(lambda: refused(bob), within=REVOCATION_DEADLINE, what="refused")
    await caught_up(chat)
    position = chat.app.follower.position
    # A second replica on the same database restores the revocations and the position.
    other = await start_chat(
        tmp_path / "other",
        sidecar.address,
        database_url,
        issuer=auth.config.tokens.issuer,
        audience=auth.config.tokens.audience,
    )
    try:
        follower = other.app.follower
        await eventually(lambda: follower.position is not None, what="restored")
        assert follower.position == position
        async with other.channel() as channel:
            stub = chat_pb2_grpc.ChatServiceStub(channel)
            assert await refused(Person(bob.username, bob.user_id, bob.access_token, stub))
            assert not await refused(
                Person(alice.username, alice.user_id, alice.access_token, stub)
            )
        await eventually(lambda: follower.connected, what="it follows from there")
        assert follower.position == position
    finally:
        await other.stop()
