"""The chat screen of ``meshchat connect`` in a pseudo-terminal of fixed size, read through a
terminal emulator: the pinned input line, wrapping, resizing, slash commands, the status
line during an outage."""

from __future__ import annotations

import itertools
import json
import re

from tests.support.cli import Cli, Terminal, unique_name
from tests.support.service_stack import Stack

ROWS, COLUMNS = 24, 80
LONG = " ".join(f"word{number:02d}" for number in range(1, 29))  # 195 characters


def _open(cli: Cli, user: str, chat: str, columns: int = COLUMNS) -> Terminal:
    terminal = cli.spawn("--user", user, "connect", chat, dimensions=(ROWS, columns))
    terminal.wait_for(lambda t: t.rows()[-1].startswith(" live · "), "the status line: live")
    return terminal


def _chat(cli: Cli) -> tuple[str, str, str]:
    bob = cli.new_user("bob")
    alice = cli.new_user("alice")
    chat = cli.ok("create", "chat", unique_name("room"), "-m", bob).strip()
    return alice, bob, chat


def _message_rows(terminal: Terminal, first_word: str) -> list[str]:
    """The rows of the message that begins with ``first_word``, as shown now."""
    rows = terminal.rows()
    start = next(i for i, row in enumerate(rows) if f": {first_word}" in row)
    found = [rows[start]]
    for row in rows[start + 1 :]:
        if not row.startswith(" "):
            break
        found.append(row)
    return found


def _leave(terminal: Terminal) -> None:
    terminal.child.sendcontrol("d")
    assert terminal.finish() == 0


def test_long_messages_wrap_between_words_with_a_hanging_indent(cli: Cli) -> None:
    alice, bob, chat = _chat(cli)
    terminal = _open(cli, alice, chat)

    cli.ok("--user", bob, "send", chat, LONG)
    terminal.wait_for_text("word28")

    rows = _message_rows(terminal, "word01")
    assert len(rows) == 4, rows
    for row, following in itertools.pairwise(rows):
        # Broken between words, and only where the next word did not fit.
        assert len(row) + 1 + len(following.split()[0]) > COLUMNS, rows
    indent = rows[0].index("word01")
    assert re.match(rf"\d\d:\d\d:\d\d {bob}: word01 ", rows[0]), rows
    for row in rows[1:]:
        # The hanging indent: every following row begins where the text began.
        assert row[:indent] == " " * indent, rows
        assert row[indent] != " ", rows
    assert all(len(row) <= COLUMNS for row in rows)
    # Every word whole, in order: no word was cut at the edge.
    assert " ".join(" ".join(rows).split()[rows[0].split().index("word01") :]) == LONG
    _leave(terminal)


def test_a_message_arriving_mid_typing_leaves_the_typed_line_alone(cli: Cli) -> None:
    alice, bob, chat = _chat(cli)
    terminal = _open(cli, alice, chat)

    terminal.child.send("half of what I am typ")
    terminal.wait_for(lambda t: t.rows()[-2] == "> half of what I am typ", "the typed text")
    cli.ok("--user", bob, "send", chat, "interrupting you")
    # The message goes above the input line, which is drawn again as it was.
    terminal.wait_for(
        lambda t: (
            t.rows()[-3].endswith(f"{bob}: interrupting you")
            and t.rows()[-2] == "> half of what I am typ"
        ),
        "the message above the typed text",
    )
    rows = terminal.rows()
    assert rows[-1].startswith(f" live · {alice} in ")
    assert sum("interrupting you" in row for row in rows) == 1
    terminal.child.send("ing\r")
    terminal.wait_for_messages(["half of what I am typing"])
    assert [(line.sender, line.own) for line in terminal.messages()] == [
        (bob, False),
        (alice, True),
    ]
    _leave(terminal)


def test_after_a_resize_messages_wrap_to_the_new_width(cli: Cli) -> None:
    alice, bob, chat = _chat(cli)
    terminal = _open(cli, alice, chat)

    terminal.resize(ROWS, 50)
    cli.ok("--user", bob, "send", chat, LONG)
    terminal.wait_for_text("word28")

    rows = _message_rows(terminal, "word01")
    assert len(rows) >= 5, rows
    assert all(len(row) <= 50 for row in rows), rows
    _leave(terminal)


