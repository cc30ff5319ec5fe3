"""The auth API as its real-server tests call it."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc.aio

from meshchat.auth.v1 import access_pb2_grpc, auth_pb2, auth_pb2_grpc, users_pb2_grpc
from meshchat_auth.domain import UserChanges
from meshchat_runtime.identity import Role
from tests.support.passwords import PASSWORD
from tests.support.stack import RunningAuth, register_and_login

__all__ = ["Stubs", "login_admin"]


class Stubs:
    """The auth API's stubs on one channel."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.users = users_pb2_grpc.UserServiceStub(channel)
        self.auth = auth_pb2_grpc.AuthServiceStub(channel)
        self.access = access_pb2_grpc.AccessServiceStub(channel)


async def login_admin(stubs: Stubs, auth: RunningAuth, username: str = "root") -> str:
    """Sign up a user, make it an admin directly in the store, log in; its access token."""
    tokens = await register_and_login(stubs.channel, username)
    await auth.app.store.update_user(
        tokens.user.id, UserChanges(role=Role.ADMIN), datetime.now(UTC)
    )
    pair = await stubs.auth.Login(auth_pb2.LoginRequest(username=username, password=PASSWORD))
    return pair.access_token
