"""The CLI's error vocabulary: :class:`CliError` and the exit codes of :class:`ExitCode`.

Every failure the user can meet is a :class:`CliError`: what went wrong and what to do, on a
single line, with an exit code. This module imports nothing of the CLI's own, so that every
other module may raise one; :mod:`meshchat_cli.failures` translates failed gRPC calls.
"""

from __future__ import annotations

import enum

import grpc
import typer

__all__ = ["CliError", "ExitCode"]


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