def test_history_is_set_apart_from_live_messages(cli: Cli) -> None:
    alice, bob, chat = _chat(cli)
    cli.ok("--user", bob, "send", chat, "before one")
    cli.ok("--user", bob, "send", chat, "before two")
    terminal = _open(cli, alice, chat)
    cli.ok("--user", bob, "send", chat, "after")
    terminal.wait_for_messages(["after"])

    lines = terminal.text().splitlines()
    marks = [i for i, line in enumerate(lines) if "──" in line]
    assert len(marks) == 2, lines
    assert "── 2 earlier message(s) ──" in lines[marks[0]]
    assert "── live from here ──" in lines[marks[1]]
    between = [line for line in lines[marks[0] : marks[1]] if "before" in line]
    assert len(between) == 2
    assert any("after" in line for line in lines[marks[1] :])
    _leave(terminal)


def test_a_mention_is_highlighted_and_rings_the_bell(cli: Cli) -> None:
    alice, bob, chat = _chat(cli)
    terminal = _open(cli, alice, chat)
    quiet = cli.spawn("--user", bob, "connect", chat, "--no-bell", dimensions=(ROWS, COLUMNS))
    quiet.wait_for(lambda t: t.rows()[-1].startswith(" live · "), "bob's status line: live")

    cli.ok("--user", bob, "send", chat, f"no bell for @{alice}x or {alice}")
    terminal.wait_for_text(f"or {alice}")
    assert terminal.screen.bells == 0
    cli.ok("--user", bob, "send", chat, f"hey @{alice}, look")
    terminal.wait_for_text("look")
    terminal.wait_for(lambda t: t.screen.bells == 1, "the bell")

    row = next(y for y, text in enumerate(terminal.rows()) if "look" in text)
    start = terminal.rows()[row].index(f"@{alice}")
    line = terminal.screen.buffer[row]
    assert all(line[x].bold for x in range(start, start + len(alice) + 1))
    assert not line[start - 2].bold

    cli.ok("--user", alice, "send", chat, f"@{bob} rings nothing with --no-bell")
    quiet.wait_for_text("rings nothing")
    assert quiet.screen.bells == 0
    _leave(terminal)
    _leave(quiet)


def test_slash_commands(cli: Cli) -> None:
    alice, bob, chat = _chat(cli)
    terminal = _open(cli, alice, chat)

    terminal.type("/help")
    terminal.wait_for_text("/history N the last N messages")
    terminal.type("/who")
    terminal.wait_for_text("2 member(s) of")
    assert f"{alice} (owner)" in terminal.text()
    terminal.type("/me waves")
    terminal.wait_for_text(f"* {alice} (you) waves")
    terminal.type("//slashed line")
    terminal.wait_for_messages(["/slashed line"])
    terminal.type("/bogus")
    terminal.wait_for_text("unknown command /bogus; /help lists them, //bogus sends it")
    terminal.type("/history 1")
    terminal.wait_for_text("── end of history ──")
    terminal.type("/quit")
    assert terminal.finish() == 0

    # Only the action and the message were sent; the commands were not.
    history = cli.ok("--user", bob, "history", chat, "--json").splitlines()
    assert [json.loads(line)["text"] for line in history] == ["/me waves", "/slashed line"]


def test_the_status_line_shows_the_outage_and_the_retries(stack: Stack) -> None:
    cli = Cli(stack.auth.address, stack.chat.address, stack.workdir / "config")
    alice, _bob, chat = _chat(cli)
    terminal = _open(cli, alice, chat)

    stack.chat.stop()
    pattern = re.compile(r"(reconnecting|offline).* · try (\d+) in \d+ s")
    terminal.wait_for(lambda t: bool(pattern.search(t.rows()[-1])), "the retry on the status line")
    terminal.wait_for(
        lambda t: (m := pattern.search(t.rows()[-1])) is not None and int(m.group(2)) >= 3,
        "the third try on the status line",
    )
    terminal.type("typed while away")
    terminal.wait_for(lambda t: "· 1 unsent ·" in t.rows()[-1], "the unsent count")
    # After a while of failed tries the chat counts as offline; the tries go on.
    offline = re.compile(r"^ offline since \d\d:\d\d:\d\d · try \d+ in [0-5] s · 1 unsent · ")
    terminal.wait_for(lambda t: bool(offline.match(t.rows()[-1])), "offline", timeout=60)

    stack.chat.start()
    terminal.wait_for_messages(["typed while away"], timeout=60)
    terminal.wait_for(lambda t: t.rows()[-1].startswith(" live · "), "live again")
    terminal.wait_for_text("reconnected")
    _leave(terminal)
