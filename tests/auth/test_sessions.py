"""Sessions over the wire: tokens in and out, throttling's retry-after trailer, the configured\nargon2 parameters. The rules are tested in tests/unit/auth."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from meshchat.auth.v1 import auth_pb2, users_pb2
from meshchat_auth.config import Argon2Parameters, TokenPolicy
from meshchat_auth.domain import UserChanges
from meshchat_auth.passwords import PasswordHasher
from tests.support.auth_stubs import Stubs
from tests.support.passwords import PASSWORD
from tests.support.rpc import status_of
from tests.support.stack import (
    RunningAuth,
    bearer,
    register,
    register_and_login,
    start_auth,
)


async def test_login_returns_an_access_and_a_refresh_token(stubs: Stubs) -> None:
    await register(stubs.channel, "alice")
    pair = await stubs.auth.Login(auth_pb2.LoginRequest(username="alice", password=PASSWORD))
    assert pair.access_token.count(".") == 2
    assert pair.refresh_token.startswith("mcr_")
    assert pair.user.username == "alice"
    lifetime = pair.access_token_expire_time.ToDatetime(UTC) - datetime.now(UTC)
    assert 200 < lifetime.total_seconds() <= 300
    refresh_lifetime = pair.refresh_token_expire_time.ToDatetime(UTC) - datetime.now(UTC)
    assert refresh_lifetime.days in (29, 30)


async def test_unknown_user_and_wrong_password_get_the_same_answer(stubs: Stubs) -> None:
    await register(stubs.channel, "alice")
    wrong = await status_of(
        stubs.auth.Login(auth_pb2.LoginRequest(username="alice", password="nope-nope"))
    )
    unknown = await status_of(
        stubs.auth.Login(auth_pb2.LoginRequest(username="nobody", password="nope-nope"))
    )
    assert wrong == unknown == (grpc.StatusCode.UNAUTHENTICATED, "wrong username or password")


async def test_refresh_rotates_and_reuse_revokes_the_family(stubs_any: Stubs) -> None:
    first = await register_and_login(stubs_any.channel, "alice")
    second = await stubs_any.auth.Refresh(
        auth_pb2.RefreshRequest(refresh_token=first.refresh_token)
    )
    assert second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    third = await stubs_any.auth.Refresh(
        auth_pb2.RefreshRequest(refresh_token=second.refresh_token)
    )
    # Replaying a used token (a thief's copy) revokes the family, the newest token included.
    code, details = await status_of(
        stubs_any.auth.Refresh(auth_pb2.RefreshRequest(refresh_token=first.refresh_token))
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "already used" in details
    code, _ = await status_of(
        stubs_any.auth.Refresh(auth_pb2.RefreshRequest(refresh_token=third.refresh_token))
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED
    # Another login is another family and is unaffected.
    other = await stubs_any.auth.Login(auth_pb2.LoginRequest(username="alice", password=PASSWORD))
    await stubs_any.auth.Refresh(auth_pb2.RefreshRequest(refresh_token=other.refresh_token))


async def test_logout_revokes_the_family(stubs: Stubs) -> None:
    pair = await register_and_login(stubs.channel, "alice")
    rotated = await stubs.auth.Refresh(auth_pb2.RefreshRequest(refresh_token=pair.refresh_token))
    await stubs.auth.Logout(auth_pb2.LogoutRequest(refresh_token=rotated.refresh_token))
    code, details = await status_of(
        stubs.auth.Refresh(auth_pb2.RefreshRequest(refresh_token=rotated.refresh_token))
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in details


async def test_throttled_logins_say_when_to_retry_in_the_trailers(tmp_path: Path) -> None:
    policy = TokenPolicy(max_failed_logins=3, failed_login_window=60)
    auth = await start_auth(tmp_path / "auth", tokens=policy)
    try:
        async with auth.channel() as channel:
            stubs = Stubs(channel)
            await register(channel, "alice")
            await register(channel, "bob")
            for _ in range(3):
                code, _ = await status_of(
                    stubs.auth.Login(auth_pb2.LoginRequest(username="alice", password="wrong-one"))
                )
                assert code == grpc.StatusCode.UNAUTHENTICATED
            call = stubs.auth.Login(auth_pb2.LoginRequest(username="Alice", password=PASSWORD))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "try again in" in (info.value.details() or "")
            retry_after = dict(info.value.trailing_metadata() or ())["retry-after-seconds"]
            assert 1 <= int(retry_after) <= 60
            # Another account is not affected.
            await stubs.auth.Login(auth_pb2.LoginRequest(username="bob", password=PASSWORD))
    finally:
        await auth.stop()


async def test_a_deleted_users_tokens_stop_working(stubs: Stubs) -> None:
    pair = await register_and_login(stubs.channel, "alice")
    await stubs.users.DeleteUser(
        users_pb2.DeleteUserRequest(id=pair.user.id, current_password=PASSWORD),
        metadata=bearer(pair.access_token),
    )
    code, _ = await status_of(
        stubs.users.GetUser(
            users_pb2.GetUserRequest(id=pair.user.id), metadata=bearer(pair.access_token)
        )
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED
    code, _ = await status_of(
        stubs.auth.Refresh(auth_pb2.RefreshRequest(refresh_token=pair.refresh_token))
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED


async def test_login_upgrades_a_hash_to_the_configured_argon2_parameters(
    stubs: Stubs, auth: RunningAuth
) -> None:
    user = await register(stubs.channel, "alice")
    old = PasswordHasher(Argon2Parameters(memory_kib=19 * 1024, time_cost=3), auth.app.hashing)
    old_hash = await old.hash(PASSWORD)
    await auth.app.store.update_user(
        user.id, UserChanges(password_hash=old_hash), datetime.now(UTC)
    )
    await stubs.auth.Login(auth_pb2.LoginRequest(username="alice", password=PASSWORD))
    stored = await auth.app.store.get_user(user.id)
    assert stored is not None
    assert stored.password_hash.startswith("$argon2id$")
    assert f",t={auth.config.argon2.time_cost}," in stored.password_hash
