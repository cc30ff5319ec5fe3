"""Account events applied by the chat use cases: which tokens a revocation refuses, how
revocations of a user merge, and what applying one does to open streams and chats."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from meshchat_chat.authclient.revocations import RevocationList, RevokingAuthenticator
from meshchat_chat.domain import AccountChange, Caller, CaughtUp, Heartbeat, Revocation, UserRef
from meshchat_chat.service import ChatService
from meshchat_runtime.errors import Unauthenticated
from meshchat_runtime.identity import Principal, Role
from tests.support.chats import new_chat
from tests.support.fakes import MemoryChatStore

T = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
ALICE = UserRef(str(uuid.uuid4()), "alice")
BOB = UserRef(str(uuid.uuid4()), "bob")


def token(issued: datetime, session: str = "s1", user: UserRef = ALICE) -> Principal:
    return Principal(
        user.user_id,
        user.username,
        Role.USER,
        expires_at=issued.timestamp() + 300,
        session_id=session,
        issued_at=issued.timestamp(),
    )


def test_a_revocation_refuses_older_tokens_but_the_kept_logins() -> None:
    revocation = Revocation(ALICE.user_id, T, kept_session_id="kept")
    assert revocation.refuses(token(T - timedelta(microseconds=1)))
    assert not revocation.refuses(token(T))
    assert not revocation.refuses(token(T - timedelta(minutes=1), session="kept"))
    deleted = Revocation(ALICE.user_id, T, deleted=True)
    assert deleted.refuses(token(T + timedelta(hours=1)))


def test_revocations_merge_the_later_time_and_keep_a_deletion() -> None:
    early = Revocation(ALICE.user_id, T, kept_session_id="a")
    late = Revocation(ALICE.user_id, T + timedelta(seconds=1), kept_session_id="b")
    assert early.merged(late) == late
    assert late.merged(early) == late
    gone = Revocation(ALICE.user_id, T - timedelta(days=1), deleted=True)
    assert early.merged(gone).deleted
    assert gone.merged(early).deleted


async def test_the_authenticator_refuses_revoked_tokens() -> None:
    class Verified:
        def __init__(self, principal: Principal) -> None:
            self.principal = principal

        async def authenticate(self, token: str, method: str) -> Principal:
            return self.principal

    revocations = RevocationList()
    old = token(T - timedelta(seconds=1))
    authenticator = RevokingAuthenticator(Verified(old), revocations)
    assert await authenticator.authenticate("t", "/m") == old
    revocations.add(Revocation(ALICE.user_id, T))
    with pytest.raises(Unauthenticated, match="revoked"):
        await authenticator.authenticate("t", "/m")
    assert len(revocations) == 1


async def test_applying_a_deletion_ends_the_users_streams(
    chats: ChatService, chat_store: MemoryChatStore
) -> None:
    room = await new_chat(chat_store, ALICE, BOB)
    caller = Caller(token(T - timedelta(seconds=1)), "t")
    stream = chats.connect(caller, room.id, 0)
    assert isinstance(await anext(stream), CaughtUp)
    applied = await chats.apply_account_change(
        AccountChange(1, Revocation(ALICE.user_id, T, deleted=True))
    )
    assert applied.changed_chats == (room.id,)

    async def drain() -> None:
        async for event in stream:
            assert isinstance(event, Heartbeat)

    with pytest.raises(Unauthenticated):
        await drain()
    assert await chats.restore_account_events() == 1
    kept = await chat_store.get_chat(room.id)
    assert kept is not None
    assert (kept.owner_id, [m.username for m in kept.members]) == (BOB.user_id, ["bob"])
