"""Help and usage: one-line usage errors, placeholders that name values, early checks,
messages that say what happened."""

from __future__ import annotations

import pytest

from tests.support.cli import PASSWORD, Cli, unique_name


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("chatz",),
            "error: No such command 'chatz'. Did you mean 'chats'?; `meshchat --help` shows "
            "the usage",
        ),
        (("send",), "error: Missing argument 'CHAT_ID'; `meshchat send --help` shows the usage"),
        (
            ("history", "x", "--limit", "0"),
            "error: Invalid value for '--limit' / '-n': Input should be greater than or equal to 1; "
            "`meshchat history --help` shows the usage",
        ),
    ],
)
def test_a_usage_error_is_one_line(cli: Cli, args: tuple[str, ...], expected: str) -> None:
    result = cli.run(*args)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [expected]


def test_help_names_values_without_type_marks(cli: Cli) -> None:
    for command in (
        (),
        ("user", "get"),
        ("send",),
        ("history",),
        ("create", "chat"),
        ("members", "add"),
        ("profile", "set"),
    ):
        text = cli.ok(*command, "--help")
        for mark in ("<bool>", "<str>", "<int", "{"):
            assert mark not in text, (command, mark, text)
    assert "Usage: meshchat user get [OPTIONS] USERNAME" in cli.ok("user", "get", "--help")
    assert "Usage: meshchat send [OPTIONS] CHAT_ID [MESSAGE]" in cli.ok("send", "--help")


def test_a_short_password_is_refused_before_the_second_prompt(cli: Cli) -> None:
    terminal = cli.spawn("register", unique_name("bob"))
    terminal.child.expect("Password: ")
    terminal.type("short")
    assert terminal.finish() == 2
    assert "error: the password must be 8 to 1024 characters, got 5; nothing changed" in (
        terminal.text()
    )
    assert "Repeat for confirmation" not in terminal.text()

    result = cli.run("register", unique_name("bob"), "--password-stdin", input="short\n")
    assert result.returncode == 2


def test_two_different_passwords_are_refused(cli: Cli) -> None:
    terminal = cli.spawn("register", unique_name("bob"))
    terminal.child.expect("Password: ")
    terminal.type(PASSWORD)
    terminal.child.expect("Repeat for confirmation: ")
    terminal.type(PASSWORD + "!")
    assert terminal.finish() == 2
    assert "error: the two passwords differ; nothing changed" in terminal.text()


def test_a_second_chat_with_a_name_in_use_warns(cli: Cli) -> None:
    alice = cli.new_user("alice")
    first = cli.ok("create", "chat", "general").strip()
    result = cli.run("create", "chat", "general")
    assert result.returncode == 0
    second = result.stdout.strip()
    assert second != first
    assert (
        f"warning: {alice} already has a chat named 'general' ({first}); give chat ids, not "
        "this name, from now on"
    ) in result.stderr
    assert "warning" not in cli.run("create", "chat", "another").stderr
