"""What clients see when a call goes wrong unexpectedly or its request cannot be decoded:
INTERNAL with a generic message naming a trace id (logged once, with the traceback), and
INVALID_ARGUMENT without a traceback. Against real servers."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest

from meshchat_runtime.interceptors import ErrorInterceptor
from meshchat_runtime.server import GrpcServer, ServiceRegistration
from tests.support.stack import loopback_settings, register, start_auth

SECRET = "password=hunter2 at db.internal:5432"
Context = grpc.aio.ServicerContext[bytes, bytes]


def failing_service() -> ServiceRegistration:
    """A service whose methods fail as a driver would: an exception with internals in it."""

    async def unary(request: bytes, context: Context) -> bytes:
        raise RuntimeError(SECRET)

    async def stream(request: bytes, context: Context) -> AsyncIterator[bytes]:
        yield b"first"
        raise KeyError(SECRET)

    handler = grpc.method_handlers_generic_handler(
        "test.Failing",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
        },
    )
    return ServiceRegistration(
        "test.Failing", lambda server: server.add_generic_rpc_handlers((handler,))
    )


@pytest.fixture
async def failing() -> AsyncIterator[grpc.aio.Channel]:
    server = GrpcServer(
        loopback_settings(), services=[failing_service()], interceptors=[ErrorInterceptor()]
    )
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield channel
    finally:
        await server.stop(0)


def trace_id_of(details: str) -> str:
    match = re.fullmatch(
        r"internal error; the server logged it under trace id ([0-9a-f]{32})", details
    )
    assert match, details
    return match.group(1)


async def test_an_unexpected_exception_is_internal_generic_and_logged_once(
    failing: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = failing.unary_unary(
        "/test.Failing/Unary"
    )
    stream: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = failing.unary_stream(
        "/test.Failing/Stream"
    )
    with caplog.at_level(logging.INFO):
        with pytest.raises(grpc.aio.AioRpcError) as unary_info:
            await unary(b"x", timeout=10)
        call = stream(b"x", timeout=10)
        assert await call.read() == b"first"
        with pytest.raises(grpc.aio.AioRpcError) as stream_info:
            await call.read()
    ids = []
    for info in (unary_info, stream_info):
        assert info.value.code() == grpc.StatusCode.INTERNAL
        details = info.value.details() or ""
        assert "hunter2" not in details
        ids.append(trace_id_of(details))
    assert ids[0] != ids[1]
    for trace_id in ids:
        logged = [r for r in caplog.records if getattr(r, "trace_id", "") == trace_id]
        assert len(logged) == 1, [r.getMessage() for r in caplog.records]
        assert logged[0].levelno == logging.ERROR
        assert logged[0].exc_info is not None
    # Logged once: grpc itself says nothing about it.
    assert [
        r
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name != "meshchat_runtime.interceptors"
    ] == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"\xff\xff\xff", "not protobuf"),
        # CreateUserRequest.username (field 1, a string) holding bytes that are not UTF-8.
        (b"\x0a\x02\xc3\x28", "not UTF-8"),
    ],
)
async def test_a_request_that_cannot_be_decoded_is_invalid_argument_without_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, body: bytes, problem: str
) -> None:
    auth = await start_auth(tmp_path)
    try:
        async with auth.channel() as channel:
            create: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                "/meshchat.auth.v1.UserService/CreateUser"
            )
            with caplog.at_level(logging.INFO), pytest.raises(grpc.aio.AioRpcError) as info:
                await create(body, timeout=10)
    finally:
        await auth.stop()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, problem
    assert (info.value.details() or "").startswith("request: is not a valid message"), problem
    assert [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []


async def test_a_nul_in_a_sign_up_is_invalid_on_postgresql(
    tmp_path: Path, postgres_url: str
) -> None:
    auth = await start_auth(tmp_path, postgres_url)
    try:
        async with auth.channel() as channel:
            for username, email, field in (
                ("alice", "al\x00ice@example.org", "email"),
                ("al\x00ice", "", "username"),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await register(channel, username, email=email)
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert (info.value.details() or "").startswith(f"{field}:")
    finally:
        await auth.stop()
