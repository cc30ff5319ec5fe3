"""Authentication of chat calls in both modes: bad tokens, expiring streams, the JWKS cache
during an auth outage and across a key rotation, and what each mode does with a deleted user.
The chat service runs on SQLite here: none of this depends on its storage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from meshchat.auth.v1 import users_pb2, users_pb2_grpc
from meshchat.chat.v1 import chat_pb2, chat_pb2_grpc
from meshchat_auth.keys import generate_key_file
from meshchat_chat.config import AuthzMode
from meshchat_runtime.settings import HostPort
from tests.support.backends import SQLITE_ONLY
from tests.support.passwords import PASSWORD
from tests.support.people import People, Person, Stream
from tests.support.rpc import eventually, status_of
from tests.support.stack import (
    RunningAuth,
    RunningChat,
    bearer,
    loopback_settings,
    start_auth,
    start_chat,
)
from tests.support.tokens import mint_access_token

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
BOTH_MODES = pytest.mark.parametrize(
    "chat_options",
    [{"authz_mode": AuthzMode.LOCAL}, {"authz_mode": AuthzMode.REMOTE, "authz_cache_ttl": 0.5}],
    ids=["local", "remote"],
)


def token_for(auth: RunningAuth, person: Person, **claims: Any) -> str:
    """A token signed with the auth service's real key, with any field overridden."""
    return mint_access_token(
        auth.config.keys_dir, user_id=person.user_id, username=person.username, **claims
    )


@SQLITE_ONLY
@BOTH_MODES
async def test_calls_without_a_valid_token_are_unauthenticated(
    auth: RunningAuth, people: People
) -> None:
    alice = await people("alice")
    chat = await alice.create_chat("guarded")
    request = chat_pb2.GetChatRequest(chat_id=chat.id)
    refresh_token = "mcr_not-an-access-token"
    bad_metadata: list[tuple[tuple[str, str], ...]] = [
        (),
        (("authorization", "Bearer not.a.jwt"),),
        (("authorization", "Basic YWxpY2U6cHc="),),
        (("authorization", "Bearer "),),
        bearer(refresh_token),
        bearer(token_for(auth, alice, expires_in=-60)),
        bearer(token_for(auth, alice, issuer="someone-else")),
        bearer(token_for(auth, alice, audience="another-service")),
        bearer(token_for(auth, alice, typ="JWT")),
        bearer(token_for(auth, alice, kid="no-such-key")),
        bearer(
            alice.access_token[:-4]
            + ("AAAA" if not alice.access_token.endswith("AAAA") else "BBBB")
        ),
    ]
    for metadata in bad_metadata:
        code, _ = await status_of(alice.stub.GetChat(request, metadata=metadata))
        assert code == UNAUTHENTICATED, metadata
        stream = Stream(
            alice.stub.Connect(chat_pb2.ConnectRequest(chat_id=chat.id), metadata=metadata)
        )
        assert (await stream.status())[0] == UNAUTHENTICATED, metadata
    fresh = token_for(auth, alice)
    assert (await alice.stub.GetChat(request, metadata=bearer(fresh))).id == chat.id


@SQLITE_ONLY
@BOTH_MODES
async def test_a_stream_ends_when_its_token_expires_and_resumes_without_loss(
    auth: RunningAuth, people: People
) -> None:
    alice, bob = await people("alice"), await people("bob")
    chat = await alice.create_chat("expiring", "bob")
    await alice.send(chat.id, "before")
    short = token_for(auth, bob, expires_in=2)
    stream = Stream(
        bob.stub.Connect(chat_pb2.ConnectRequest(chat_id=chat.id), metadata=bearer(short))
    )
    replayed, last = await stream.replay()
    assert last == 1
    await alice.send(chat.id, "live")
    assert [m.seq for m in await stream.messages(1)] == [2]
    code, details = await stream.status(within=10)
    assert code == UNAUTHENTICATED
    assert "expired" in details
    await alice.send(chat.id, "while bob was away")
    resumed = Stream(bob.connect(chat.id, after_seq=2))
    replayed, last = await resumed.replay()
    assert [(m.seq, m.text) for m in replayed] == [(3, "while bob was away")]
    resumed.cancel()


