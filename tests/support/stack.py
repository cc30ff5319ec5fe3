"""Start real meshchat servers on loopback ports (port 0) inside the test's event loop."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from meshchat.auth.v1 import auth_pb2, auth_pb2_grpc, users_pb2, users_pb2_grpc
from meshchat_auth.bootstrap import AuthApp, build_server
from meshchat_auth.config import AuthConfig, TokenPolicy
from meshchat_chat.bootstrap import ChatApp
from meshchat_chat.bootstrap import build_server as build_chat_server
from meshchat_chat.config import ChatConfig
from meshchat_runtime.settings import (
    HostPort,
    ServerSettings,
    parse_database_url,
    parse_host_port,
)
from tests.support.passwords import PASSWORD

__all__ = [
    "RunningAuth",
    "RunningChat",
    "bearer",
    "register",
    "register_and_login",
    "start_auth",
    "start_chat",
]


def loopback_settings(**overrides: Any) -> ServerSettings:
    """Server settings on a free loopback port, with a fast dependency watchdog and no
    /metrics endpoint (stopping one takes half a second; pass ``metrics_listen`` to test it)."""
    settings = ServerSettings(
        listen=HostPort("127.0.0.1", 0),
        metrics_listen=None,
        grace_period=2.0,
        dependency_check_interval=0.2,
    )
    return dataclasses.replace(settings, **overrides)


@dataclass
class RunningAuth:
    """An auth service serving on a loopback port."""

    app: AuthApp

    @property
    def config(self) -> AuthConfig:
        """The configuration it runs with."""
        return self.app.config

    @property
    def address(self) -> str:
        """Its gRPC address, HOST:PORT."""
        return f"127.0.0.1:{self.app.server.port}"

    @property
    def metrics_port(self) -> int | None:
        """Its /metrics port."""
        return self.app.server.metrics_port

    def channel(self) -> grpc.aio.Channel:
        """A new plaintext channel to it (close it, or use ``async with``)."""
        return grpc.aio.insecure_channel(self.address)

    async def stop(self) -> None:
        """Stop it quickly."""
        await self.app.stop(grace=0.5)


async def start_auth(
    tmp_path: Path,
    database_url: str | None = None,
    *,
    keys_dir: Path | None = None,
    tokens: TokenPolicy | None = None,
    server: ServerSettings | None = None,
    **config_overrides: Any,
) -> RunningAuth:
    """Build and start an auth service; SQLite under ``tmp_path`` unless a URL is given.
    ``config_overrides`` are AuthConfig fields (hashing, trust_forwarded_for, ...)."""
    config = AuthConfig(
        server=server or loopback_settings(),
        database=parse_database_url(database_url or f"sqlite:///{tmp_path / 'auth.db'}"),
        keys_dir=keys_dir or tmp_path / "auth-keys",
        tokens=tokens or TokenPolicy(),
        **config_overrides,
    )
    app = await build_server(config)
    await app.start()
    return RunningAuth(app)


def bearer(access_token: str) -> tuple[tuple[str, str]]:
    """Call metadata carrying an access token."""
    return (("authorization", f"Bearer {access_token}"),)


async def register(
    channel: grpc.aio.Channel, username: str, password: str = PASSWORD, email: str = ""
) -> users_pb2.User:
    """Sign up a user."""
    return await users_pb2_grpc.UserServiceStub(channel).CreateUser(
        users_pb2.CreateUserRequest(
            username=username, email=email, password=password, password_confirm=password
        ),
        timeout=10,
    )


async def register_and_login(
    channel: grpc.aio.Channel, username: str, password: str = PASSWORD
) -> auth_pb2.TokenPair:
    """Sign up a user and log in; returns the token pair."""
    await register(channel, username, password)
    return await auth_pb2_grpc.AuthServiceStub(channel).Login(
        auth_pb2.LoginRequest(username=username, password=password), timeout=10
    )


# --- the chat service -------------------------------------------------------------------------


@dataclass
class RunningChat:
    """A chat service serving on a loopback port."""

    app: ChatApp

    @property
    def config(self) -> ChatConfig:
        """The configuration it runs with."""
        return self.app.config

    @property
    def address(self) -> str:
        """Its gRPC address, HOST:PORT."""
        return f"127.0.0.1:{self.app.server.port}"

    def channel(self) -> grpc.aio.Channel:
        """A new plaintext channel to it (close it, or use ``async with``)."""
        return grpc.aio.insecure_channel(self.address)

    async def stop(self) -> None:
        """Stop it quickly."""
        await self.app.stop(grace=0.5)


async def start_chat(
    tmp_path: Path,
    auth: RunningAuth | str,
    database_url: str | None = None,
    *,
    server: ServerSettings | None = None,
    **config_overrides: Any,
) -> RunningChat:
    """Build and start a chat service that trusts ``auth`` (a running auth service or its
    address); SQLite under ``tmp_path`` unless a URL is given. ``config_overrides`` are
    ChatConfig fields (authz_mode, heartbeat_interval, stream_queue_size, ...)."""
    if isinstance(auth, RunningAuth):
        auth_addr = auth.address
        config_overrides.setdefault("issuer", auth.config.tokens.issuer)
        config_overrides.setdefault("audience", auth.config.tokens.audience)
    else:
        auth_addr = auth
    config = ChatConfig(
        server=server or loopback_settings(),
        database=parse_database_url(database_url or f"sqlite:///{tmp_path / 'chat.db'}"),
        auth_addr=parse_host_port(auth_addr, "auth address"),
        **config_overrides,
    )
    app = await build_chat_server(config)
    await app.start()
    return RunningChat(app)
