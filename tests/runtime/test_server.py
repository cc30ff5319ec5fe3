"""The shared gRPC server: health, metrics, reflection, graceful stop, database loss."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2

from devtools.postgres import throwaway_postgres
from devtools.processes import health_stub
from meshchat.auth.v1 import users_pb2, users_pb2_grpc
from meshchat_runtime.server import GrpcServer, ServiceRegistration
from meshchat_runtime.settings import HostPort
from tests.support.stack import loopback_settings, register, start_auth

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def next_status(
    watch: AsyncIterator[health_pb2.HealthCheckResponse], wanted: int, deadline: float = 15
) -> None:
    """Read a Health.Watch stream until it reports ``wanted``."""
    async with asyncio.timeout(deadline):
        async for reply in watch:
            if reply.status == wanted:
                return
    raise AssertionError("the watch ended before the status came")


async def test_health_follows_dependency_probes() -> None:
    healthy = asyncio.Event()

    async def probe() -> bool:
        return healthy.is_set()

    server = GrpcServer(loopback_settings(), services=[])
    server.add_dependency(probe)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            health = health_stub(channel)
            reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
            assert reply.status == NOT_SERVING
            watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
            healthy.set()
            await next_status(watch, SERVING)
            healthy.clear()
            await next_status(watch, NOT_SERVING)
            watch.cancel()
    finally:
        await server.stop(0)


async def test_every_service_reports_health_and_stop_turns_it_not_serving(tmp_path: Path) -> None:
    auth = await start_auth(tmp_path)
    async with auth.channel() as channel:
        health = health_stub(channel)
        for service in (
            "",
            "meshchat.auth.v1.UserService",
            "meshchat.auth.v1.AuthService",
            "meshchat.auth.v1.AccessService",
        ):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == SERVING, service
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await health.Check(health_pb2.HealthCheckRequest(service="nope.Service"))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        watch = health.Watch(health_pb2.HealthCheckRequest(service="meshchat.auth.v1.UserService"))
        await next_status(watch, SERVING)
        stopping = asyncio.create_task(auth.app.stop(grace=1))
        await next_status(watch, NOT_SERVING)
        await stopping


async def test_health_turns_not_serving_when_postgresql_goes_away_and_recovers(
    tmp_path: Path,
) -> None:
    with throwaway_postgres() as pg:
        auth = await start_auth(tmp_path, pg.create_database())
        try:
            async with auth.channel() as channel:
                watch = health_stub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
                await next_status(watch, SERVING)
                await asyncio.to_thread(pg.stop)
                await next_status(watch, NOT_SERVING, deadline=30)
                await asyncio.to_thread(pg.start_again)
                await next_status(watch, SERVING, deadline=30)
                await register(channel, "alice")
                watch.cancel()
        finally:
            await auth.stop()


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


async def test_metrics_count_rpcs_by_method_and_code(tmp_path: Path) -> None:
    auth = await start_auth(
        tmp_path, server=loopback_settings(metrics_listen=HostPort("127.0.0.1", 0))
    )
    try:
        async with auth.channel() as channel:
            await register(channel, "alice")
            with pytest.raises(grpc.aio.AioRpcError):
                await users_pb2_grpc.UserServiceStub(channel).GetUser(
                    users_pb2.GetUserRequest(username="alice")
                )
        assert auth.metrics_port is not None
        text = await asyncio.to_thread(scrape, auth.metrics_port)
    finally:
        await auth.stop()
    assert (
        'grpc_server_handled_total{grpc_code="OK",grpc_method="CreateUser",'
        'grpc_service="meshchat.auth.v1.UserService",grpc_type="unary"} 1.0' in text
    )
    assert 'grpc_code="UNAUTHENTICATED",grpc_method="GetUser"' in text
    assert 'grpc_server_handling_seconds_bucket{grpc_method="CreateUser"' in text
    assert "grpc_server_in_flight{" in text
    assert "process_resident_memory_bytes" in text


def slow_service(release: asyncio.Event) -> ServiceRegistration:
    """A service whose one method answers only once ``release`` is set."""

    async def wait(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        await release.wait()
        return request

    handler = grpc.method_handlers_generic_handler(
        "test.Slow", {"Wait": grpc.unary_unary_rpc_method_handler(wait)}
    )
    return ServiceRegistration(
        "test.Slow", lambda server: server.add_generic_rpc_handlers((handler,))
    )


async def wait_until_in_flight(server: GrpcServer, deadline: float = 10) -> None:
    labels = {"grpc_service": "test.Slow", "grpc_method": "Wait", "grpc_type": "unary"}
    async with asyncio.timeout(deadline):
        while server.registry.get_sample_value("grpc_server_in_flight", labels) != 1:  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # polling a metric; no event exists to wait on


@pytest.mark.parametrize(
    ("released", "expected"), [(True, None), (False, grpc.StatusCode.CANCELLED)]
)
async def test_stop_lets_in_flight_calls_finish_within_the_grace_period(
    released: bool, expected: grpc.StatusCode | None
) -> None:
    release = asyncio.Event()
    server = GrpcServer(loopback_settings(), services=[slow_service(release)])
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        wait: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            "/test.Slow/Wait"
        )
        call = wait(b"ping", timeout=30)
        await wait_until_in_flight(server)
        stopping = asyncio.create_task(server.stop(grace=1.0))
        health = health_stub(channel)
        if released:
            release.set()
            assert await call == b"ping"
        else:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call
            assert info.value.code() in (expected, grpc.StatusCode.UNAVAILABLE)
        await stopping
        with pytest.raises(grpc.aio.AioRpcError):
            await health.Check(health_pb2.HealthCheckRequest(), timeout=2)
