"""The chat service's view of the auth service's users: ``UserService.LookupUsers`` over
gRPC, one call per request however many names it carries, made with the caller's own token
and within the caller's remaining deadline (a cancelled request cancels it)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import grpc
import grpc.aio

from meshchat.auth.v1 import users_pb2, users_pb2_grpc
from meshchat_chat.domain import Caller, UserRef
from meshchat_runtime.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)

__all__ = ["GrpcUserDirectory"]

# Names of missing users quoted in a NotFound; the rest are counted.
NAMED_MISSING = 5


def _not_found(missing: Sequence[str]) -> NotFound:
    named = ", ".join(repr(u) for u in missing[:NAMED_MISSING])
    more = len(missing) - NAMED_MISSING
    if len(missing) == 1:
        return NotFound(f"user {named} not found")
    return NotFound(f"users not found: {named}" + (f" and {more} more" if more > 0 else ""))


class GrpcUserDirectory:
    """Resolves usernames through the auth service."""

    def __init__(self, channel: grpc.aio.Channel, *, default_timeout: float = 5.0) -> None:
        self._stub = users_pb2_grpc.UserServiceStub(channel)
        self._default_timeout = default_timeout

    async def resolve(self, usernames: Sequence[str], caller: Caller) -> list[UserRef]:
        """The users named (each a valid username, matched ignoring case), in the order
        given; NotFound naming those that do not exist."""
        timeout = self._default_timeout
        if caller.deadline is not None:
            timeout = caller.deadline - time.monotonic()
            if timeout <= 0:
                raise Unavailable("the call's deadline passed before the users were resolved")
        try:
            reply = await self._stub.LookupUsers(
                users_pb2.LookupUsersRequest(usernames=usernames),
                metadata=(("authorization", f"Bearer {caller.token}"),),
                timeout=timeout,
            )
        except grpc.aio.AioRpcError as exc:
            raise _translated(exc) from None
        found = {user.username.lower(): UserRef(user.id, user.username) for user in reply.users}
        missing = [u for u in usernames if u.lower() not in found]
        if missing:
            raise _not_found(missing)
        return [found[u.lower()] for u in usernames]


def _translated(exc: grpc.aio.AioRpcError) -> Exception:
    code = exc.code()
    details = exc.details() or ""
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        # The names were checked against the same rule here first: only a changed auth
        # service can get here, and its message says what it wants.
        return InvalidArgument("member_usernames", details)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return Unauthenticated(details or "the auth service refused the token")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDenied(details or "the auth service refused")
    return Unavailable(f"the auth service cannot resolve users ({code.name})")