async def test_local_mode_keeps_accepting_tokens_while_auth_is_down_and_follows_key_rotation(
    tmp_path: Path,
) -> None:
    auth = await start_auth(tmp_path / "auth")
    port = auth.app.server.port
    chat = await start_chat(tmp_path / "chat", auth, jwks_min_refetch_interval=60)
    try:
        async with auth.channel() as auth_channel, chat.channel() as chat_channel:
            people = People(auth, auth_channel, chat_channel)
            alice, bob = await people("alice"), await people("bob")
            room = await alice.create_chat("resilient", "bob")
        await auth.stop()

        async with chat.channel() as chat_channel:
            stub = chat_pb2_grpc.ChatServiceStub(chat_channel)
            request = chat_pb2.GetChatRequest(chat_id=room.id)
            assert (await stub.GetChat(request, metadata=bearer(alice.access_token))).id == room.id
            # A token this chat service has never seen is verified with the cached keys.
            never_seen = token_for(auth, bob)
            assert (await stub.GetChat(request, metadata=bearer(never_seen))).id == room.id
            message = await stub.SendMessage(
                chat_pb2.SendMessageRequest(chat_id=room.id, text="auth is down"),
                metadata=bearer(never_seen),
            )
            assert message.seq == 1
            # What needs the auth service itself fails with UNAVAILABLE, not a wrong answer.
            code, _ = await status_of(
                stub.AddMember(
                    chat_pb2.AddMemberRequest(chat_id=room.id, username="carol"),
                    metadata=bearer(never_seen),
                )
            )
            assert code == grpc.StatusCode.PERMISSION_DENIED  # bob is no owner: decided locally
            code, _ = await status_of(
                stub.AddMember(
                    chat_pb2.AddMemberRequest(chat_id=room.id, username="carol"),
                    metadata=bearer(alice.access_token),
                )
            )
            assert code == grpc.StatusCode.UNAVAILABLE

            # The auth service comes back with a new signing key on the same address.
            generate_key_file(auth.config.keys_dir)
            auth = await start_auth(
                tmp_path / "auth", server=loopback_settings(listen=HostPort("127.0.0.1", port))
            )
            rotated = token_for(auth, alice)
            assert rotated != never_seen
            fetches = jwks_fetches(auth)
            assert (await stub.GetChat(request, metadata=bearer(rotated))).id == room.id
            assert jwks_fetches(auth) == fetches + 1
            # Unknown key ids do not make the chat service hammer the auth service.
            for _ in range(3):
                code, _ = await status_of(
                    stub.GetChat(request, metadata=bearer(token_for(auth, alice, kid="bogus")))
                )
                assert code == UNAUTHENTICATED
            assert jwks_fetches(auth) == fetches + 1
            # The old key is still published, so tokens it signed stay valid until they expire.
            assert (await stub.GetChat(request, metadata=bearer(never_seen))).id == room.id
    finally:
        await chat.stop()
        await auth.stop()


def jwks_fetches(auth: RunningAuth) -> float:
    """How often the auth service answered GetJwks."""
    value = auth.app.server.registry.get_sample_value(
        "grpc_server_started_total",
        {
            "grpc_service": "meshchat.auth.v1.AuthService",
            "grpc_method": "GetJwks",
            "grpc_type": "unary",
        },
    )
    return value or 0.0


@SQLITE_ONLY
@pytest.mark.parametrize("chat_options", [{"authz_mode": AuthzMode.REMOTE}])
async def test_remote_mode_needs_the_auth_service(
    auth: RunningAuth, chat: RunningChat, people: People
) -> None:
    alice = await people("alice")
    room = await alice.create_chat("remote")
    await auth.stop()
    fresh = token_for(auth, alice)
    code, _ = await status_of(
        alice.stub.GetChat(chat_pb2.GetChatRequest(chat_id=room.id), metadata=bearer(fresh))
    )
    assert code == grpc.StatusCode.UNAVAILABLE


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("chat_options", "still_accepted"),
    [
        ({"authz_mode": AuthzMode.LOCAL}, True),
        ({"authz_mode": AuthzMode.REMOTE, "authz_cache_ttl": 0.3}, False),
    ],
    ids=["local", "remote"],
)
async def test_a_deleted_users_token(
    auth: RunningAuth, people: People, still_accepted: bool
) -> None:
    alice = await people("alice")
    room = await alice.create_chat("soon orphaned")
    async with auth.channel() as channel:
        await users_pb2_grpc.UserServiceStub(channel).DeleteUser(
            users_pb2.DeleteUserRequest(id=alice.user_id, current_password=PASSWORD),
            metadata=alice.md,
        )

    async def accepted() -> bool:
        try:
            await alice.get_chat(room.id)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != UNAUTHENTICATED:
                raise
            return False
        return True

    async def refused() -> bool:
        return not await accepted()

    if still_accepted:
        # Local mode without the account events (this auth service lists no service
        # callers; tests/chat/test_revocation.py has them): the token verifies until it
        # expires (at most the access-token TTL).
        assert await accepted()
        # Resolving members forwards the caller's own token, which the auth service refuses.
        await people("bob")
        code, _ = await status_of(alice.create_chat("with bob", "bob"))
        assert code == UNAUTHENTICATED
    else:
        await eventually(refused, within=5, what="the deleted user's token is refused")
