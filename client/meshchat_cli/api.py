"""Typed calls to the auth and chat services, for one invocation of ``meshchat``.

Every call carries a deadline and, where the method needs one, an access token; a token
that the server rejects is refreshed once and the call repeated. Failures leave as
:class:`~meshchat_cli.errors.CliError` (see :mod:`meshchat_cli.failures`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Protocol, TypeVar

import grpc

from meshchat.auth.v1 import (
    access_options_pb2,
    auth_pb2,
    auth_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
)
from meshchat.chat.v1 import chat_pb2, chat_pb2_grpc
from meshchat_cli.credentials import Credentials, CredentialStore
from meshchat_cli.endpoints import Endpoint, Endpoints, open_channel
from meshchat_cli.errors import CliError, ExitCode
from meshchat_cli.failures import rpc_failure
from meshchat_cli.tokens import TokenSource

__all__ = ["DEFAULT_TIMEOUT", "MEMBERS_ONLY", "STREAM_TIMEOUT", "Api", "ConnectCall"]

DEFAULT_TIMEOUT = 10.0
"""The deadline of every unary call, in seconds."""
STREAM_TIMEOUT = 1800.0
"""The deadline of a Connect stream; the session reconnects seamlessly when it passes."""
REFRESH_TIMEOUT = 5.0
REFRESH_ATTEMPTS = 3
"""A Refresh is tried this often, with this deadline, when its outcome is unknown: all of
them end within the auth service's default grace window of 30 s."""
_OUTCOME_UNKNOWN = (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)

_PAGE_SIZE = 200
# Advice that fits the call better than the general one of failures.rpc_failure.
MEMBERS_ONLY = {grpc.StatusCode.PERMISSION_DENIED: "ask the chat's owner to add you"}
_OWN_MESSAGES = {
    grpc.StatusCode.NOT_FOUND: "`meshchat history CHAT_ID --json` shows the seqs",
    grpc.StatusCode.PERMISSION_DENIED: "only your own messages (the owner and admins: any)",
}
_USERNAMES = {grpc.StatusCode.NOT_FOUND: "check the usernames"}
_CHAT_AND_USER = {
    grpc.StatusCode.NOT_FOUND: "check the chat id (`meshchat chats` lists yours) and the username"
}

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")


class ConnectCall(Protocol):
    """An open Connect stream: iterate for events, cancel to end it."""

    def __iter__(self) -> Iterator[chat_pb2.ConnectResponse]:
        """The events."""
        ...

    def __next__(self) -> chat_pb2.ConnectResponse:
        """The next event."""
        ...

    def cancel(self) -> bool:
        """End the stream from the client's side."""
        ...


def _bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


