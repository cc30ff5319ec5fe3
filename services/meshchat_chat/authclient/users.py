"""The chat service's view of the auth service's users: ``UserService.GetUser`` over gRPC,
called with the caller's own token and within the caller's remaining deadline."""

from __future__ import annotations

import time

import grpc
import grpc.aio

from meshchat.auth.v1 import users_pb2, users_pb2_grpc
from meshchat_chat.domain import Caller, UserRef
from meshchat_runtime.errors import NotFound, PermissionDenied, Unauthenticated, Unavailable

__all__ = ["GrpcUserDirectory"]


class GrpcUserDirectory:
    """Resolves usernames through the auth service."""

    def __init__(self, channel: grpc.aio.Channel, *, default_timeout: float = 5.0) -> None:
        self._stub = users_pb2_grpc.UserServiceStub(channel)
        self._default_timeout = default_timeout

    async def find(self, username: str, caller: Caller) -> UserRef:
        """The user named ``username``; NotFound naming them when there is none."""
        timeout = self._default_timeout
        if caller.deadline is not None:
            timeout = caller.deadline - time.monotonic()
            if timeout <= 0:
                raise Unavailable("the call's deadline passed before the users were resolved")
        try:
            user = await self._stub.GetUser(
                users_pb2.GetUserRequest(username=username),
                metadata=(("authorization", f"Bearer {caller.token}"),),
                timeout=timeout,
            )
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise NotFound(f"user {username!r} not found") from None
            if code == grpc.StatusCode.UNAUTHENTICATED:
                raise Unauthenticated(
                    exc.details() or "the auth service refused the token"
                ) from None
            if code == grpc.StatusCode.PERMISSION_DENIED:
                raise PermissionDenied(exc.details() or "the auth service refused") from None
            raise Unavailable(f"the auth service cannot resolve users ({code.name})") from None
        return UserRef(user_id=user.id, username=user.username)
