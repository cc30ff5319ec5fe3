"""Failed gRPC calls as :class:`~meshchat_cli.errors.CliError`: one table from status code
to exit code and message.

A message says what went wrong and what to do. The caller tells what the user was trying to
do ("send the message") and may give better advice than the table's for a status code (a
wrong password at login).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import grpc

from meshchat_cli.endpoints import Endpoint
from meshchat_cli.errors import CliError, ExitCode

__all__ = ["TRANSIENT", "rpc_failure"]

# Codes after which the same request may succeed later: the session retries them.
TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
    }
)


@dataclass(frozen=True, slots=True)
class _Failed:
    """One failed call, as the messages of the table need it."""

    error: grpc.RpcError
    endpoint: Endpoint
    action: str
    hint: str | None
    """The advice: the caller's, else the table's; None when there is none."""
    user: str | None
    """Who the call was made as, when the answer depends on it."""

    @property
    def details(self) -> str:
        return _without_internal_names((self.error.details() or "").strip())

    @property
    def where(self) -> str:
        return f"the {self.endpoint.service} service at {self.endpoint.address}"


_Message = Callable[[_Failed], str]


# The access check's refusal names the role and the gRPC method; the user knows neither.
_ROLE_REFUSAL = re.compile(r"role (?P<role>\S+) may not call /\S+")


def _without_internal_names(details: str) -> str:
    match = _ROLE_REFUSAL.fullmatch(details)
    if match is None:
        return details
    return "that needs an admin" if match["role"] == "USER" else "the server allows it to nobody"


def _refused(failed: _Failed) -> str:
    """The server answered and refused: what, as whom, why and (when known) what to do."""
    advice = f"; {failed.hint}" if failed.hint else ""
    who = f" as {failed.user}" if failed.user else ""
    return f"cannot {failed.action}{who}: {failed.details}{advice}"


# Substrings of a transport failure's details, and the short cause they stand for.
_TRANSPORT_CAUSES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("handshake", "ssl", "tls", "certificate", "verif"), "TLS handshake failed"),
    (("connection refused",), "connection refused"),
    (("resolving", "dns", "name or service not known"), "unknown host"),
    (("timeout", "timed out"), "connection timed out"),
    (("failed to connect", "socket closed", "connection reset"), "connection failed"),
    (("broken pipe", "goaway", "end of tcp stream"), "connection lost"),
)


def _transport_cause(details: str) -> str | None:
    """A short cause of a transport failure, or None when the server itself answered."""
    text = details.lower()
    for words, cause in _TRANSPORT_CAUSES:
        if any(word in text for word in words):
            return cause
    return None


def _unavailable(failed: _Failed) -> str:
    cause = _transport_cause(failed.details)
    if cause == "TLS handshake failed":
        hint = (
            "pass --ca-file for a private CA, --server-name if the certificate names "
            "another host, or --insecure if the server speaks plaintext"
            if failed.endpoint.tls
            else "the server may expect TLS: drop --insecure"
        )
        return f"cannot reach {failed.where}: {cause}; {hint}"
    if cause is not None:
        return (
            f"cannot reach {failed.where} ({cause}); is it running? `make run` starts the "
            f"local stack, or point --server / --{failed.endpoint.service}-addr at yours"
        )
    return f"{failed.where} is unavailable: {failed.details}; try again shortly"


def _too_late(failed: _Failed) -> str:
    return f"{failed.where} did not answer in time; check the address and try again"


def _retry_after(error: grpc.RpcError) -> str | None:
    for item in error.trailing_metadata() or ():
        if item.key == "retry-after-seconds":
            return item.value.decode() if isinstance(item.value, bytes) else str(item.value)
    return None


def _about(seconds: int) -> str:
    """A wait as people say it: "40 seconds", "about 15 minutes", "about 2 hours"."""
    if seconds < 60:
        return f"{seconds} second{'' if seconds == 1 else 's'}"
    if seconds < 3600:
        minutes = round(seconds / 60)
        return f"about {minutes} minute{'' if minutes == 1 else 's'}"
    hours = round(seconds / 3600)
    return f"about {hours} hour{'' if hours == 1 else 's'}"


def _throttled(failed: _Failed) -> str:
    wait = _retry_after(failed.error)
    reason = re.sub(r";?\s*try again in \d+ ?s\.?$", "", failed.details) or "too many requests"
    when = f"wait {_about(int(wait))}" if wait and wait.isdigit() else "wait a while"
    return f"cannot {failed.action}: {reason}; {when}, then try again"


def _not_offered(failed: _Failed) -> str:
    service = failed.endpoint.service
    return (
        f"{failed.where} does not offer this call; check that --server / "
        f"--{service}-addr points at meshchat's {service} service"
    )


def _server_failed(failed: _Failed) -> str:
    what = failed.details or failed.error.code().name
    return (
        f"{failed.where} could not {failed.action}: {what}; try again, and check the "
        "server's logs if it persists"
    )


@dataclass(frozen=True, slots=True)
class _Rule:
    exit_code: ExitCode
    message: _Message
    hint: Mapping[str, str] | None = None
    """The advice per service (``auth``, ``chat``) when the caller gives none."""
    personal: bool = False
    """The answer depends on who asked: the message names the user."""


def _both(hint: str) -> Mapping[str, str]:
    return {"auth": hint, "chat": hint}


_RULES: Mapping[grpc.StatusCode, _Rule] = {
    grpc.StatusCode.UNAVAILABLE: _Rule(ExitCode.UNREACHABLE, _unavailable),
    grpc.StatusCode.DEADLINE_EXCEEDED: _Rule(ExitCode.UNREACHABLE, _too_late),
    grpc.StatusCode.UNAUTHENTICATED: _Rule(
        ExitCode.NOT_LOGGED_IN, _refused, _both("run `meshchat login USERNAME`"), personal=True
    ),
    grpc.StatusCode.RESOURCE_EXHAUSTED: _Rule(ExitCode.THROTTLED, _throttled),
    grpc.StatusCode.NOT_FOUND: _Rule(
        ExitCode.NOT_FOUND,
        _refused,
        {"auth": "check the username or id", "chat": "`meshchat chats` lists your chats"},
        personal=True,
    ),
    grpc.StatusCode.PERMISSION_DENIED: _Rule(
        ExitCode.PERMISSION_DENIED,
        _refused,
        {"auth": "ask an admin", "chat": "ask the chat's owner or an admin"},
        personal=True,
    ),
    grpc.StatusCode.FAILED_PRECONDITION: _Rule(ExitCode.FAILURE, _refused, personal=True),
    grpc.StatusCode.INVALID_ARGUMENT: _Rule(ExitCode.FAILURE, _refused),
    grpc.StatusCode.ALREADY_EXISTS: _Rule(ExitCode.FAILURE, _refused, _both("choose another")),
    grpc.StatusCode.UNIMPLEMENTED: _Rule(ExitCode.FAILURE, _not_offered),
}
_OTHERWISE = _Rule(ExitCode.FAILURE, _server_failed)


def rpc_failure(
    error: grpc.RpcError,
    endpoint: Endpoint,
    action: str,
    hints: Mapping[grpc.StatusCode, str] | None = None,
    user: str | None = None,
) -> CliError:
    """Translate a failed call to ``endpoint`` while trying to ``action`` (for example
    "send the message") as ``user`` into a :class:`CliError`. ``hints`` replace the table's
    advice for a status code where the caller knows better (a wrong password at login)."""
    code = error.code()
    rule = _RULES.get(code, _OTHERWISE)
    hint = (hints or {}).get(code) or (rule.hint or {}).get(endpoint.service)
    failed = _Failed(error, endpoint, action, hint, user if rule.personal else None)
    return CliError(rule.message(failed), rule.exit_code, code)
