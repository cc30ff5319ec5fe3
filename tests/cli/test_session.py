"""``meshchat connect`` in pseudo-terminals: two users chat while the servers restart."""

from __future__ import annotations

import time

import grpc

from meshchat.auth.v1 import auth_pb2, auth_pb2_grpc
from meshchat.chat.v1 import chat_pb2, chat_pb2_grpc
from tests.support.cli import ChatLine, Cli, Terminal
from tests.support.passwords import PASSWORD
from tests.support.service_stack import Stack
from tests.support.tokens import mint_access_token


def _stored(stack: Stack, username: str, chat: str) -> list[ChatLine]:
    """Every message of the chat as the server has it, in seq order, seen by ``username``."""
    with grpc.insecure_channel(stack.auth.address) as channel:
        pair = auth_pb2_grpc.AuthServiceStub(channel).Login(
            auth_pb2.LoginRequest(username=username, password=PASSWORD), timeout=10
        )
    with grpc.insecure_channel(stack.chat.address) as channel:
        page = chat_pb2_grpc.ChatServiceStub(channel).ListMessages(
            chat_pb2.ListMessagesRequest(chat_id=chat, limit=500, after_seq=0),
            metadata=(("authorization", f"Bearer {pair.access_token}"),),
            timeout=10,
        )
    seqs = [message.seq for message in page.messages]
    assert seqs == list(range(1, len(seqs) + 1))
    return [
        ChatLine(m.sender_username, m.text, m.sender_username == username) for m in page.messages
    ]


def _send_directly(stack: Stack, username: str, chat: str, texts: list[str]) -> None:
    """Send at once over gRPC, faster than the sessions reconnect."""
    with grpc.insecure_channel(stack.auth.address) as channel:
        pair = auth_pb2_grpc.AuthServiceStub(channel).Login(
            auth_pb2.LoginRequest(username=username, password=PASSWORD), timeout=10
        )
    with grpc.insecure_channel(stack.chat.address) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        for text in texts:
            stub.SendMessage(
                chat_pb2.SendMessageRequest(chat_id=chat, text=text),
                metadata=(("authorization", f"Bearer {pair.access_token}"),),
                timeout=10,
            )


def _connect(cli: Cli, username: str, chat: str) -> Terminal:
    terminal = cli.spawn("--user", username, "connect", chat)
    terminal.wait_for_text("connected to")
    return terminal


def test_two_users_chat_live_through_restarts_without_gap_or_duplicate(stack: Stack) -> None:
    cli = Cli(stack.auth.address, stack.chat.address, stack.workdir / "config")
    alice, bob = cli.new_user("alice"), cli.new_user("bob")
    chat = cli.ok("--user", alice, "create", "chat", "room", "--member", bob).strip()
    cli.ok("--user", alice, "send", chat, "history 1")
    cli.ok("--user", bob, "send", chat, "history 2")

    a = _connect(cli, alice, chat)
    b = _connect(cli, bob, chat)
    both = (a, b)
    for terminal in both:
        terminal.wait_for_messages(["history 1", "history 2"])

    # Each sees what the other types, in the order the server stored it.
    a.type("a1")
    for terminal in both:
        terminal.wait_for_messages(["a1"])
    b.type("b1")
    for terminal in both:
        terminal.wait_for_messages(["b1"])
    a.type("a2")
    b.type("b2")
    for terminal in both:
        terminal.wait_for_messages(["a2", "b2"])

    # The chat service goes away; a line typed meanwhile is sent once it is back, and what
    # others send before the sessions have reconnected is replayed after the last seq shown.
    stack.chat.stop()
    for terminal in both:
        terminal.wait_for_text("connection lost")
    a.type("typed while the chat service was down")
    stack.chat.start()
    _send_directly(stack, bob, chat, ["sent at restart 1", "sent at restart 2"])
    for terminal in both:
        terminal.wait_for_text("reconnected")
        terminal.wait_for_messages(
            ["typed while the chat service was down", "sent at restart 1", "sent at restart 2"]
        )

    # The auth service goes away: chat goes on (the chat service keeps the keys it has).
    stack.auth.stop()
    b.type("auth is down")
    for terminal in both:
        terminal.wait_for_messages(["auth is down"])
    stack.auth.start()
    cli.ok("--user", alice, "send", chat, "from a third terminal")
    for terminal in both:
        terminal.wait_for_messages(["from a third terminal"])

    stored = _stored(stack, alice, chat)
    assert a.messages() == stored
    assert b.messages() == [ChatLine(m.sender, m.text, m.sender == bob) for m in stored]
    assert len(stored) == 11

    a.child.sendcontrol("d")
    b.child.sendintr()
    assert a.finish() == 0
    assert b.finish() == 0


def test_a_stream_whose_token_expires_reconnects_with_a_new_token(stack: Stack) -> None:
    cli = Cli(stack.auth.address, stack.chat.address, stack.workdir / "config")
    bob, alice = cli.new_user("bob"), cli.new_user("alice")
    chat = cli.ok("create", "chat", "room", "--member", bob).strip()
    cli.ok("send", chat, "before")
    login = cli.credentials(alice)
    short_lived = mint_access_token(
        stack.keys_dir, user_id=login["user_id"], username=alice, expires_in=3
    )
    # The file claims an hour, so the session uses the token until the server ends the stream.
    cli.edit_credentials(alice, access_token=short_lived, access_token_expires=time.time() + 3600)

    a = _connect(cli, alice, chat)
    a.wait_for_messages(["before"])
    a.wait_for(
        lambda _: cli.credentials(alice)["refresh_token"] != login["refresh_token"],
        "the session to refresh its token",
        timeout=30,
    )
    cli.ok("--user", bob, "send", chat, "after the refresh")
    a.wait_for_messages(["after the refresh"])

    assert a.messages() == _stored(stack, alice, chat)
    assert "connection lost" not in a.text()
    a.child.sendintr()
    assert a.finish() == 0


def test_removed_from_the_chat_ends_the_session_with_the_reason(stack: Stack) -> None:
    cli = Cli(stack.auth.address, stack.chat.address, stack.workdir / "config")
    bob, alice = cli.new_user("bob"), cli.new_user("alice")
    chat = cli.ok("create", "chat", "room", "--member", bob).strip()

    b = _connect(cli, bob, chat)
    cli.ok("--user", alice, "members", "remove", chat, bob)

    assert b.finish() == 5
    assert (
        f"error: cannot follow the chat as {bob}: you were removed from room by {alice}; ask the "
        "chat's owner to add you" in b.text()
    )
