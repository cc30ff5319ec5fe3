"""The one place where failures become a one-line message and an exit code.

Every failure the user can meet is a :class:`CliError`: what went wrong and what to do, on a
single line, with an exit code from :class:`ExitCode`. gRPC errors are translated by
:func:`rpc_failure`, which knows which service was called and what the user was trying to do.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

import grpc
import typer

if TYPE_CHECKING:
    from meshchat_cli.endpoints import Endpoint

__all__ = ["TRANSIENT", "CliError", "ExitCode", "rpc_failure"]


class ExitCode(enum.IntEnum):
    """The exit codes of ``meshchat``; scripts may rely on them."""

    FAILURE = 1
    """The server refused the request (bad input, a duplicate name) or failed."""
    USAGE = 2
    """The command line is wrong (unknown option, bad address)."""
    NOT_LOGGED_IN = 3
    """No login for this server, the login has ended, or the password is wrong."""
    NOT_FOUND = 4
    """No such chat or user."""
    PERMISSION_DENIED = 5
    """The user may not do this (not a member, not the owner, not an admin)."""
    THROTTLED = 6
    """Too many attempts; the message says how long to wait."""
    UNREACHABLE = 7
    """The server cannot be reached or did not answer in time."""


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


class CliError(Exception):
    """A failure reported to the user as ``error: <message>`` with a non-zero exit code.

    ``status`` is the gRPC status code behind it, when there is one.
    """

    def __init__(
        self,
        message: str,
        exit_code: ExitCode = ExitCode.FAILURE,
        status: grpc.StatusCode | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.status = status

    def show(self) -> None:
        """Print the one line to standard error (red on a terminal)."""
        typer.echo(f"{typer.style('error:', fg='red', bold=True)} {self.message}", err=True)


def _unreachable_reason(details: str) -> str | None:
    """A short cause of a transport failure, or None when the server itself answered."""
    text = details.lower()
    if any(word in text for word in ("handshake", "ssl", "tls", "certificate", "verif")):
        return "TLS handshake failed"
    if "connection refused" in text:
        return "connection refused"
    if "resolving" in text or "dns" in text or "name or service not known" in text:
        return "unknown host"
    if "timeout" in text or "timed out" in text:
        return "connection timed out"
    if "failed to connect" in text or "socket closed" in text or "connection reset" in text:
        return "connection failed"
    if "broken pipe" in text or "goaway" in text or "end of tcp stream" in text:
        return "connection lost"
    return None


def _retry_after(error: grpc.RpcError) -> str | None:
    for item in error.trailing_metadata() or ():
        if item.key == "retry-after-seconds":
            return item.value.decode() if isinstance(item.value, bytes) else str(item.value)
    return None


def rpc_failure(
    error: grpc.RpcError,
    endpoint: Endpoint,
    action: str,
    hints: Mapping[grpc.StatusCode, str] | None = None,
) -> CliError:
    """Translate a failed call to ``endpoint`` while trying to ``action`` (for example
    "send the message") into a :class:`CliError`. ``hints`` replace the advice given for
    a status code where the caller knows better (a wrong password at login)."""
    code = error.code()
    hint = (hints or {}).get(code)
    details = (error.details() or "").strip()
    where = f"the {endpoint.service} service at {endpoint.address}"
    if code is grpc.StatusCode.UNAVAILABLE:
        reason = _unreachable_reason(details)
        if reason == "TLS handshake failed":
            hint = (
                "pass --ca-file for a private CA, --server-name if the certificate names "
                "another host, or --insecure if the server speaks plaintext"
                if endpoint.tls
                else "the server may expect TLS: drop --insecure"
            )
            return CliError(f"cannot reach {where}: {reason}; {hint}", ExitCode.UNREACHABLE, code)
        if reason is not None:
            return CliError(
                f"cannot reach {where} ({reason}); is it running? `make run` starts the local "
                f"stack, or point --server / --{endpoint.service}-addr at yours",
                ExitCode.UNREACHABLE,
                code,
            )
        return CliError(
            f"{where} is unavailable: {details}; try again shortly", ExitCode.UNREACHABLE, code
        )
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return CliError(
            f"{where} did not answer in time; check the address and try again",
            ExitCode.UNREACHABLE,
            code,
        )
    if code is grpc.StatusCode.UNAUTHENTICATED:
        return CliError(
            f"cannot {action}: {details}; {hint or 'run `meshchat login USERNAME`'}",
            ExitCode.NOT_LOGGED_IN,
            code,
        )
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        wait = _retry_after(error)
        reason = re.sub(r";?\s*try again in \d+ ?s\.?$", "", details) or "too many requests"
        when = f"wait {wait} s" if wait else "wait a while"
        return CliError(
            f"cannot {action}: {reason}; {when}, then try again", ExitCode.THROTTLED, code
        )
    if code is grpc.StatusCode.NOT_FOUND:
        if hint is None:
            hint = (
                "`meshchat chats` lists your chats"
                if endpoint.service == "chat"
                else "check the username or id"
            )
        return CliError(f"cannot {action}: {details}; {hint}", ExitCode.NOT_FOUND, code)
    if code is grpc.StatusCode.PERMISSION_DENIED:
        if hint is None:
            hint = (
                "ask the chat's owner or an admin" if endpoint.service == "chat" else "ask an admin"
            )
        return CliError(f"cannot {action}: {details}; {hint}", ExitCode.PERMISSION_DENIED, code)
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        suffix = f"; {hint}" if hint else ""
        return CliError(f"cannot {action}: {details}{suffix}", ExitCode.FAILURE, code)
    if code is grpc.StatusCode.ALREADY_EXISTS:
        return CliError(
            f"cannot {action}: {details}; {hint or 'choose another'}", ExitCode.FAILURE, code
        )
    if code is grpc.StatusCode.UNIMPLEMENTED:
        return CliError(
            f"{where} does not offer this call; check that --server / "
            f"--{endpoint.service}-addr points at meshchat's {endpoint.service} service",
            ExitCode.FAILURE,
            code,
        )
    return CliError(
        f"{where} could not {action}: {details or code.name}; try again, and check the "
        "server's logs if it persists",
        ExitCode.FAILURE,
        code,
    )
