"""The global options, kept on the command context, and the Api built from them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from meshchat_cli.api import Api
from meshchat_cli.credentials import CredentialStore, config_dir
from meshchat_cli.endpoints import DEFAULT_AUTH_ADDRESS, DEFAULT_CHAT_ADDRESS, resolve_endpoints

__all__ = ["HELP", "GlobalOptions", "global_options", "open_api"]

HELP = f"""Chat from the terminal with meshchat.

With no address given, meshchat talks to the local stack of `make run`
({DEFAULT_AUTH_ADDRESS} and {DEFAULT_CHAT_ADDRESS}, plaintext).
"""


@dataclass(frozen=True, slots=True)
class GlobalOptions:
    """What the options before the command name say: where, how and as whom."""

    server: str | None
    auth_addr: str | None
    chat_addr: str | None
    ca_file: Path | None
    server_name: str | None
    insecure: bool
    user: str | None


def open_api(ctx: typer.Context) -> Api:
    """The services as the global options describe them; use it in a ``with`` block."""
    options: GlobalOptions = ctx.obj
    endpoints = resolve_endpoints(
        server=options.server,
        auth_addr=options.auth_addr,
        chat_addr=options.chat_addr,
        ca_file=options.ca_file,
        server_name=options.server_name,
        insecure=options.insecure,
    )
    return Api(endpoints, CredentialStore(config_dir(os.environ)), options.user)


def global_options(
    ctx: typer.Context,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            envvar="MESHCHAT_SERVER",
            metavar="HOST:PORT",
            help="One address for both services (an ingress that routes by gRPC service).",
        ),
    ] = None,
    auth_addr: Annotated[
        str | None,
        typer.Option(
            "--auth-addr",
            envvar="MESHCHAT_AUTH_ADDR",
            metavar="HOST:PORT",
            help="The auth service's address (wins over --server).",
        ),
    ] = None,
    chat_addr: Annotated[
        str | None,
        typer.Option(
            "--chat-addr",
            envvar="MESHCHAT_CHAT_ADDR",
            metavar="HOST:PORT",
            help="The chat service's address (wins over --server).",
        ),
    ] = None,
    ca_file: Annotated[
        Path | None,
        typer.Option(
            "--ca-file",
            envvar="MESHCHAT_CA_FILE",
            metavar="PEM",
            help="Trust this CA (PEM) for TLS instead of the system's; turns TLS on.",
        ),
    ] = None,
    server_name: Annotated[
        str | None,
        typer.Option(
            "--server-name",
            envvar="MESHCHAT_SERVER_NAME",
            help="The host name the certificate must carry (and the authority sent); turns TLS on.",
        ),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            envvar="MESHCHAT_INSECURE",
            help="Plaintext even to non-loopback addresses (TLS is the default there).",
        ),
    ] = False,
    user: Annotated[
        str | None,
        typer.Option(
            "--user",
            "-u",
            envvar="MESHCHAT_USER",
            help="Act as this logged-in user (default: the latest login on the server).",
        ),
    ] = None,
) -> None:
    """Where the services are, how to reach them, and as whom."""
    ctx.obj = GlobalOptions(server, auth_addr, chat_addr, ca_file, server_name, insecure, user)
