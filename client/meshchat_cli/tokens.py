"""The access token of one login, refreshed before it expires or when a server rejects it."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc

from meshchat.auth.v1 import auth_pb2
from meshchat_cli.credentials import Credentials, CredentialStore
from meshchat_cli.endpoints import Endpoint
from meshchat_cli.errors import CliError, ExitCode
from meshchat_cli.failures import rpc_failure

__all__ = ["REFRESH_MARGIN", "TokenSource"]

REFRESH_MARGIN = 30.0
"""An access token with less than this many seconds left is refreshed before use."""


class TokenSource:
    """Hands out a valid access token for one user on one server.

    The refresh token rotates on every use, so a refresh happens under the credential
    store's lock and first re-reads the file: when another process refreshed meanwhile, its
    new token is taken instead of spending the old refresh token a second time (which the
    auth service would treat as theft and answer by revoking the whole login).
    """

    def __init__(
        self,
        store: CredentialStore,
        auth: Endpoint,
        username: str | None,
        refresh: Callable[[str], auth_pb2.TokenPair],
        *,
        profile: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``refresh`` calls AuthService.Refresh at ``auth`` and may raise grpc.RpcError.
        Without ``username`` the newest login on the server is used, unless a ``profile``
        is in use: a profile acts only as its own login."""
        self._store = store
        self._auth = auth
        self._server = auth.address
        self._username = username
        self._profile = profile
        self._refresh = refresh
        self._clock = clock

    @property
    def username(self) -> str | None:
        """Who this process acts as, once known."""
        return self._username

    def _not_logged_in(self) -> CliError:
        if self._profile is not None and self._username is None:
            return CliError(
                f"nobody is logged in with profile {self._profile}; run "
                f"`meshchat --profile {self._profile} login USERNAME`",
                ExitCode.NOT_LOGGED_IN,
            )
        who = f"{self._username} is" if self._username else "you are"
        name = self._username or "USERNAME"
        return CliError(
            f"{who} not logged in to {self._server}; run `meshchat login {name}`",
            ExitCode.NOT_LOGGED_IN,
        )

    def credentials(self) -> Credentials:
        """The stored login. Without a user (``--user`` or the profile's) the newest login is
        chosen on first use and kept, so a login in another terminal does not change who
        this process is."""
        if self._profile is not None and self._username is None:
            raise self._not_logged_in()
        credentials = self._store.load(self._server, self._username)
        if credentials is None:
            raise self._not_logged_in()
        self._username = credentials.username
        return credentials

    def access_token(self) -> str:
        """A token with at least :data:`REFRESH_MARGIN` seconds left."""
        credentials = self.credentials()
        if credentials.access_token_expires - self._clock() > REFRESH_MARGIN:
            return credentials.access_token
        return self.refresh(credentials.access_token)

    def refresh(self, rejected: str) -> str:
        """A new access token to replace ``rejected`` (expired, or refused by a server)."""
        username = self.credentials().username
        ended: list[grpc.RpcError] = []

        def renew(current: Credentials | None) -> Credentials | None:
            if current is None:
                raise self._not_logged_in()
            fresh = current.access_token_expires - self._clock() > REFRESH_MARGIN
            if current.access_token != rejected and fresh:
                return current
            try:
                pair = self._refresh(current.refresh_token)
            except grpc.RpcError as error:
                if error.code() is not grpc.StatusCode.UNAUTHENTICATED:
                    raise rpc_failure(error, self._auth, "refresh the login") from None
                ended.append(error)
                return None
            return Credentials.from_token_pair(pair, current.login_time)

        renewed = self._store.update(self._server, username, renew)
        if renewed is None:
            reason = ended[0].details()
            raise CliError(
                f"the login of {username} on {self._server} has ended ({reason}); "
                f"run `meshchat login {username}`",
                ExitCode.NOT_LOGGED_IN,
                grpc.StatusCode.UNAUTHENTICATED,
            )
        return renewed.access_token