class Api:
    """The meshchat services at ``endpoints``, as one login sees them: ``username``, else
    (without a ``profile``) the newest login on that server. Channels open on first use;
    :meth:`close` ends them."""

    def __init__(
        self,
        endpoints: Endpoints,
        store: CredentialStore,
        username: str | None,
        profile: str | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.profile = profile
        """The profile in use, if any."""
        self._store = store
        self._channels: dict[str, grpc.Channel] = {}
        self._channels_lock = threading.Lock()
        self.tokens = TokenSource(store, endpoints.auth, username, self._refresh, profile=profile)

    def __enter__(self) -> Api:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the channels; calls still running end with CANCELLED."""
        with self._channels_lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()

    def _channel(self, endpoint: Endpoint) -> grpc.Channel:
        with self._channels_lock:
            if endpoint.service not in self._channels:
                self._channels[endpoint.service] = open_channel(endpoint)
            return self._channels[endpoint.service]

    def _auth(self) -> auth_pb2_grpc.AuthServiceStub:
        return auth_pb2_grpc.AuthServiceStub(self._channel(self.endpoints.auth))

    def _users(self) -> users_pb2_grpc.UserServiceStub:
        return users_pb2_grpc.UserServiceStub(self._channel(self.endpoints.auth))

    def _chat(self) -> chat_pb2_grpc.ChatServiceStub:
        return chat_pb2_grpc.ChatServiceStub(self._channel(self.endpoints.chat))

    def _call(
        self,
        endpoint: Endpoint,
        method: grpc.UnaryUnaryMultiCallable[RequestT, ResponseT],
        request: RequestT,
        action: str,
        token: str | None = None,
        hints: Mapping[grpc.StatusCode, str] | None = None,
    ) -> ResponseT:
        try:
            return method(
                request, timeout=DEFAULT_TIMEOUT, metadata=_bearer(token) if token else None
            )
        except grpc.RpcError as error:
            user = self.tokens.username if token else None
            raise rpc_failure(error, endpoint, action, hints, user) from None

    def _authorized(
        self,
        endpoint: Endpoint,
        method: grpc.UnaryUnaryMultiCallable[RequestT, ResponseT],
        request: RequestT,
        action: str,
        hints: Mapping[grpc.StatusCode, str] | None = None,
    ) -> ResponseT:
        token = self.tokens.access_token()
        try:
            return method(request, timeout=DEFAULT_TIMEOUT, metadata=_bearer(token))
        except grpc.RpcError as error:
            if error.code() is not grpc.StatusCode.UNAUTHENTICATED:
                raise rpc_failure(error, endpoint, action, hints, self.tokens.username) from None
        token = self.tokens.refresh(token)
        return self._call(endpoint, method, request, action, token, hints)

    def _refresh(self, refresh_token: str) -> auth_pb2.TokenPair:
        # A Refresh whose outcome is unknown may have rotated the token on the server; asking
        # again with the same token within the server's grace window (30 s by default) gets
        # the same successor, so it is retried rather than the login given up.
        request = auth_pb2.RefreshRequest(refresh_token=refresh_token)
        for _ in range(REFRESH_ATTEMPTS - 1):
            try:
                return self._auth().Refresh(request, timeout=REFRESH_TIMEOUT)
            except grpc.RpcError as error:
                if error.code() not in _OUTCOME_UNKNOWN:
                    raise
        return self._auth().Refresh(request, timeout=REFRESH_TIMEOUT)

    # Accounts -----------------------------------------------------------------------------

    def register(self, username: str, email: str, password: str) -> users_pb2.User:
        """Sign up a new user."""
        request = users_pb2.CreateUserRequest(
            username=username, email=email, password=password, password_confirm=password
        )
        return self._call(self.endpoints.auth, self._users().CreateUser, request, "register")

    def login(self, username: str, password: str) -> Credentials:
        """Log in and keep the tokens (never the password) in the credential store."""
        request = auth_pb2.LoginRequest(username=username, password=password)
        hints = {grpc.StatusCode.UNAUTHENTICATED: "check both and try again"}
        pair = self._call(self.endpoints.auth, self._auth().Login, request, "log in", hints=hints)
        credentials = Credentials.from_token_pair(pair, time.time())
        self._store.save(self.endpoints.auth.address, credentials)
        return credentials

    def logout(self) -> Credentials:
        """Revoke the login's refresh tokens on the server, then forget the login."""
        credentials = self.tokens.credentials()
        request = auth_pb2.LogoutRequest(refresh_token=credentials.refresh_token)
        self._call(self.endpoints.auth, self._auth().Logout, request, "log out")
        self._store.remove(self.endpoints.auth.address, credentials.username)
        return credentials

    def logout_everywhere(self, user_id: str, current_password: str = "") -> None:
        """End every login of a user on the server; one's own needs ``current_password``.
        (The login in use here ends too when it is the user's: :meth:`forget_login`.)"""
        request = auth_pb2.LogoutEverywhereRequest(
            user_id=user_id, current_password=current_password
        )
        self._authorized(
            self.endpoints.auth, self._auth().LogoutEverywhere, request, "log out everywhere"
        )

    def forget_login(self) -> None:
        """Forget the login here, without asking the server (its account is gone)."""
        credentials = self.tokens.credentials()
        self._store.remove(self.endpoints.auth.address, credentials.username)

    def get_user(self, key: str) -> users_pb2.User:
        """A user by id or username."""
        request = (
            users_pb2.GetUserRequest(id=key)
            if _is_uuid(key)
            else users_pb2.GetUserRequest(username=key)
        )
        return self._authorized(
            self.endpoints.auth, self._users().GetUser, request, f"look up user {key!r}"
        )

    def update_user(
        self,
        user_id: str,
        *,
        email: str | None = None,
        password: str | None = None,
        role: access_options_pb2.Role.ValueType | None = None,
        current_password: str = "",
    ) -> users_pb2.User:
        """Change the fields that are given; changing one's own email or password needs
        ``current_password``."""
        request = users_pb2.UpdateUserRequest(id=user_id, current_password=current_password)
        if email is not None:
            request.email = email
        if password is not None:
            request.password = password
            request.password_confirm = password
        if role is not None:
            request.role = role
        return self._authorized(
            self.endpoints.auth, self._users().UpdateUser, request, "update the user"
        )

    def delete_user(self, user_id: str, current_password: str = "") -> None:
        """Delete a user; their logins end. Deleting one's own account needs
        ``current_password``."""
        request = users_pb2.DeleteUserRequest(id=user_id, current_password=current_password)
        self._authorized(self.endpoints.auth, self._users().DeleteUser, request, "delete the user")

    def list_users(self) -> Iterator[users_pb2.User]:
        """Every user, page after page (admins only)."""
        page_token = ""
        while True:
            request = users_pb2.ListUsersRequest(page_size=_PAGE_SIZE, page_token=page_token)
            page = self._authorized(
                self.endpoints.auth, self._users().ListUsers, request, "list the users"
            )
            yield from page.users
            page_token = page.next_page_token
            if not page_token:
                return

    # Chats --------------------------------------------------------------------------------

    def create_chat(self, name: str, members: list[str]) -> chat_pb2.Chat:
        """A new chat owned by the caller, with ``members`` (usernames) in it."""
        request = chat_pb2.CreateChatRequest(name=name, member_usernames=members)
        return self._authorized(
            self.endpoints.chat, self._chat().CreateChat, request, "create the chat", _USERNAMES
        )

    def chat_id(self, chat: str) -> str:
        """``chat`` itself when it is an id; otherwise the id of the caller's one chat with
        that name."""
        if _is_uuid(chat):
            return chat
        ids = [found.id for found in self.list_chats() if found.name == chat]
        if len(ids) == 1:
            return ids[0]
        user = self.tokens.username
        if not ids:
            raise CliError(
                f"{user} has no chat named {chat!r}; `meshchat chats` lists theirs",
                ExitCode.NOT_FOUND,
            )
        raise CliError(
            f"{len(ids)} of {user}'s chats are named {chat!r}; give the id instead "
            "(`meshchat chats` lists them)",
            ExitCode.USAGE,
        )

    def get_chat(self, chat_id: str) -> chat_pb2.Chat:
        """One chat."""
        request = chat_pb2.GetChatRequest(chat_id=chat_id)
        return self._authorized(
            self.endpoints.chat, self._chat().GetChat, request, "open the chat", MEMBERS_ONLY
        )

    def list_chats(self) -> Iterator[chat_pb2.Chat]:
        """The caller's chats, newest first, page after page."""
        page_token = ""
        while True:
            request = chat_pb2.ListChatsRequest(page_size=_PAGE_SIZE, page_token=page_token)
            page = self._authorized(
                self.endpoints.chat, self._chat().ListChats, request, "list the chats"
            )
            yield from page.chats
            page_token = page.next_page_token
            if not page_token:
                return

    def delete_chat(self, chat_id: str) -> None:
        """Delete a chat with its messages."""
        request = chat_pb2.DeleteChatRequest(chat_id=chat_id)
        self._authorized(self.endpoints.chat, self._chat().DeleteChat, request, "delete the chat")

    def add_member(self, chat_id: str, username: str) -> chat_pb2.Chat:
        """Add a user to a chat."""
        request = chat_pb2.AddMemberRequest(chat_id=chat_id, username=username)
        return self._authorized(
            self.endpoints.chat, self._chat().AddMember, request, f"add {username}", _CHAT_AND_USER
        )

    def remove_member(self, chat_id: str, username: str) -> chat_pb2.Chat:
        """Remove a user from a chat (or leave it)."""
        request = chat_pb2.RemoveMemberRequest(chat_id=chat_id, username=username)
        leaving = username.lower() == self.tokens.credentials().username.lower()
        hints = {
            **_CHAT_AND_USER,
            grpc.StatusCode.FAILED_PRECONDITION: (
                f"`meshchat delete chat {chat_id}` deletes it with its messages for everyone"
            ),
        }
        return self._authorized(
            self.endpoints.chat,
            self._chat().RemoveMember,
            request,
            "leave the chat" if leaving else f"remove {username}",
            hints,
        )

    # Messages -----------------------------------------------------------------------------

    def send_message(
        self, chat_id: str, text: str, client_message_id: str = ""
    ) -> chat_pb2.Message:
        """Send a message; a retry with the same ``client_message_id`` is stored once."""
        request = chat_pb2.SendMessageRequest(
            chat_id=chat_id, text=text, client_message_id=client_message_id
        )
        return self._authorized(
            self.endpoints.chat,
            self._chat().SendMessage,
            request,
            "send the message",
            MEMBERS_ONLY,
        )

    def list_messages(
        self,
        chat_id: str,
        limit: int,
        *,
        before_seq: int | None = None,
        after_seq: int | None = None,
    ) -> chat_pb2.ListMessagesResponse:
        """One page of messages, oldest first: the newest ``limit``, the newest before
        ``before_seq``, or the oldest after ``after_seq``; ``has_more`` says whether more
        lie beyond it in that direction."""
        request = chat_pb2.ListMessagesRequest(chat_id=chat_id, limit=limit)
        if before_seq is not None:
            request.before_seq = before_seq
        elif after_seq is not None:
            request.after_seq = after_seq
        return self._authorized(
            self.endpoints.chat,
            self._chat().ListMessages,
            request,
            "read the history",
            MEMBERS_ONLY,
        )

    def recent_messages(self, chat_id: str, limit: int) -> list[chat_pb2.Message]:
        """The newest ``limit`` messages, oldest first."""
        return list(self.list_messages(chat_id, limit).messages)

    def edit_message(self, chat_id: str, seq: int, text: str) -> chat_pb2.Message:
        """Change the text of one's own message ``seq``."""
        request = chat_pb2.EditMessageRequest(chat_id=chat_id, seq=seq, text=text)
        return self._authorized(
            self.endpoints.chat,
            self._chat().EditMessage,
            request,
            f"edit message #{seq}",
            _OWN_MESSAGES,
        )

    def delete_message(self, chat_id: str, seq: int) -> chat_pb2.Message:
        """Delete message ``seq`` (one's own; the owner or an admin, any)."""
        request = chat_pb2.DeleteMessageRequest(chat_id=chat_id, seq=seq)
        return self._authorized(
            self.endpoints.chat,
            self._chat().DeleteMessage,
            request,
            f"delete message #{seq}",
            _OWN_MESSAGES,
        )

    def mark_read(self, chat_id: str, seq: int = 0) -> chat_pb2.ReadState:
        """Move the read position forward to ``seq`` (0: the newest)."""
        request = chat_pb2.MarkReadRequest(chat_id=chat_id, seq=seq)
        return self._authorized(
            self.endpoints.chat, self._chat().MarkRead, request, "mark the chat read", MEMBERS_ONLY
        )

    def connect(self, chat_id: str, after_seq: int, token: str) -> ConnectCall:
        """Open the chat's stream from ``after_seq``; errors surface while iterating, as
        grpc.RpcError, for the session to decide between reconnecting and giving up."""
        request = chat_pb2.ConnectRequest(chat_id=chat_id, after_seq=after_seq)
        return self._chat().Connect(request, timeout=STREAM_TIMEOUT, metadata=_bearer(token))
