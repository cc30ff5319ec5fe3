"""profile set|list|remove, use: named places to connect to, and the default one."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from meshchat_cli.commands.params import JsonLines
from meshchat_cli.options import complete_profile, profile_store
from meshchat_cli.profiles import Profile, check_profile_name
from meshchat_cli.render import print_json, print_rows

__all__ = ["list_profiles", "remove_profile", "set_profile", "use"]

ProfileName = Annotated[
    str, typer.Argument(metavar="NAME", help="1 to 64 letters, digits, '.', '_' or '-'.")
]
KnownProfile = Annotated[
    str, typer.Argument(metavar="NAME", help="A profile.", autocompletion=complete_profile)
]


def set_profile(
    name: ProfileName,
    server: Annotated[
        str | None,
        typer.Option("--server", metavar="HOST:PORT", help="One address for both services."),
    ] = None,
    auth_addr: Annotated[
        str | None,
        typer.Option("--auth-addr", metavar="HOST:PORT", help="The auth service's address."),
    ] = None,
    chat_addr: Annotated[
        str | None,
        typer.Option("--chat-addr", metavar="HOST:PORT", help="The chat service's address."),
    ] = None,
    ca_file: Annotated[
        Path | None,
        typer.Option("--ca-file", metavar="PEM", help="Trust this CA for TLS."),
    ] = None,
    server_name: Annotated[
        str | None,
        typer.Option("--server-name", metavar="NAME", help="The name the certificate carries."),
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Plaintext even to non-loopback addresses.")
    ] = False,
    user: Annotated[
        str | None,
        typer.Option("--user", metavar="USERNAME", help="Act as this user's login."),
    ] = None,
) -> None:
    """Create a profile, or change the settings given of an existing one."""

    def change(profile: Profile) -> Profile:
        return Profile(
            server=server or profile.server,
            auth_addr=auth_addr or profile.auth_addr,
            chat_addr=chat_addr or profile.chat_addr,
            # Kept absolute, so that the profile works from any directory.
            ca_file=str(ca_file.resolve()) if ca_file is not None else profile.ca_file,
            server_name=server_name or profile.server_name,
            insecure=insecure or profile.insecure,
            user=user or profile.user,
        )

    profile = profile_store().put(name, change)
    settings = ", ".join(f"{key}={value}" for key, value in profile.settings().items())
    typer.echo(f"profile {name}: {settings or 'the local stack'}")


def list_profiles(json_lines: JsonLines = False) -> None:
    """List the profiles; the default one is marked."""
    profiles = profile_store().read()
    if json_lines:
        for name, profile in profiles.by_name.items():
            print_json({"name": name, "current": name == profiles.current, **profile.settings()})
        return
    print_rows(
        sys.stdout,
        ("CURRENT", "NAME", "SERVER", "USER"),
        [
            (
                "*" if name == profiles.current else "",
                name,
                profile.server or profile.auth_addr or "local stack",
                profile.user or "",
            )
            for name, profile in sorted(profiles.by_name.items())
        ],
    )


def remove_profile(name: KnownProfile) -> None:
    """Forget a profile (the logins it used stay until `meshchat logout`)."""
    profile_store().remove(name)
    typer.echo(f"removed profile {name}")


def use(
    name: Annotated[
        str | None,
        typer.Argument(
            metavar="NAME",
            help="The profile; leave out with --none.",
            autocompletion=complete_profile,
        ),
    ] = None,
    none: Annotated[bool, typer.Option("--none", help="Use no profile by default.")] = False,
) -> None:
    """Make a profile the default for every command (like `kubectl config use-context`)."""
    if none == (name is not None):
        raise typer.BadParameter("give a profile NAME, or --none", param_hint="NAME")
    profile_store().use(check_profile_name(name) if name is not None else None)
    typer.echo(f"now using profile {name}" if name else "now using no profile")
