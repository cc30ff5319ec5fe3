"""Asking the user: passwords without echo, confirmation of destructive commands."""

from __future__ import annotations

import sys

import typer

from meshchat_cli.errors import CliError, ExitCode

__all__ = ["PASSWORD_MAX", "PASSWORD_MIN", "confirm", "read_current_password", "read_password"]


# The API's rule for a new password (users.proto: 8 to 1024 characters). The server checks
# it too; checked here, a short password is refused before it is typed a second time.
PASSWORD_MIN, PASSWORD_MAX = 8, 1024


def _check_new(password: str) -> str:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise CliError(
            f"the password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters, got "
            f"{len(password)}; nothing changed",
            ExitCode.USAGE,
        )
    return password


def read_password(from_stdin: bool, *, new: bool, label: str = "Password") -> str:
    """The first line of standard input, or a prompt without echo. A ``new`` password is
    checked for length and, at a prompt, asked twice."""
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise CliError("--password-stdin: standard input is empty", ExitCode.USAGE)
        given = line.rstrip("\r\n")
        return _check_new(given) if new else given
    password: str = typer.prompt(label, hide_input=True)
    if not new:
        return password
    _check_new(password)
    if typer.prompt("Repeat for confirmation", hide_input=True) != password:
        raise CliError("the two passwords differ; nothing changed", ExitCode.USAGE)
    return password


def read_current_password(from_stdin: bool, why: str) -> str:
    """The user's current password, needed to ``why`` (for example "change your email"):
    the next line of standard input, or a prompt without echo at a terminal."""
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise CliError("--current-password-stdin: standard input is empty", ExitCode.USAGE)
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise CliError(
            f"to {why} your current password is needed: add --current-password-stdin and "
            "give it on the first line of standard input",
            ExitCode.USAGE,
        )
    password: str = typer.prompt("Current password", hide_input=True)
    return password


def confirm(question: str, assume_yes: bool) -> None:
    """Ask before doing something that cannot be undone; leave unless the answer is yes."""
    if assume_yes:
        return
    if not sys.stdin.isatty():
        raise CliError(
            "refusing to delete without confirmation: add --yes when not at a terminal",
            ExitCode.USAGE,
        )
    if not typer.confirm(question, default=False):
        raise CliError("nothing deleted", ExitCode.FAILURE)
