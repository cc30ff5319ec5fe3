"""create chat, chats, members add|remove, delete chat."""

from __future__ import annotations

import json
import re
import uuid

from tests.support.cli import Cli, unique_name


def test_create_chat_prints_only_the_id(cli: Cli) -> None:
    bob = cli.new_user("bob")
    alice = cli.new_user("alice")
    name = unique_name("general")

    result = cli.run("create", "chat", name, "--member", bob)

    assert result.returncode == 0, result.stderr
    chat_id = result.stdout.strip()
    assert str(uuid.UUID(chat_id)) == chat_id
    assert f"created chat {name} · members: {alice}, {bob}" in result.stderr


def test_chats_lists_the_users_chats(cli: Cli) -> None:
    bob = cli.new_user("bob")
    alice = cli.new_user("alice")
    first = cli.ok("create", "chat", "first", "-m", bob).strip()
    second = cli.ok("create", "chat", "second").strip()
    cli.ok("send", first, "hello")

    # The latest activity first: the message sent to first is newer than second.
    rows = [line.split("\t") for line in cli.ok("chats").splitlines()]
    assert [row[:4] for row in rows] == [
        [first, "first", f"{alice}, {bob}", "0"],
        [second, "second", alice, "0"],
    ]
    assert all(re.fullmatch(r"(\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d", row[4]) for row in rows), rows

    documents = [json.loads(line) for line in cli.ok("chats", "--json").splitlines()]
    assert [(d["id"], d["members"], d["last_seq"]) for d in documents] == [
        (first, [alice, bob], 1),
        (second, [alice], 0),
    ]
    bobs = cli.ok("--user", bob, "chats").splitlines()
    assert [row.split("\t")[0] for row in bobs] == [first]


def test_members_add_and_remove(cli: Cli) -> None:
    bob = cli.new_user("bob")
    alice = cli.new_user("alice")
    chat = cli.ok("create", "chat", unique_name("room")).strip()

    out = cli.ok("members", "add", chat, bob)
    assert f"added {bob} to" in out
    assert f"members: {alice}, {bob}" in out
    cli.ok("--user", bob, "send", chat, "I am in")

    out = cli.ok("members", "remove", chat, bob)
    assert f"removed {bob} from" in out
    assert f"members: {alice}" in out.splitlines()[-1]
    result = cli.run("--user", bob, "send", chat, "still here?")
    assert result.returncode == 5


def test_a_member_may_leave_but_not_manage(cli: Cli) -> None:
    carol = cli.new_user("carol")
    bob = cli.new_user("bob")
    alice = cli.new_user("alice")
    chat = cli.ok("create", "chat", unique_name("room"), "-m", bob).strip()

    result = cli.run("--user", bob, "members", "add", chat, carol)
    assert result.returncode == 5
    assert result.stderr.strip() == (
        f"error: cannot add {carol} as {bob}: only the chat's owner or an admin may add members "
        "to the chat; ask the chat's owner or an admin"
    )
    cli.ok("--user", bob, "members", "remove", chat, bob)
    assert cli.ok("--user", bob, "chats") == ""
    assert alice in cli.ok("chats")


def test_the_owner_trying_to_leave_is_told_what_to_do(cli: Cli) -> None:
    alice = cli.new_user("alice")
    chat = cli.ok("create", "chat", unique_name("room")).strip()

    result = cli.run("members", "remove", chat, alice)

    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: cannot leave the chat as {alice}: the owner cannot leave the chat; delete the "
        f"chat instead; `meshchat delete chat {chat}` deletes it with its messages for everyone"
    )


def test_a_chat_can_be_named_instead_of_its_id(cli: Cli) -> None:
    bob = cli.new_user("bob")
    alice = cli.new_user("alice")
    name = unique_name("general")
    chat = cli.ok("create", "chat", name, "-m", bob).strip()

    cli.ok("send", name, "by name")
    assert "by name" in cli.ok("--user", bob, "history", name)

    cli.ok("create", "chat", name)
    result = cli.run("send", name, "which one?")
    assert result.returncode == 2
    assert f"2 of {alice}'s chats are named {name!r}; give the id instead" in result.stderr
    cli.ok("send", chat, "by id")

    result = cli.run("send", "no-such-chat", "hello")
    assert result.returncode == 4
    assert f"{alice} has no chat named 'no-such-chat'; `meshchat chats` lists theirs" in (
        result.stderr
    )


def test_delete_chat(cli: Cli) -> None:
    bob = cli.new_user("bob")
    alice = cli.new_user("alice")
    name = unique_name("doomed")
    chat = cli.ok("create", "chat", name, "-m", bob).strip()

    result = cli.run("--user", bob, "delete", "chat", chat, "--yes")
    assert result.returncode == 5

    result = cli.run("delete", "chat", chat)
    assert result.returncode == 2
    assert "add --yes when not at a terminal" in result.stderr

    assert f"deleted chat {name} ({chat})" in cli.ok("delete", "chat", chat, "--yes")
    result = cli.run("send", chat, "anyone?")
    assert result.returncode == 4
    assert f"{name} was deleted by {alice}" in result.stderr


def test_delete_chat_asks_at_a_terminal(cli: Cli) -> None:
    cli.new_user("alice")
    name = unique_name("doomed")
    chat = cli.ok("create", "chat", name).strip()

    terminal = cli.spawn("delete", "chat", chat)
    terminal.child.expect(r"Delete chat .* and its 0 messages\? \[y/N\]: ")
    terminal.type("n")
    assert terminal.finish() == 1
    assert "nothing deleted" in terminal.text()

    terminal = cli.spawn("delete", "chat", chat)
    terminal.child.expect(r"\[y/N\]: ")
    terminal.type("y")
    assert terminal.finish() == 0
    assert cli.ok("chats") == ""
