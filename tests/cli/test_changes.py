"""edit, delete-message, read and the unread counts of `meshchat chats`; edits, deletions and
removals as the chat screen of `meshchat connect` shows them."""

from __future__ import annotations

import json

from tests.support.cli import ChatLine, Cli, Terminal, chat_lines, unique_name

ROWS, COLUMNS = 24, 100


def _chat_of_two(cli: Cli) -> tuple[str, str, str, str]:
    bob = cli.new_user("bob")
    alice = cli.new_user("alice")
    name = unique_name("room")
    chat = cli.ok("create", "chat", name, "-m", bob).strip()
    return alice, bob, chat, name


def _open(cli: Cli, user: str, chat: str) -> Terminal:
    terminal = cli.spawn("--user", user, "connect", chat, dimensions=(ROWS, COLUMNS))
    terminal.wait_for(lambda t: t.rows()[-1].startswith(" live · "), "the status line: live")
    return terminal


def test_edit_and_delete_show_in_history(cli: Cli) -> None:
    alice, bob, chat, _ = _chat_of_two(cli)
    cli.ok("send", chat, "helo")
    cli.ok("--user", bob, "send", chat, "oops")
    edited = cli.ok("edit", chat, "1", "hello")
    assert edited.startswith("edited #1: ")
    assert edited.rstrip().endswith(f"{alice} (you): hello (edited)")
    assert cli.ok("--user", bob, "delete-message", chat, "2", "--yes").strip() == (
        f"deleted message #2 (sent by {bob})"
    )
    assert chat_lines(cli.ok("history", chat)) == [
        ChatLine(alice, "hello (edited)", own=True),
        ChatLine(bob, "message deleted", own=False),
    ]
    documents = [json.loads(line) for line in cli.ok("history", chat, "--json").splitlines()]
    assert [(d["seq"], d["text"], d["edited"], d["deleted"]) for d in documents] == [
        (1, "hello", True, False),
        (2, "", False, True),
    ]

    refused = cli.run("--user", bob, "edit", chat, "1", "mine now")
    assert refused.returncode != 0
    assert "only its sender may edit a message" in refused.stderr
    missing = cli.run("edit", chat, "3", "the edit itself")
    assert missing.returncode != 0
    assert "there is no message #3" in missing.stderr
    unconfirmed = cli.run("delete-message", chat, "1")
    assert unconfirmed.returncode != 0
    assert "--yes" in unconfirmed.stderr


def test_read_and_the_unread_counts_of_chats(cli: Cli) -> None:
    _, bob, chat, name = _chat_of_two(cli)
    quiet = cli.ok("create", "chat", unique_name("quiet"), "-m", bob).strip()
    for text in ("one", "two", "three"):
        cli.ok("send", chat, text)
    rows = [row.split("\t") for row in cli.ok("--user", bob, "chats").splitlines()]
    # The chat with the latest message first, though created before the quiet one.
    assert [(row[0], row[3]) for row in rows][:2] == [(chat, "3"), (quiet, "0")]
    documents = [json.loads(line) for line in cli.ok("--user", bob, "chats", "--json").splitlines()]
    assert [(d["id"], d["unread"]) for d in documents][:2] == [(chat, 3), (quiet, 0)]

    assert cli.ok("--user", bob, "read", chat, "2").strip() == "read up to #2 · 1 unread"
    assert cli.ok("--user", bob, "read", chat, "1").strip() == "read up to #2 · 1 unread"
    assert cli.ok("--user", bob, "read", name).strip() == "read up to #3 · 0 unread"
    beyond = cli.run("--user", bob, "read", chat, "9")
    assert beyond.returncode != 0
    assert "beyond the chat's newest message" in beyond.stderr


def test_connect_marks_where_you_left_off_and_what_it_showed_read(cli: Cli) -> None:
    _, bob, chat, _ = _chat_of_two(cli)
    cli.ok("send", chat, "seen")
    cli.ok("--user", bob, "read", chat)
    cli.ok("send", chat, "unseen")

    result = cli.run("--user", bob, "connect", chat, input="")

    assert result.returncode == 0, result.stderr
    assert "── new since you left ──" in result.stderr
    assert [line.text for line in chat_lines(result.stdout)] == ["seen", "unseen"]
    documents = [json.loads(line) for line in cli.ok("--user", bob, "chats", "--json").splitlines()]
    assert next(d for d in documents if d["id"] == chat)["unread"] == 0


def test_open_screens_show_edits_and_deletions_and_slash_commands_make_them(cli: Cli) -> None:
    alice, bob, chat, _ = _chat_of_two(cli)
    cli.ok("send", chat, "first draft")
    cli.ok("--user", bob, "send", chat, "regrettable")
    bobs = _open(cli, bob, chat)
    alices = _open(cli, alice, chat)

    alices.type("/edit 1 final text")
    for terminal in (alices, bobs):
        terminal.wait_for_text(f"{alice} edited message #1:")
        terminal.wait_for_messages(["final text (edited)"])
    bobs.type("/delete 2")
    for terminal in (alices, bobs):
        terminal.wait_for_text(f"{bob} deleted message #2 ({bob}'s)")
    bobs.type("/edit 1 not mine")
    bobs.wait_for_text("only its sender may edit a message")
    bobs.type("/edit x")
    bobs.wait_for_text("/edit takes a message's number and the new text")
    for terminal in (alices, bobs):
        terminal.child.sendcontrol("d")
        assert terminal.finish() == 0


def test_a_removed_member_is_told_who_removed_them(cli: Cli) -> None:
    alice, bob, chat, name = _chat_of_two(cli)
    bobs = _open(cli, bob, chat)
    cli.ok("members", "remove", chat, bob)
    bobs.wait_for_text(f"you were removed from {name} by {alice}")
    assert bobs.finish() != 0
    cli.ok("members", "add", chat, bob)
    result = cli.run("delete", "chat", chat, "--yes")
    assert result.returncode == 0, result.stderr
    gone = cli.run("--user", bob, "history", chat)
    assert f"{name} was deleted by {alice}" in gone.stderr
