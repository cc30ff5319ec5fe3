"""Issue 10, items 3 and 4, against real servers: parallel password guesses, guesses from
one address or spread over many, lockouts set off by strangers, and a login storm that
would burn the CPU."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from pathlib import Path

import grpc
import grpc.aio

from meshchat.auth.v1 import auth_pb2, auth_pb2_grpc
from meshchat_auth.config import HashingPoolSize, TokenPolicy
from tests.support.passwords import PASSWORD
from tests.support.stack import register, start_auth

WRONG = "wrong-password-guess"
TOO_MANY = "too many failed logins"


async def login(
    stub: auth_pb2_grpc.AuthServiceAsyncStub,
    username: str,
    password: str,
    address: str | None = None,
) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    """One Login (from ``address``, as the edge proxy would pass it): its code, details and
    trailing metadata."""
    metadata = (("x-forwarded-for", f"192.0.2.99, {address}"),) if address else None
    try:
        await stub.Login(
            auth_pb2.LoginRequest(username=username, password=password),
            metadata=metadata,
            timeout=60,
        )
    except grpc.aio.AioRpcError as error:
        trailers = {key: str(value) for key, value in error.trailing_metadata() or ()}
        return error.code(), error.details() or "", trailers
    return grpc.StatusCode.OK, "", {}


async def at_once(
    stub: auth_pb2_grpc.AuthServiceAsyncStub, attempts: Sequence[tuple[str, str, str | None]]
) -> list[tuple[grpc.StatusCode, str, dict[str, str]]]:
    """Every (username, password, address) attempt, released together by a barrier."""
    barrier = asyncio.Barrier(len(attempts))

    async def one(
        username: str, password: str, address: str | None
    ) -> tuple[grpc.StatusCode, str, dict[str, str]]:
        await barrier.wait()
        return await login(stub, username, password, address)

    return await asyncio.gather(*(one(*attempt) for attempt in attempts))


async def test_parallel_guesses_are_reserved_before_any_password_is_checked(
    tmp_path: Path, database_url: str
) -> None:
    auth = await start_auth(tmp_path, database_url)
    try:
        async with auth.channel() as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            await register(channel, "alice")
            results = await at_once(stub, [("alice", WRONG, None)] * 45)
            codes = [code for code, _, _ in results]
            # Exactly the five allowed guesses had their password checked.
            assert codes.count(grpc.StatusCode.UNAUTHENTICATED) == 5
            refused = [r for r in results if r[0] == grpc.StatusCode.RESOURCE_EXHAUSTED]
            assert len(refused) == 40
            assert all(TOO_MANY in details for _, details, _ in refused)
            code, details, trailers = await login(stub, "alice", PASSWORD)
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert TOO_MANY in details
            assert 1 <= int(trailers["retry-after-seconds"]) <= 900
            assert int(trailers["grpc-retry-pushback-ms"]) > 0
    finally:
        await auth.stop()


async def test_a_stranger_cannot_lock_a_user_out_from_another_address(
    tmp_path: Path, database_url: str
) -> None:
    auth = await start_auth(tmp_path, database_url, trust_forwarded_for=True)
    try:
        async with auth.channel() as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            await register(channel, "alice")
            for _ in range(5):
                code, _, _ = await login(stub, "alice", WRONG, "203.0.113.7")
                assert code == grpc.StatusCode.UNAUTHENTICATED
            code, _, _ = await login(stub, "alice", PASSWORD, "203.0.113.7")
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
            code, _, _ = await login(stub, "alice", PASSWORD, "198.51.100.2")
            assert code == grpc.StatusCode.OK
            # One IPv6 host holds a /64: its addresses count as one.
            for _ in range(5):
                await login(stub, "alice", WRONG, "2001:db8:1:2::1")
            code, _, _ = await login(stub, "alice", PASSWORD, "2001:db8:1:2::ffff")
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await auth.stop()


async def test_a_forwarded_address_is_ignored_unless_the_service_trusts_it(
    tmp_path: Path,
) -> None:
    auth = await start_auth(tmp_path)
    try:
        async with auth.channel() as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            await register(channel, "alice")
            for i in range(5):
                await login(stub, "alice", WRONG, f"203.0.113.{i}")
            # A new made-up address per guess does not buy new guesses.
            code, _, _ = await login(stub, "alice", PASSWORD, "203.0.113.200")
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await auth.stop()


async def test_one_address_guessing_many_accounts_is_limited(
    tmp_path: Path, database_url: str
) -> None:
    policy = TokenPolicy(max_failed_logins_per_address=10)
    auth = await start_auth(tmp_path, database_url, tokens=policy, trust_forwarded_for=True)
    try:
        async with auth.channel() as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            await register(channel, "alice")
            spray = [(f"user{i:02d}", WRONG, "203.0.113.7") for i in range(12)]
            codes = [code for code, _, _ in await at_once(stub, spray)]
            assert codes.count(grpc.StatusCode.UNAUTHENTICATED) == 10
            assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 2
            code, _, _ = await login(stub, "alice", PASSWORD, "203.0.113.7")
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
            code, _, _ = await login(stub, "alice", PASSWORD, "198.51.100.2")
            assert code == grpc.StatusCode.OK
    finally:
        await auth.stop()


async def test_guesses_spread_over_many_addresses_meet_the_account_ceiling(
    tmp_path: Path, database_url: str
) -> None:
    policy = TokenPolicy(max_failed_logins=5, max_failed_logins_per_account=8)
    auth = await start_auth(tmp_path, database_url, tokens=policy, trust_forwarded_for=True)
    try:
        async with auth.channel() as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            await register(channel, "alice")
            # A correct login takes its own attempt back: it does not count.
            code, _, _ = await login(stub, "alice", PASSWORD, "198.51.100.2")
            assert code == grpc.StatusCode.OK
            botnet = [("alice", WRONG, f"10.0.{i}.1") for i in range(12)]
            codes = [code for code, _, _ in await at_once(stub, botnet)]
            assert codes.count(grpc.StatusCode.UNAUTHENTICATED) == 8
            code, _, _ = await login(stub, "alice", PASSWORD, "198.51.100.2")
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await auth.stop()


async def test_a_login_storm_meets_a_bounded_hashing_pool(tmp_path: Path) -> None:
    auth = await start_auth(
        tmp_path, hashing=HashingPoolSize(workers=1, queue=2), trust_forwarded_for=True
    )
    try:
        async with auth.channel() as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            await register(channel, "alice")
            storm = [(f"u{uuid.uuid4().hex[:12]}", WRONG, f"10.1.{i}.1") for i in range(16)]
            results = await at_once(stub, storm)
            busy = [r for r in results if r[0] == grpc.StatusCode.RESOURCE_EXHAUSTED]
            served = [r for r in results if r[0] == grpc.StatusCode.UNAUTHENTICATED]
            assert busy, "the pool queued the whole storm"
            assert len(served) + len(busy) == len(storm)
            for _, details, trailers in busy:
                assert "busy" in details
                assert int(trailers["grpc-retry-pushback-ms"]) > 0
            assert auth.app.hashing.pending == 0
            # Refused attempts were given back: the storm's addresses may try again.
            code, _, _ = await login(stub, "alice", PASSWORD, "10.1.0.1")
            assert code == grpc.StatusCode.OK
    finally:
        await auth.stop()
