"""Every failure is one line that says what went wrong and what to do, with its exit code."""

from __future__ import annotations

import re
import uuid

from devtools.processes import free_port
from tests.support.cli import Cli, unique_name
from tests.support.passwords import PASSWORD


def _one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_auth_service_unreachable_names_the_address(cli: Cli) -> None:
    address = f"127.0.0.1:{free_port()}"
    result = cli.run(
        "--auth-addr", address, "register", "alice", "--password-stdin", input=PASSWORD
    )
    assert result.returncode == 7
    assert _one_line(result.stderr) == (
        f"error: cannot reach the auth service at {address} (connection refused); is it "
        "running? `make run` starts the local stack, or point --server / --auth-addr at yours"
    )


def test_chat_service_unreachable_names_the_address(cli: Cli) -> None:
    cli.new_user("alice")
    address = f"127.0.0.1:{free_port()}"
    result = cli.run("--chat-addr", address, "chats")
    assert result.returncode == 7
    assert _one_line(result.stderr).startswith(
        f"error: cannot reach the chat service at {address} (connection refused)"
    )


def test_server_option_is_one_address_for_both_services(cli: Cli) -> None:
    alice = unique_name("alice")
    cli.register(alice)
    # Point both at the auth service: login works, and chat calls reach it too.
    server = {
        "MESHCHAT_AUTH_ADDR": "",
        "MESHCHAT_CHAT_ADDR": "",
        "MESHCHAT_SERVER": cli.auth_address,
    }
    result = cli.run("login", alice, "--password-stdin", input=f"{PASSWORD}\n", env=server)
    assert result.returncode == 0, result.stderr
    result = cli.run("chats", env=server)
    assert result.returncode == 1
    assert _one_line(result.stderr) == (
        f"error: the chat service at {cli.auth_address} does not offer this call; check that "
        "--server / --chat-addr points at meshchat's chat service"
    )


def test_not_logged_in(cli: Cli) -> None:
    result = cli.run("chats")
    assert result.returncode == 3
    assert _one_line(result.stderr) == (
        f"error: you are not logged in to {cli.auth_address}; run `meshchat login USERNAME`"
    )


def test_wrong_password(cli: Cli) -> None:
    alice = unique_name("alice")
    cli.register(alice)
    result = cli.run("login", alice, "--password-stdin", input="not the password\n")
    assert result.returncode == 3
    assert _one_line(result.stderr) == (
        "error: cannot log in: wrong username or password; check both and try again"
    )


def test_throttled_login_says_how_long_to_wait(cli: Cli) -> None:
    alice = unique_name("alice")
    cli.register(alice)
    for _ in range(5):
        assert cli.run("login", alice, "--password-stdin", input="wrong\n").returncode == 3

    result = cli.run("login", alice, "--password-stdin", input=f"{PASSWORD}\n")

    assert result.returncode == 6
    line = _one_line(result.stderr)
    match = re.fullmatch(
        r"error: cannot log in: too many failed logins; wait about 15 minutes, then try again",
        line,
    )
    assert match, line


def test_no_such_chat(cli: Cli) -> None:
    alice = cli.new_user("alice")
    chat = str(uuid.uuid4())
    result = cli.run("send", chat, "hello?")
    assert result.returncode == 4
    assert _one_line(result.stderr) == (
        f"error: cannot send the message as {alice}: chat {chat} not found; `meshchat chats` "
        "lists your chats"
    )
    result = cli.run("send", "no-such-name", "hello?")
    assert result.returncode == 4
    assert _one_line(result.stderr) == (
        f"error: {alice} has no chat named 'no-such-name'; `meshchat chats` lists theirs"
    )


def test_no_such_user(cli: Cli) -> None:
    alice = cli.new_user("alice")
    nobody = unique_name("nobody")
    result = cli.run("create", "chat", "room", "--member", nobody)
    assert result.returncode == 4
    assert _one_line(result.stderr) == (
        f"error: cannot create the chat as {alice}: user '{nobody}' not found; check the usernames"
    )
    result = cli.run("user", "get", nobody)
    assert result.returncode == 4
    assert _one_line(result.stderr).endswith("check the username or id")


def test_not_a_member(cli: Cli) -> None:
    cli.new_user("alice")
    chat = cli.ok("create", "chat", "private").strip()
    mallory = cli.new_user("mallory")
    result = cli.run("send", chat, "let me in")
    assert result.returncode == 5
    assert _one_line(result.stderr) == (
        f"error: cannot send the message as {mallory}: only members may send messages to this "
        "chat; ask the chat's owner to add you"
    )
    result = cli.run("connect", chat)
    assert result.returncode == 5
    assert "you are not a member of this chat" in _one_line(result.stderr)


def test_message_too_long(cli: Cli) -> None:
    cli.new_user("alice")
    chat = cli.ok("create", "chat", "room").strip()
    result = cli.run("send", chat, "x" * 4097)
    assert result.returncode == 1
    assert _one_line(result.stderr) == (
        "error: cannot send the message: text: must be at most 4096 characters, got 4097"
    )


def test_tls_to_a_plaintext_server(cli: Cli) -> None:
    result = cli.run(
        "--server-name", "meshchat.example", "login", "alice", "--password-stdin", input="x\n"
    )
    assert result.returncode == 7
    assert _one_line(result.stderr) == (
        f"error: cannot reach the auth service at {cli.auth_address}: TLS handshake failed; "
        "pass --ca-file for a private CA, --server-name if the certificate names another "
        "host, or --insecure if the server speaks plaintext"
    )


def test_usage_errors(cli: Cli) -> None:
    result = cli.run("--chat-addr", "no-port-here", "chats")
    assert result.returncode == 2
    assert "--chat-addr: expected HOST:PORT, got 'no-port-here'" in result.stderr

    result = cli.run("--insecure", "--ca-file", "/etc/hostname", "chats")
    assert result.returncode == 2
    assert "--insecure cannot be combined with --ca-file or --server-name" in result.stderr

    result = cli.run("login", "alice", "--password-stdin", input="")
    assert result.returncode == 2
    assert "--password-stdin: standard input is empty" in result.stderr

    result = cli.run("connect")
    assert result.returncode == 2
    assert "Missing argument 'CHAT_ID'" in result.stderr
