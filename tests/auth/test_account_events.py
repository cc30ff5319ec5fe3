"""AccountEventService.Watch over the wire, on both backends: only the service callers that
the auth service lists may watch, identified by the x-forwarded-client-cert header of their
(stand-in) sidecar, never by a user's token; a watcher gets the events after its position,
then each new one, with heartbeats carrying the newest number."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import jwt
import pytest

from meshchat.auth.v1 import (
    access_options_pb2,
    auth_pb2,
    events_pb2,
    events_pb2_grpc,
    users_pb2,
)
from meshchat_runtime.peers import CLIENT_CERT_HEADER
from tests.support.auth_stubs import Stubs, login_admin
from tests.support.passwords import PASSWORD
from tests.support.rpc import DEADLINE, status_of
from tests.support.sidecar import Sidecar
from tests.support.stack import RunningAuth, bearer, register_and_login, start_auth

WATCHER = "chat.meshchat.test"
Kind = events_pb2.AccountEventKind
DENIED = grpc.StatusCode.PERMISSION_DENIED


@pytest.fixture
async def auth(tmp_path: Path, database_url: str) -> AsyncIterator[RunningAuth]:
    """An auth service, once per backend, that lets WATCHER watch."""
    running = await start_auth(tmp_path / "auth", database_url, service_callers=(WATCHER,))
    yield running
    await running.stop()


@pytest.fixture
async def stubs(auth: RunningAuth) -> AsyncIterator[Stubs]:
    """Stubs for that auth service."""
    async with auth.channel() as channel:
        yield Stubs(channel)


Watch = grpc.aio.UnaryStreamCall[events_pb2.WatchAccountEventsRequest, events_pb2.AccountEventBatch]
ADMIN = access_options_pb2.ROLE_ADMIN


def watch(channel: grpc.aio.Channel, after_seq: int = 0) -> Watch:
    """Open a Watch stream."""
    return events_pb2_grpc.AccountEventServiceStub(channel).Watch(
        events_pb2.WatchAccountEventsRequest(after_seq=after_seq), timeout=DEADLINE
    )


async def events_until(call: Watch, count: int) -> list[events_pb2.AccountEvent]:
    """Read batches (heartbeats included) until ``count`` events have come."""
    events: list[events_pb2.AccountEvent] = []

    async def read() -> None:
        while len(events) < count:
            batch = await call.read()
            assert isinstance(batch, events_pb2.AccountEventBatch)
            events.extend(batch.events)
            assert batch.head_seq >= (events[-1].seq if events else 0)

    await asyncio.wait_for(read(), DEADLINE)
    return events


async def test_only_listed_services_may_watch(auth: RunningAuth, stubs: Stubs) -> None:
    admin_token = await login_admin(stubs, auth)
    async with auth.channel() as channel:
        stub = events_pb2_grpc.AccountEventServiceStub(channel)
        for metadata in (
            (),
            bearer(admin_token),
            ((CLIENT_CERT_HEADER, "Hash=00;DNS=edge.meshchat.test"),),
            ((CLIENT_CERT_HEADER, "Hash=00;DNS=chat.meshchat.test.evil"),),
        ):
            call = stub.Watch(events_pb2.WatchAccountEventsRequest(), metadata=metadata)
            code, details = await status_of(call.read())
            assert (code, details) == (
                DENIED,
                "only meshchat services may call /meshchat.auth.v1.AccountEventService/Watch",
            )
    stranger = Sidecar(auth.address, "edge.meshchat.test")
    await stranger.start()
    try:
        async with grpc.aio.insecure_channel(stranger.address) as channel:
            assert (await status_of(watch(channel).read()))[0] == DENIED
    finally:
        await stranger.stop()


async def test_a_watcher_replays_then_follows_and_resumes(auth: RunningAuth, stubs: Stubs) -> None:
    sidecar = Sidecar(auth.address, WATCHER)
    await sidecar.start()
    try:
        admin_token = await login_admin(stubs, auth)  # event 1: root's new role
        alice = await register_and_login(stubs.channel, "alice")
        bob = await register_and_login(stubs.channel, "bob")
        await stubs.users.UpdateUser(
            users_pb2.UpdateUserRequest(id=bob.user.id, role=ADMIN), metadata=bearer(admin_token)
        )
        async with grpc.aio.insecure_channel(sidecar.address) as channel:
            call = watch(channel)
            replayed = await events_until(call, 2)
            new_password = "a different Tr0ub4dor&3 horse"
            await stubs.users.UpdateUser(
                users_pb2.UpdateUserRequest(
                    id=alice.user.id,
                    password=new_password,
                    password_confirm=new_password,
                    current_password=PASSWORD,
                ),
                metadata=bearer(alice.access_token),
            )
            await stubs.users.DeleteUser(
                users_pb2.DeleteUserRequest(id=alice.user.id, current_password=new_password),
                metadata=bearer(alice.access_token),
            )
            live = await events_until(call, 2)
            call.cancel()
            assert [(e.seq, e.user_id, e.kind) for e in replayed + live] == [
                (1, admin_user_id(admin_token), Kind.ACCOUNT_EVENT_KIND_ROLE_CHANGED),
                (2, bob.user.id, Kind.ACCOUNT_EVENT_KIND_ROLE_CHANGED),
                (3, alice.user.id, Kind.ACCOUNT_EVENT_KIND_PASSWORD_CHANGED),
                (4, alice.user.id, Kind.ACCOUNT_EVENT_KIND_DELETED),
            ]
            # The login that changed the password survives it.
            assert (
                live[0].kept_session_id
                == jwt.decode(alice.access_token, options={"verify_signature": False})["sid"]
            )
            resumed = watch(channel, after_seq=3)
            assert [e.seq for e in await events_until(resumed, 1)] == [4]
            resumed.cancel()
            code, _ = await status_of(watch(channel, after_seq=-1).read())
            assert code == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await sidecar.stop()


def admin_user_id(token: str) -> str:
    """The user id of an access token."""
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


async def test_logging_out_everywhere_is_an_event_that_keeps_no_login(
    auth: RunningAuth, stubs: Stubs
) -> None:
    alice = await register_and_login(stubs.channel, "alice")
    await stubs.auth.LogoutEverywhere(
        auth_pb2.LogoutEverywhereRequest(user_id=alice.user.id, current_password=PASSWORD),
        metadata=bearer(alice.access_token),
    )
    sidecar = Sidecar(auth.address, WATCHER)
    await sidecar.start()
    try:
        async with grpc.aio.insecure_channel(sidecar.address) as channel:
            call = watch(channel)
            [event] = await events_until(call, 1)
            call.cancel()
    finally:
        await sidecar.stop()
    assert (event.user_id, event.kind, event.kept_session_id) == (
        alice.user.id,
        Kind.ACCOUNT_EVENT_KIND_LOGGED_OUT_EVERYWHERE,
        "",
    )
