"""Asking the user: passwords without echo, confirmation of destructive commands."""

from __future__ import annotations

import sys

import typer

from meshchat_cli.errors import CliError, ExitCode

__all__ = ["confirm", "read_password"]


def read_password(
    from_stdin: bool, *, confirm: bool, label: str = "Password", flag: str = "--password-stdin"
) -> str:
    """The next line of standard input, or a prompt without echo."""
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise CliError(f"{flag}: standard input is empty", ExitCode.USAGE)
        return line.rstrip("\r\n")
    password: str = typer.prompt(label, hide_input=True, confirmation_prompt=confirm)
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
