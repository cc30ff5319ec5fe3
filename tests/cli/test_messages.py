"""send, history, and connect with piped input and output (plain lines and JSON)."""

from __future__ import annotations

import json

from tests.support.cli import ChatLine, Cli, chat_lines, unique_name


def _chat_of_two(cli: Cli) -> tuple[str, str, str]:
    bob = cli.new_user("bob")
    alice = cli.new_user("alice")
    chat = cli.ok("create", "chat", unique_name("room"), "-m", bob).strip()
    return alice, bob, chat


def test_send_and_history(cli: Cli) -> None:
    alice, bob, chat = _chat_of_two(cli)
    assert cli.ok("send", chat, "hello bob").strip() == "sent #1"
    assert cli.ok("--user", bob, "send", chat, "hi alice").strip() == "sent #2"
    cli.ok("send", chat, "[bold]not markup[/bold] \x1b[31mnor colour")

    assert chat_lines(cli.ok("history", chat)) == [
        ChatLine(alice, "hello bob", own=True),
        ChatLine(bob, "hi alice", own=False),
        ChatLine(alice, "[bold]not markup[/bold] \\x1b[31mnor colour", own=True),
    ]
    assert chat_lines(cli.ok("--user", bob, "history", chat, "--limit", "1")) == [
        ChatLine(alice, "[bold]not markup[/bold] \\x1b[31mnor colour", own=False)
    ]

    documents = [json.loads(line) for line in cli.ok("history", chat, "--json").splitlines()]
    assert [(d["seq"], d["sender"], d["text"], d["own"]) for d in documents] == [
        (1, alice, "hello bob", True),
        (2, bob, "hi alice", False),
        (3, alice, "[bold]not markup[/bold] \x1b[31mnor colour", True),
    ]
    assert all(d["chat_id"] == chat and d["time"].endswith("+00:00") for d in documents)


def test_connect_with_piped_input_sends_each_line_and_shows_them(cli: Cli) -> None:
    alice, bob, chat = _chat_of_two(cli)
    cli.ok("--user", bob, "send", chat, "before")

    result = cli.run("connect", chat, input="first line\n\nsecond line\n")

    assert result.returncode == 0, result.stderr
    assert chat_lines(result.stdout) == [
        ChatLine(bob, "before", own=False),
        ChatLine(alice, "first line", own=True),
        ChatLine(alice, "second line", own=True),
    ]
    assert "connected to" in result.stderr
    assert [line.text for line in chat_lines(cli.ok("history", chat))] == [
        "before",
        "first line",
        "second line",
    ]


def test_connect_json_prints_one_object_per_message(cli: Cli) -> None:
    alice, bob, chat = _chat_of_two(cli)
    for n in range(3):
        cli.ok("--user", bob, "send", chat, f"old {n}")

    result = cli.run("connect", chat, "--json", "--history", "2", input="mine\n")

    assert result.returncode == 0, result.stderr
    documents = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(d["seq"], d["sender"], d["text"], d["own"]) for d in documents] == [
        (2, bob, "old 1", False),
        (3, bob, "old 2", False),
        (4, alice, "mine", True),
    ]


def test_connect_without_history_starts_at_the_newest_message(cli: Cli) -> None:
    _alice, bob, chat = _chat_of_two(cli)
    cli.ok("--user", bob, "send", chat, "old")

    result = cli.run("connect", chat, "--history", "0", input="new\n")

    assert result.returncode == 0, result.stderr
    assert [line.text for line in chat_lines(result.stdout)] == ["new"]


def test_a_line_that_is_too_long_is_refused_and_the_session_goes_on(cli: Cli) -> None:
    _alice, _bob, chat = _chat_of_two(cli)

    result = cli.run("connect", chat, input="x" * 5000 + "\nshort one\n")

    assert result.returncode == 0, result.stderr
    assert (
        "not sent: cannot send the message: text: must be at most 4096 characters, got 5000"
        in result.stderr
    )
    assert [line.text for line in chat_lines(result.stdout)] == ["short one"]
