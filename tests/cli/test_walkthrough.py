"""The CLI walk-through of the docs works as written: its three blocks, typed into shells in
pseudo-terminals, against a real stack (only the addresses come from the environment)."""

from __future__ import annotations

import re
import subprocess

import pexpect

from tests.support.cli import Cli, Terminal
from tests.support.docs import ROOT, section
from tests.support.passwords import PASSWORD
from tests.support.service_stack import Stack

HEADING = "Walk-through: two users, three terminals"
SHELL_PROMPT = "walkthrough$ "


def walkthrough_blocks() -> list[list[str]]:
    """The commands of the README walk-through's ```sh blocks."""
    blocks = section(ROOT / "README.md", HEADING)
    return [[line for line in block.splitlines() if line.strip()] for block in blocks]


def _shell(cli: Cli) -> Terminal:
    shell = pexpect.spawn(
        "bash",
        ["--noprofile", "--norc", "--noediting"],
        cwd=ROOT,
        env=cli.environment({"TERM": "xterm", "PS1": SHELL_PROMPT}),
        encoding="utf-8",
        codec_errors="replace",
        dimensions=(40, 160),
        timeout=30,
    )
    terminal = Terminal(shell)
    shell.expect_exact(SHELL_PROMPT)
    return terminal


def _type_commands(terminal: Terminal, commands: list[str]) -> None:
    """Type each command, answering password prompts, and wait for the shell to be back."""
    for command in commands:
        terminal.type(command)
        while True:
            index = terminal.child.expect(
                ["Password: $", "Repeat for confirmation: $", re.escape(SHELL_PROMPT)]
            )
            if index == 2:
                break
            terminal.type(PASSWORD)
        terminal.type("echo exit=$?")
        status = terminal.child.expect([r"exit=0\r?\n", r"exit=\d+\r?\n"])
        assert status == 0, (command, terminal.text())
        terminal.child.expect_exact(SHELL_PROMPT)


def test_the_walkthrough_works_as_written(stack: Stack) -> None:
    cli = Cli(stack.auth.address, stack.chat.address, stack.workdir / "config")
    setup, bob_joins, script_sends = walkthrough_blocks()[:3]
    assert setup[-1].startswith("meshchat connect")
    assert bob_joins[-1].startswith("meshchat --user bob connect")

    alice = _shell(cli)
    _type_commands(alice, setup[:-1])
    alice.type(setup[-1])
    alice.wait_for_text("connected to general as alice")
    bob = _shell(cli)
    _type_commands(bob, bob_joins[:-1])
    bob.type(bob_joins[-1])
    bob.wait_for_text("connected to general as bob")

    script = subprocess.run(
        ["bash", "-e", "-c", "\n".join(script_sends)],
        cwd=ROOT,
        env=cli.environment(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert script.returncode == 0, script.stderr
    assert script.stdout.strip() == "sent #1"
    sent = script_sends[-1].split('"')[1]
    for session in (alice, bob):
        session.wait_for_messages([sent])

    alice.type("hi bob")
    bob.type("hi alice")
    for session in (alice, bob):
        session.wait_for_messages(["hi bob", "hi alice"])
    assert [line.text for line in alice.messages()] == [line.text for line in bob.messages()]
    assert [(line.sender, line.own) for line in alice.messages() if line.text == "hi bob"] == [
        ("alice", True)
    ]

    for session in (alice, bob):
        session.child.sendcontrol("d")  # leaves meshchat
        session.child.expect_exact(SHELL_PROMPT)
        session.type("exit")
        assert session.finish() == 0
