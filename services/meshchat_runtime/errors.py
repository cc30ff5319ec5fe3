"""Domain errors raised by the service layers.

The service layers never import grpc; the error interceptor maps these exceptions to
gRPC status codes in one place (see ``meshchat_runtime.interceptors``).
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "DomainError",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
]


class DomainError(Exception):
    """Base class of every error a use case reports to its caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):
    """The request is malformed; the message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class NotFound(DomainError):
    """The named entity does not exist (or the caller may not know that it does)."""


class AlreadyExists(DomainError):
    """An entity with the same unique key exists."""


class PermissionDenied(DomainError):
    """The caller is known but may not do this."""


class Unauthenticated(DomainError):
    """The caller's credentials are missing or invalid."""


class FailedPrecondition(DomainError):
    """The system is not in a state that allows the operation."""


class ResourceExhausted(DomainError):
    """A limit was reached; ``retry_after`` says when trying again makes sense."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(DomainError):
    """A dependency is unreachable; retrying later may succeed."""
