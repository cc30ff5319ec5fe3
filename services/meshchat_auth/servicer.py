"""gRPC servicers of the auth service: proto in, use case, proto out. Nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import grpc.aio
from google.protobuf import empty_pb2, timestamp_pb2

from meshchat.auth.v1 import (
    access_pb2,
    access_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    events_pb2,
    events_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
)
from meshchat_auth.domain import AccountEvent, IssuedTokens, User
from meshchat_auth.events import AccountEventFeed
from meshchat_auth.service import AccessChecker, AccountService, SessionService
from meshchat_runtime.clients import ClientAddresses
from meshchat_runtime.identity import Role
from meshchat_runtime.interceptors import bearer_token, current_principal, optional_principal

__all__ = ["AccessServicer", "AccountEventServicer", "AuthServicer", "UserServicer"]

Context = grpc.aio.ServicerContext[Any, Any]


def _timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _role(value: int) -> Role | None:
    return Role(value) if value in (Role.USER, Role.ADMIN) else None


def user_to_proto(user: User, *, private: bool) -> users_pb2.User:
    """A user as the API shows it; the email only when ``private`` fields may be seen."""
    return users_pb2.User(
        id=user.id,
        username=user.username,
        email=user.email if private else "",
        role=int(user.role),  # type: ignore[arg-type]
        create_time=_timestamp(user.created_at),
        update_time=_timestamp(user.updated_at),
    )


def tokens_to_proto(tokens: IssuedTokens) -> auth_pb2.TokenPair:
    """A token pair as the API returns it."""
    return auth_pb2.TokenPair(
        access_token=tokens.access_token,
        access_token_expire_time=_timestamp(tokens.access_expires_at),
        refresh_token=tokens.refresh_token,
        refresh_token_expire_time=_timestamp(tokens.refresh_expires_at),
        user=user_to_proto(tokens.user, private=True),
    )


class UserServicer(users_pb2_grpc.UserServiceServicer):
    """meshchat.auth.v1.UserService."""

    def __init__(self, accounts: AccountService, addresses: ClientAddresses) -> None:
        self._accounts = accounts
        self._addresses = addresses

    async def CreateUser(
        self, request: users_pb2.CreateUserRequest, context: Context
    ) -> users_pb2.User:
        user = await self._accounts.create(
            optional_principal(),
            username=request.username,
            email=request.email,
            password=request.password,
            password_confirm=request.password_confirm,
            role=_role(request.role),
        )
        return user_to_proto(user, private=True)

    async def GetUser(self, request: users_pb2.GetUserRequest, context: Context) -> users_pb2.User:
        caller = current_principal()
        user = await self._accounts.get(user_id=request.id, username=request.username)
        return user_to_proto(user, private=self._accounts.may_see_private_fields(caller, user))

    async def LookupUsers(
        self, request: users_pb2.LookupUsersRequest, context: Context
    ) -> users_pb2.LookupUsersResponse:
        users = await self._accounts.lookup(list(request.usernames))
        return users_pb2.LookupUsersResponse(users=[user_to_proto(u, private=False) for u in users])

    async def UpdateUser(
        self, request: users_pb2.UpdateUserRequest, context: Context
    ) -> users_pb2.User:
        user = await self._accounts.update(
            current_principal(),
            request.id,
            email=request.email if request.HasField("email") else None,
            password=request.password if request.HasField("password") else None,
            password_confirm=request.password_confirm
            if request.HasField("password_confirm")
            else None,
            role=_role(request.role) if request.HasField("role") else None,
            current_password=request.current_password,
            address=self._addresses.of(context),
        )
        return user_to_proto(user, private=True)

    async def DeleteUser(
        self, request: users_pb2.DeleteUserRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._accounts.delete(
            current_principal(),
            request.id,
            current_password=request.current_password,
            address=self._addresses.of(context),
        )
        return empty_pb2.Empty()

    async def ListUsers(
        self, request: users_pb2.ListUsersRequest, context: Context
    ) -> users_pb2.ListUsersResponse:
        page = await self._accounts.list(current_principal(), request.page_size, request.page_token)
        return users_pb2.ListUsersResponse(
            users=[user_to_proto(u, private=True) for u in page.users],
            next_page_token=page.next_page_token,
        )


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    """meshchat.auth.v1.AuthService."""

    def __init__(self, sessions: SessionService, addresses: ClientAddresses) -> None:
        self._sessions = sessions
        self._addresses = addresses

    async def Login(self, request: auth_pb2.LoginRequest, context: Context) -> auth_pb2.TokenPair:
        tokens = await self._sessions.login(
            request.username, request.password, self._addresses.of(context)
        )
        return tokens_to_proto(tokens)

    async def Refresh(
        self, request: auth_pb2.RefreshRequest, context: Context
    ) -> auth_pb2.TokenPair:
        return tokens_to_proto(await self._sessions.refresh(request.refresh_token))

    async def Logout(self, request: auth_pb2.LogoutRequest, context: Context) -> empty_pb2.Empty:
        await self._sessions.logout(request.refresh_token)
        return empty_pb2.Empty()

    async def LogoutEverywhere(
        self, request: auth_pb2.LogoutEverywhereRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._sessions.logout_everywhere(
            current_principal(),
            request.user_id,
            current_password=request.current_password,
            address=self._addresses.of(context),
        )
        return empty_pb2.Empty()

    async def GetJwks(self, request: auth_pb2.GetJwksRequest, context: Context) -> auth_pb2.Jwks:
        return auth_pb2.Jwks(keys=[auth_pb2.Jwk(**key) for key in self._sessions.jwks()])


class AccessServicer(access_pb2_grpc.AccessServiceServicer):
    """meshchat.auth.v1.AccessService."""

    def __init__(self, checker: AccessChecker) -> None:
        self._checker = checker

    async def Check(
        self, request: access_pb2.CheckRequest, context: Context
    ) -> access_pb2.CheckResponse:
        principal = await self._checker.check(bearer_token(context), request.endpoint)
        return access_pb2.CheckResponse(
            user_id=principal.user_id,
            username=principal.username,
            role=int(principal.role),  # type: ignore[arg-type]
            expires_at=int(principal.expires_at),
            expire_time=timestamp_pb2.Timestamp(
                seconds=int(principal.expires_at),
                nanos=int(principal.expires_at % 1 * 1_000_000_000),
            ),
        )


def event_to_proto(event: AccountEvent) -> events_pb2.AccountEvent:
    """An account event as the API shows it."""
    return events_pb2.AccountEvent(
        seq=event.seq,
        user_id=event.user_id,
        kind=int(event.kind),  # type: ignore[arg-type]
        occur_time=_timestamp(event.occurred_at),
        kept_session_id=event.kept_session_id,
    )


class AccountEventServicer(events_pb2_grpc.AccountEventServiceServicer):
    """meshchat.auth.v1.AccountEventService."""

    def __init__(self, feed: AccountEventFeed) -> None:
        self._feed = feed

    async def Watch(
        self, request: events_pb2.WatchAccountEventsRequest, context: Context
    ) -> AsyncIterator[events_pb2.AccountEventBatch]:
        async for batch in self._feed.watch(request.after_seq):
            yield events_pb2.AccountEventBatch(
                events=[event_to_proto(e) for e in batch.events], head_seq=batch.head_seq
            )
