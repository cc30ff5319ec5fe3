"""The global options, kept on the command context; the profile they select; the Api built
from both."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from typer._click.core import ParameterSource
from typer.core import TyperOption

from meshchat_cli.api import Api
from meshchat_cli.credentials import CredentialStore
from meshchat_cli.endpoints import (
    DEFAULT_AUTH_ADDRESS,
    DEFAULT_CHAT_ADDRESS,
    Endpoints,
    resolve_endpoints,
)
from meshchat_cli.errors import CliError
from meshchat_cli.files import config_dir
from meshchat_cli.profiles import Profile, ProfileStore

__all__ = [
    "HELP",
    "GlobalOptions",
    "Target",
    "command_line",
    "complete_profile",
    "global_options",
    "open_api",
    "profile_store",
    "resolve_target",
]

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
    profile: str | None


@dataclass(frozen=True, slots=True)
class Target:
    """Where this command connects and as whom, options and profile taken together."""

    endpoints: Endpoints
    user: str | None
    """The login to act as; None: the profile has none, or (without a profile) the newest."""
    profile: str | None
    """The profile in use, if any."""


def profile_store() -> ProfileStore:
    """The profiles file of this user."""
    return ProfileStore(config_dir(os.environ))


def complete_profile(incomplete: str) -> list[str]:
    """Shell completion: the names of the profiles that start with ``incomplete``."""
    try:
        names = profile_store().read().by_name
    except CliError:
        return []
    return sorted(name for name in names if name.startswith(incomplete))


def resolve_target(options: GlobalOptions) -> Target:
    """Options (and their environment variables) win over the profile in use: the one that
    ``--profile`` names, else the default of ``meshchat use``."""
    name = options.profile or profile_store().read().current
    profile = profile_store().get(name) if name else Profile()
    # Setting by setting; an empty value (a variable set to "") counts as not given.
    endpoints = resolve_endpoints(
        server=options.server or profile.server,
        auth_addr=options.auth_addr or profile.auth_addr,
        chat_addr=options.chat_addr or profile.chat_addr,
        ca_file=options.ca_file or (Path(profile.ca_file) if profile.ca_file else None),
        server_name=options.server_name or profile.server_name,
        insecure=options.insecure or profile.insecure,
    )
    return Target(endpoints, options.user or profile.user, name)


def _global_options(ctx: typer.Context) -> GlobalOptions:
    root = ctx.find_root()
    if isinstance(root.obj, GlobalOptions):
        return root.obj
    # Shell completion parses the command line without running the callback that keeps
    # the options on the context.
    params = root.params
    return GlobalOptions(
        server=params.get("server"),
        auth_addr=params.get("auth_addr"),
        chat_addr=params.get("chat_addr"),
        ca_file=params.get("ca_file"),
        server_name=params.get("server_name"),
        insecure=bool(params.get("insecure")),
        user=params.get("user"),
        profile=params.get("profile"),
    )


def command_line(ctx: typer.Context, *words: str) -> str:
    """``meshchat WORDS`` with the options before the command that were given on this
    command line (not those from the environment or a profile, which still apply), ready to
    paste into a shell: the command to run next, where this one ran. ``--user`` is left
    out; the words name the user where it matters."""
    root = ctx.find_root()
    flags: list[str] = []
    for param in root.command.params:
        if param.name in (None, "user") or not isinstance(param, TyperOption):
            continue
        if root.get_parameter_source(param.name) is not ParameterSource.COMMANDLINE:
            continue
        flag = next(opt for opt in param.opts if opt.startswith("--"))
        value = root.params[param.name]
        flags.extend([flag] if param.is_flag else [flag, str(value)])
    return shlex.join(["meshchat", *flags, *words])


def open_api(ctx: typer.Context) -> Api:
    """The services as the global options and the profile describe them; use it in a
    ``with`` block."""
    target = resolve_target(_global_options(ctx))
    return Api(
        target.endpoints, CredentialStore(config_dir(os.environ)), target.user, target.profile
    )


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
            metavar="NAME",
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
            metavar="USERNAME",
            help="Act as this logged-in user (default: the profile's, else the latest login).",
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            "-p",
            envvar="MESHCHAT_PROFILE",
            metavar="NAME",
            help="Use this profile (default: the one of `meshchat use`).",
            autocompletion=complete_profile,
        ),
    ] = None,
) -> None:
    """Where the services are, how to reach them, and as whom."""
    ctx.obj = GlobalOptions(
        server, auth_addr, chat_addr, ca_file, server_name, insecure, user, profile
    )
