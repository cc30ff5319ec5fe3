"""Logins kept between invocations: per server and user, in a file of mode 0600.

The file is ``credentials.json`` in meshchat's configuration directory
(:func:`~meshchat_cli.files.config_dir`). It holds tokens, never a password. It changes as
:mod:`meshchat_cli.files` says, so that concurrent ``meshchat`` processes (a ``connect`` and
a ``send`` in two terminals) never refresh the same token twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from meshchat.auth.v1 import auth_pb2
from meshchat_cli.errors import CliError, ExitCode
from meshchat_cli.files import locked, write_json
from meshchat_cli.roles import role_name

__all__ = ["CredentialStore", "Credentials"]

_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Credentials:
    """One user's login on one server."""

    username: str
    user_id: str
    role: str
    access_token: str
    access_token_expires: float
    """Seconds since the epoch."""
    refresh_token: str
    refresh_token_expires: float
    login_time: float
    """When the user logged in; the newest login is the server's default user."""

    @classmethod
    def from_token_pair(cls, pair: auth_pb2.TokenPair, login_time: float) -> Credentials:
        """The credentials that a Login or Refresh answer carries."""
        return cls(
            username=pair.user.username,
            user_id=pair.user.id,
            role=role_name(pair.user.role),
            access_token=pair.access_token,
            access_token_expires=pair.access_token_expire_time.ToSeconds(),
            refresh_token=pair.refresh_token,
            refresh_token_expires=pair.refresh_token_expire_time.ToSeconds(),
            login_time=login_time,
        )


def _credentials(data: Any) -> Credentials:
    return Credentials(
        username=str(data["username"]),
        user_id=str(data["user_id"]),
        role=str(data["role"]),
        access_token=str(data["access_token"]),
        access_token_expires=float(data["access_token_expires"]),
        refresh_token=str(data["refresh_token"]),
        refresh_token_expires=float(data["refresh_token_expires"]),
        login_time=float(data["login_time"]),
    )


class CredentialStore:
    """The credentials file: logins keyed by the auth service's address, then username."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    @property
    def path(self) -> Path:
        """The credentials file."""
        return self._directory / "credentials.json"

    def _damaged(self, problem: str) -> CliError:
        return CliError(
            f"the credentials file {self.path} is damaged ({problem}); delete it and log in again",
            ExitCode.NOT_LOGGED_IN,
        )

    def _read(self) -> dict[str, dict[str, Credentials]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise CliError(
                f"cannot read the credentials file {self.path} ({exc.strerror}); check its "
                "owner and mode",
                ExitCode.NOT_LOGGED_IN,
            ) from None
        try:
            document = json.loads(text)
            return {
                server: {name.lower(): _credentials(entry) for name, entry in users.items()}
                for server, users in document["servers"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise self._damaged(f"{type(exc).__name__}: {exc}") from None

    def _write(self, logins: dict[str, dict[str, Credentials]]) -> None:
        document = {
            "version": _FORMAT_VERSION,
            "servers": {
                server: {creds.username: asdict(creds) for creds in users.values()}
                for server, users in sorted(logins.items())
                if users
            },
        }
        write_json(self.path, document)

    def load(self, server: str, username: str | None) -> Credentials | None:
        """The login of ``username`` on ``server``; without a username, the newest login."""
        users = self._read().get(server, {})
        if username is not None:
            return users.get(username.lower())
        return max(users.values(), key=lambda creds: creds.login_time, default=None)

    def update(
        self,
        server: str,
        username: str,
        change: Callable[[Credentials | None], Credentials | None],
    ) -> Credentials | None:
        """Replace one login by ``change(current)`` under the lock; None removes it.

        ``change`` may call the server: whoever holds the lock is the only one refreshing.
        """
        with locked(self.path):
            logins = self._read()
            users = logins.setdefault(server, {})
            current = users.get(username.lower())
            updated = change(current)
            if updated is None:
                users.pop(username.lower(), None)
            else:
                users[updated.username.lower()] = updated
            if updated != current:
                self._write(logins)
            return updated

    def save(self, server: str, credentials: Credentials) -> None:
        """Store (or replace) a login."""
        self.update(server, credentials.username, lambda _current: credentials)

    def remove(self, server: str, username: str) -> None:
        """Forget a login; nothing happens when there is none."""
        self.update(server, username, lambda _current: None)
