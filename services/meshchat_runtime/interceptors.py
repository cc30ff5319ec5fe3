"""Server interceptors: domain errors to status codes, and authentication with access rules."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
from collections.abc import AsyncIterator, Collection
from typing import Any, NoReturn, Protocol

import grpc
import grpc.aio

from meshchat_runtime.access import AccessPolicy, Decision
from meshchat_runtime.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from meshchat_runtime.handlers import BehaviorInterceptor, Context, StreamBehavior, UnaryBehavior
from meshchat_runtime.identity import Principal

__all__ = [
    "INFRASTRUCTURE_SERVICES",
    "AuthInterceptor",
    "Authenticator",
    "ErrorInterceptor",
    "bearer_token",
    "current_principal",
    "optional_principal",
    "status_code_for",
]

log = logging.getLogger(__name__)

INFRASTRUCTURE_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)

_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "meshchat_principal", default=None
)

_STATUS_CODES: tuple[tuple[type[DomainError], grpc.StatusCode], ...] = (
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
)


def status_code_for(error: DomainError) -> grpc.StatusCode:
    """The gRPC status code of a domain error: the single mapping in the code base."""
    for error_type, code in _STATUS_CODES:
        if isinstance(error, error_type):
            return code
    return grpc.StatusCode.UNKNOWN


def current_principal() -> Principal:
    """The authenticated caller of the RPC being served.

    Only valid inside a method that the auth interceptor let through with a token.
    """
    principal = _principal.get()
    if principal is None:
        raise Unauthenticated("this call needs an access token")
    return principal


def optional_principal() -> Principal | None:
    """The caller, or None when the (public) RPC was called without a valid token."""
    return _principal.get()


def bearer_token(context: Context) -> str | None:
    """The token of the ``authorization: Bearer ...`` metadata, or None when absent."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return ""
    return None


async def _abort(context: Context, error: DomainError) -> NoReturn:
    if isinstance(error, ResourceExhausted):
        context.set_trailing_metadata(
            (("retry-after-seconds", str(max(1, math.ceil(error.retry_after)))),)
        )
    await context.abort(status_code_for(error), error.message)


class ErrorInterceptor(BehaviorInterceptor):
    """Maps the domain errors that escape a servicer to their status codes."""

    def wrap_unary(self, method: str, kind: str, behavior: UnaryBehavior) -> UnaryBehavior:
        async def mapped(request: Any, context: Context) -> Any:
            try:
                return await behavior(request, context)
            except DomainError as error:
                await _abort(context, error)

        return mapped

    def wrap_stream(self, method: str, kind: str, behavior: StreamBehavior) -> StreamBehavior:
        async def mapped(request: Any, context: Context) -> AsyncIterator[Any]:
            try:
                async for response in behavior(request, context):
                    yield response
            except DomainError as error:
                await _abort(context, error)

        return mapped


class Authenticator(Protocol):
    """Turns a bearer token into a principal for a given method."""

    async def authenticate(self, token: str, method: str) -> Principal:
        """The token's principal; raise Unauthenticated when it is not valid."""
        ...


class AuthInterceptor(BehaviorInterceptor):
    """Authenticates every call and enforces the access rule of its method.

    Streams are checked once, when they open. Infrastructure services (health, reflection)
    pass without a token. Public methods accept a missing token; a token that is present
    must be valid even there, so that a broken client learns about it.
    """

    def __init__(
        self,
        authenticator: Authenticator,
        policy: AccessPolicy,
        exempt_services: Collection[str] = INFRASTRUCTURE_SERVICES,
    ) -> None:
        super().__init__()
        self._authenticator = authenticator
        self._policy = policy
        self._exempt = frozenset(exempt_services)

    async def _admit(self, method: str, context: Context) -> Principal | None:
        token = bearer_token(context)
        principal: Principal | None = None
        if token == "":
            raise Unauthenticated("authorization metadata must be 'Bearer <access token>'")
        if token is not None:
            principal = await self._authenticator.authenticate(token, method)
        decision = self._policy.decide(method, principal)
        if decision is Decision.UNAUTHENTICATED:
            raise Unauthenticated("this call needs an access token")
        if decision is Decision.PERMISSION_DENIED:
            if self._policy.rule_for(method) is None:
                raise PermissionDenied(f"{method} is not a known endpoint")
            raise PermissionDenied(
                f"role {principal.role.name if principal else '-'} may not call {method}"
            )
        return principal

    def _exempt_method(self, method: str) -> bool:
        return method.lstrip("/").partition("/")[0] in self._exempt

    def wrap_unary(self, method: str, kind: str, behavior: UnaryBehavior) -> UnaryBehavior:
        if self._exempt_method(method):
            return behavior

        async def authenticated(request: Any, context: Context) -> Any:
            try:
                principal = await self._admit(method, context)
            except DomainError as error:
                await _abort(context, error)
            reset = _principal.set(principal)
            try:
                return await behavior(request, context)
            finally:
                _principal.reset(reset)

        return authenticated

    def wrap_stream(self, method: str, kind: str, behavior: StreamBehavior) -> StreamBehavior:
        if self._exempt_method(method):
            return behavior

        async def authenticated(request: Any, context: Context) -> AsyncIterator[Any]:
            try:
                principal = await self._admit(method, context)
            except DomainError as error:
                await _abort(context, error)
            reset = _principal.set(principal)
            try:
                async for response in behavior(request, context):
                    yield response
            finally:
                # A stream closed by the garbage collector runs this in another context.
                with contextlib.suppress(ValueError):
                    _principal.reset(reset)

        return authenticated
