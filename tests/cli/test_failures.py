"""The translation table of failed calls: every status code gets its exit code and a message
that says what to do (the real-server tests show the common ones end to end)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, cast

import grpc
import pytest

from meshchat_cli.endpoints import Endpoint
from meshchat_cli.errors import ExitCode
from meshchat_cli.failures import rpc_failure

CHAT = Endpoint("chat", "chat.example.org:443", tls=True)
AUTH = Endpoint("auth", "127.0.0.1:50051", tls=False)


class _Metadatum(NamedTuple):
    key: str
    value: str


class _Failed(grpc.RpcError):
    """A failed call as grpc reports one: code, details, trailing metadata."""

    def __init__(
        self, code: grpc.StatusCode, details: str, metadata: Sequence[_Metadatum] = ()
    ) -> None:
        self._code, self._details, self._metadata = code, details, metadata

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[grpc._Metadatum, ...]:
        # grpc's metadatum type exists for type checking only; ours has the same fields.
        return cast("tuple[grpc._Metadatum, ...]", tuple(self._metadata))


def _wait(seconds: int) -> _Failed:
    return _Failed(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"too many failed logins; try again in {seconds} s",
        [_Metadatum("retry-after-seconds", str(seconds))],
    )


@pytest.mark.parametrize(
    ("error", "endpoint", "exit_code", "message"),
    [
        (
            _Failed(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses"),
            CHAT,
            ExitCode.UNREACHABLE,
            "cannot reach the chat service at chat.example.org:443 (connection failed); is it "
            "running? `make run` starts the local stack, or point --server / --chat-addr at yours",
        ),
        (
            _Failed(grpc.StatusCode.UNAVAILABLE, "Ssl handshake failed"),
            AUTH,
            ExitCode.UNREACHABLE,
            "cannot reach the auth service at 127.0.0.1:50051: TLS handshake failed; the server "
            "may expect TLS: drop --insecure",
        ),
        (
            _Failed(grpc.StatusCode.UNAVAILABLE, "draining"),
            CHAT,
            ExitCode.UNREACHABLE,
            "the chat service at chat.example.org:443 is unavailable: draining; try again shortly",
        ),
        (
            _Failed(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"),
            CHAT,
            ExitCode.UNREACHABLE,
            "the chat service at chat.example.org:443 did not answer in time; check the address "
            "and try again",
        ),
        (
            _Failed(grpc.StatusCode.UNAUTHENTICATED, "token expired"),
            CHAT,
            ExitCode.NOT_LOGGED_IN,
            "cannot send the message as alice: token expired; run `meshchat login USERNAME`",
        ),
        (
            _wait(40),
            AUTH,
            ExitCode.THROTTLED,
            "cannot send the message: too many failed logins; wait 40 seconds, then try again",
        ),
        (
            _wait(897),
            AUTH,
            ExitCode.THROTTLED,
            "cannot send the message: too many failed logins; "
            "wait about 15 minutes, then try again",
        ),
        (
            _wait(7000),
            AUTH,
            ExitCode.THROTTLED,
            "cannot send the message: too many failed logins; wait about 2 hours, then try again",
        ),
        (
            _Failed(grpc.StatusCode.NOT_FOUND, "chat 42 not found"),
            CHAT,
            ExitCode.NOT_FOUND,
            "cannot send the message as alice: chat 42 not found; `meshchat chats` lists your "
            "chats",
        ),
        (
            _Failed(
                grpc.StatusCode.PERMISSION_DENIED,
                "role USER may not call /meshchat.auth.v1.UserService/ListUsers",
            ),
            AUTH,
            ExitCode.PERMISSION_DENIED,
            "cannot send the message as alice: that needs an admin; ask an admin",
        ),
        (
            _Failed(grpc.StatusCode.FAILED_PRECONDITION, "the owner cannot leave the chat"),
            CHAT,
            ExitCode.FAILURE,
            "cannot send the message as alice: the owner cannot leave the chat",
        ),
        (
            _Failed(grpc.StatusCode.INVALID_ARGUMENT, "text: must not be empty"),
            CHAT,
            ExitCode.FAILURE,
            "cannot send the message: text: must not be empty",
        ),
        (
            _Failed(grpc.StatusCode.ALREADY_EXISTS, "username 'alice' is taken"),
            AUTH,
            ExitCode.FAILURE,
            "cannot send the message: username 'alice' is taken; choose another",
        ),
        (
            _Failed(grpc.StatusCode.UNIMPLEMENTED, "Method not found!"),
            CHAT,
            ExitCode.FAILURE,
            "the chat service at chat.example.org:443 does not offer this call; check that "
            "--server / --chat-addr points at meshchat's chat service",
        ),
        (
            _Failed(grpc.StatusCode.INTERNAL, ""),
            CHAT,
            ExitCode.FAILURE,
            "the chat service at chat.example.org:443 could not send the message: INTERNAL; try "
            "again, and check the server's logs if it persists",
        ),
    ],
)
def test_every_status_code_has_an_exit_code_and_advice(
    error: _Failed, endpoint: Endpoint, exit_code: ExitCode, message: str
) -> None:
    failure = rpc_failure(error, endpoint, "send the message", user="alice")
    assert (failure.exit_code, failure.message, failure.status) == (
        exit_code,
        message,
        error.code(),
    )


def test_the_caller_s_advice_wins_over_the_table_s() -> None:
    error = _Failed(grpc.StatusCode.UNAUTHENTICATED, "wrong username or password")
    hints = {grpc.StatusCode.UNAUTHENTICATED: "check both and try again"}
    assert rpc_failure(error, AUTH, "log in", hints).message == (
        "cannot log in: wrong username or password; check both and try again"
    )
