"""Scripting: a message from standard input, and --json on every command that prints."""

from __future__ import annotations

import json

from tests.support.cli import Cli, chat_lines, unique_name


def test_send_reads_the_message_from_standard_input(cli: Cli) -> None:
    cli.new_user("alice")
    chat = cli.ok("create", "chat", unique_name("room")).strip()

    assert cli.ok("send", chat, "-", input="hi from a pipe\n").strip() == "sent #1"
    assert cli.ok("send", chat, input="two\nlines\n").strip() == "sent #2"
    texts = [json.loads(line)["text"] for line in cli.ok("history", chat, "--json").splitlines()]
    assert texts == ["hi from a pipe", "two\nlines"]

    result = cli.run("send", chat, "-", input="")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: the message on standard input is empty; nothing sent"
    # A literal dash is still a message when it is not the whole argument.
    cli.ok("send", chat, "--", "- not stdin")
    assert chat_lines(cli.ok("history", chat, "-n", "1"))[0].text == "- not stdin"


def test_json_on_every_command_that_prints(cli: Cli) -> None:
    bob = cli.new_user("bob")
    alice = cli.new_user("alice")

    created = json.loads(cli.ok("create", "chat", "scripted", "-m", bob, "--json"))
    assert (created["name"], created["members"], created["last_seq"]) == (
        "scripted",
        sorted([alice, bob]),
        0,
    )
    chat = created["id"]
    sent = json.loads(cli.ok("send", chat, "as json", "--json"))
    assert (sent["chat_id"], sent["seq"], sent["sender"], sent["text"], sent["own"]) == (
        chat,
        1,
        alice,
        "as json",
        True,
    )
    carol = cli.new_user("carol")
    cli.ok("--user", carol, "logout")
    added = json.loads(cli.ok("--user", alice, "members", "add", chat, carol, "--json"))
    assert carol in added["members"]
    removed = json.loads(cli.ok("--user", alice, "members", "remove", chat, carol, "--json"))
    assert carol not in removed["members"]
    me = json.loads(cli.ok("--user", alice, "whoami", "--json"))
    assert (me["username"], me["role"], me["auth_address"]) == (alice, "user", cli.auth_address)
    user = json.loads(cli.ok("--user", alice, "user", "get", bob, "--json"))
    assert (user["username"], user["role"], user["email"]) == (bob, "user", "")
    chats = [json.loads(line) for line in cli.ok("--user", alice, "chats", "--json").splitlines()]
    assert [entry["id"] for entry in chats] == [chat]


def test_history_pages_back_and_forth(cli: Cli) -> None:
    cli.new_user("alice")
    name = unique_name("room")
    chat = cli.ok("create", "chat", name).strip()
    for number in range(1, 8):
        cli.ok("send", chat, f"m{number}")

    def page(*args: str) -> tuple[list[str], str]:
        result = cli.run("history", name, "--json", *args)
        assert result.returncode == 0, result.stderr
        return [json.loads(line)["text"] for line in result.stdout.splitlines()], result.stderr

    assert page("-n", "3") == (
        ["m5", "m6", "m7"],
        f"more before #5: meshchat history {name} --before 5\n",
    )
    assert page("-n", "3", "--before", "5") == (
        ["m2", "m3", "m4"],
        f"more before #2: meshchat history {name} --before 2\n",
    )
    assert page("-n", "3", "--before", "2") == (["m1"], "")
    assert page("-n", "3", "--after", "0") == (
        ["m1", "m2", "m3"],
        f"more after #3: meshchat history {name} --after 3\n",
    )
    assert page("-n", "3", "--after", "6") == (["m7"], "")

    result = cli.run("history", name, "--before", "3", "--after", "1")
    assert result.returncode == 2
    assert "give --before or --after, not both" in result.stderr
