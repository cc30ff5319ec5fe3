"""Named profiles: where to connect and as whom, kept in ``config.json``.

A profile names a server (or the two services' addresses), its TLS settings and the user it
acts as. One profile may be the default (``meshchat use NAME``); ``--profile`` or
``MESHCHAT_PROFILE`` picks another for one command, so that two terminals with two profiles
act as two users at once. The file lives in meshchat's configuration directory beside the
credentials, changes as :mod:`meshchat_cli.files` says, and holds no secret.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from meshchat_cli.errors import CliError, ExitCode
from meshchat_cli.files import locked, write_json

__all__ = ["Profile", "ProfileStore", "Profiles", "check_profile_name"]

_FORMAT_VERSION = 1
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_profile_name(name: str) -> str:
    """``name`` when it can name a profile: 1 to 64 letters, digits, '.', '_' or '-'."""
    if not _NAME.fullmatch(name):
        raise CliError(
            f"profile name {name!r}: use 1 to 64 letters, digits, '.', '_' or '-'",
            ExitCode.USAGE,
        )
    return name


@dataclass(frozen=True, slots=True)
class Profile:
    """Where a profile connects and as whom; None leaves a setting to its default."""

    server: str | None = None
    auth_addr: str | None = None
    chat_addr: str | None = None
    ca_file: str | None = None
    server_name: str | None = None
    insecure: bool = False
    user: str | None = None
    """The login the profile acts as; set by ``login`` with the profile in use."""

    def settings(self) -> dict[str, Any]:
        """The settings that are set, by field name."""
        return {name: value for name, value in asdict(self).items() if value not in (None, False)}


def _profile(data: Any) -> Profile:
    unknown = set(data) - {field.name for field in fields(Profile)}
    if unknown:
        raise KeyError(f"unknown setting {sorted(unknown)[0]!r}")

    def text(name: str) -> str | None:
        value = data.get(name)
        return None if value is None else str(value)

    return Profile(
        server=text("server"),
        auth_addr=text("auth_addr"),
        chat_addr=text("chat_addr"),
        ca_file=text("ca_file"),
        server_name=text("server_name"),
        insecure=data.get("insecure") is True,
        user=text("user"),
    )


@dataclass(frozen=True, slots=True)
class Profiles:
    """Every profile, and the default one."""

    current: str | None
    by_name: dict[str, Profile]


class ProfileStore:
    """The profiles file."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "config.json"

    def read(self) -> Profiles:
        """The profiles; none when there is no file."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Profiles(None, {})
        except OSError as exc:
            raise CliError(
                f"cannot read the config file {self.path} ({exc.strerror}); check its owner "
                "and mode",
                ExitCode.USAGE,
            ) from None
        try:
            document = json.loads(text)
            current = document.get("current")
            by_name = {str(name): _profile(data) for name, data in document["profiles"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CliError(
                f"the config file {self.path} is damaged ({type(exc).__name__}: {exc}); fix or "
                "delete it",
                ExitCode.USAGE,
            ) from None
        return Profiles(str(current) if current in by_name else None, by_name)

    def get(self, name: str) -> Profile:
        """The profile ``name``; a usage error when there is none."""
        found = self.read().by_name.get(name)
        if found is None:
            raise CliError(
                f"there is no profile {name!r}; `meshchat profile list` lists them, "
                f"`meshchat profile set {name} --server HOST:PORT` makes it",
                ExitCode.USAGE,
            )
        return found

    def update(self, change: Callable[[Profiles], Profiles]) -> Profiles:
        """Replace the profiles by ``change(current)`` under the lock."""
        with locked(self.path):
            before = self.read()
            after = change(before)
            if after != before:
                write_json(
                    self.path,
                    {
                        "version": _FORMAT_VERSION,
                        "current": after.current,
                        "profiles": {
                            name: profile.settings()
                            for name, profile in sorted(after.by_name.items())
                        },
                    },
                )
            return after

    def put(self, name: str, change: Callable[[Profile], Profile]) -> Profile:
        """Create or change the profile ``name`` by ``change(current or empty)``."""
        check_profile_name(name)

        def put(profiles: Profiles) -> Profiles:
            updated = change(profiles.by_name.get(name, Profile()))
            return replace(profiles, by_name={**profiles.by_name, name: updated})

        return self.update(put).by_name[name]

    def remove(self, name: str) -> None:
        """Forget the profile ``name`` (its logins stay in the credentials file)."""
        self.get(name)

        def remove(profiles: Profiles) -> Profiles:
            rest = {key: value for key, value in profiles.by_name.items() if key != name}
            return Profiles(None if profiles.current == name else profiles.current, rest)

        self.update(remove)

    def use(self, name: str | None) -> None:
        """Make ``name`` the default profile; None: no default."""
        if name is not None:
            self.get(name)
        self.update(lambda profiles: replace(profiles, current=name))

    def set_user(self, name: str, user: str | None) -> None:
        """Record the login the profile ``name`` acts as (None: none)."""
        self.put(name, lambda profile: replace(profile, user=user))
