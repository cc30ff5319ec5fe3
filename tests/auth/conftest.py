"""Fixtures of the auth tests: a running auth service on SQLite, or on each backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc.aio
import pytest

from meshchat.auth.v1 import access_pb2_grpc, auth_pb2_grpc, users_pb2_grpc
from tests.support.stack import RunningAuth


class Stubs:
    """The auth API's stubs on one channel."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.users = users_pb2_grpc.UserServiceStub(channel)
        self.auth = auth_pb2_grpc.AuthServiceStub(channel)
        self.access = access_pb2_grpc.AccessServiceStub(channel)


@pytest.fixture
async def stubs(auth: RunningAuth) -> AsyncIterator[Stubs]:
    """Stubs for the SQLite auth service."""
    async with auth.channel() as channel:
        yield Stubs(channel)


@pytest.fixture
async def stubs_any(auth_any: RunningAuth) -> AsyncIterator[Stubs]:
    """Stubs for the auth service of each backend."""
    async with auth_any.channel() as channel:
        yield Stubs(channel)
