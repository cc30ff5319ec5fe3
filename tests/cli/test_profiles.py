"""Named profiles: chosen per command, by environment or as the default; each acts as its own
login, so that two terminals with two profiles are two users at once."""

from __future__ import annotations

import json

from tests.support.cli import PASSWORD, Cli, unique_name
from tests.support.service_stack import Stack

# The addresses come from the profile, not from the environment the Cli fixture sets.
NO_ADDRESSES = {"MESHCHAT_AUTH_ADDR": "", "MESHCHAT_CHAT_ADDR": ""}


def _profiled(cli: Cli) -> Cli:
    return Cli(cli.auth_address, cli.chat_address, cli.config_home, env=NO_ADDRESSES)


def _set_profile(cli: Cli, name: str) -> None:
    out = cli.ok(
        "profile", "set", name, "--auth-addr", cli.auth_address, "--chat-addr", cli.chat_address
    )
    assert out.strip() == (
        f"profile {name}: auth_addr={cli.auth_address}, chat_addr={cli.chat_address}"
    )


def _login(cli: Cli, profile: str, username: str) -> str:
    return cli.ok("--profile", profile, "login", username, "--password-stdin", input=PASSWORD)


def _whoami(cli: Cli, *args: str, env: dict[str, str] | None = None) -> str:
    result = cli.run(*args, "whoami", "--json", env=env)
    assert result.returncode == 0, result.stderr
    username: str = json.loads(result.stdout)["username"]
    return username


def test_two_profiles_are_two_users_in_two_terminals_at_once(cli: Cli) -> None:
    alice, bob = unique_name("alice"), unique_name("bob")
    cli.register(alice)
    cli.register(bob)
    cli = _profiled(cli)
    _set_profile(cli, "work")
    _set_profile(cli, "play")
    assert f"logged in as {alice} (user) on {cli.auth_address} (profile work)" in _login(
        cli, "work", alice
    )
    _login(cli, "play", bob)

    # The latest login (bob's) does not decide who the other profile is.
    assert _whoami(cli, "--profile", "work") == alice
    assert _whoami(cli, env={"MESHCHAT_PROFILE": "play"}) == bob
    cli.ok("--profile", "work", "create", "chat", "general", "--member", bob)

    first = cli.spawn("--profile", "work", "connect", "general")
    second = cli.spawn("connect", "general", env={"MESHCHAT_PROFILE": "play"})
    first.wait_for_text(f"connected to general as {alice}")
    second.wait_for_text(f"connected to general as {bob}")
    first.type("from work")
    second.type("from play")
    for terminal in (first, second):
        terminal.wait_for_messages(["from work", "from play"])
    assert {(line.sender, line.own) for line in first.messages()} == {(alice, True), (bob, False)}
    assert {(line.sender, line.own) for line in second.messages()} == {(alice, False), (bob, True)}
    for terminal in (first, second):
        terminal.child.sendeof()
        assert terminal.finish() == 0


def test_use_makes_a_profile_the_default_and_flags_still_win(cli: Cli) -> None:
    alice, bob = unique_name("alice"), unique_name("bob")
    cli.register(alice)
    cli.register(bob)
    cli = _profiled(cli)
    _set_profile(cli, "one")
    _set_profile(cli, "two")
    _login(cli, "one", alice)
    _login(cli, "two", bob)

    assert cli.ok("use", "two").strip() == "now using profile two"
    assert _whoami(cli) == bob
    assert _whoami(cli, "--profile", "one") == alice
    assert _whoami(cli, "--user", alice) == alice

    listed = [json.loads(line) for line in cli.ok("profile", "list", "--json").splitlines()]
    assert [(entry["name"], entry["current"], entry["user"]) for entry in listed] == [
        ("one", False, alice),
        ("two", True, bob),
    ]
    # A wrong address in the profile is overridden by the option.
    cli.ok("profile", "set", "two", "--chat-addr", "127.0.0.1:9")
    assert cli.run("chats").returncode == 7
    assert cli.run("--chat-addr", cli.chat_address, "chats").returncode == 0

    assert cli.ok("use", "--none").strip() == "now using no profile"
    assert cli.ok("profile", "remove", "two").strip() == "removed profile two"
    assert [
        json.loads(line)["name"] for line in cli.ok("profile", "list", "--json").splitlines()
    ] == ["one"]


def test_a_profile_acts_only_as_its_own_login(cli: Cli) -> None:
    alice = cli.new_user("alice")
    cli = _profiled(cli)
    _set_profile(cli, "fresh")

    result = cli.run("--profile", "fresh", "chats")

    assert result.returncode == 3
    assert result.stderr.strip() == (
        "error: nobody is logged in with profile fresh; run "
        "`meshchat --profile fresh login USERNAME`"
    )
    _login(cli, "fresh", alice)
    cli.ok("--profile", "fresh", "logout")
    assert cli.run("--profile", "fresh", "chats").returncode == 3


def test_an_unknown_profile_or_a_bad_name_is_a_usage_error(cli: Cli) -> None:
    result = cli.run("--profile", "nope", "chats")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: there is no profile 'nope'; `meshchat profile list` lists them, "
        "`meshchat profile set nope --server HOST:PORT` makes it"
    )
    result = cli.run("profile", "set", "no spaces")
    assert result.returncode == 2
    assert "profile name 'no spaces': use 1 to 64 letters" in result.stderr
    result = cli.run("use", "nope")
    assert result.returncode == 2


def test_whoami_works_offline_from_the_stored_login(stack: Stack) -> None:
    cli = Cli(stack.auth.address, stack.chat.address, stack.workdir / "config")
    alice = cli.new_user("alice")
    stack.stop()

    document = json.loads(cli.ok("whoami", "--json"))
    assert document["username"] == alice
    assert document["role"] == "user"
    assert document["profile"] is None
    assert document["auth_address"] == stack.auth.address
    assert document["chat_address"] == stack.chat.address
    out = cli.ok("whoami")
    assert f"username: {alice}" in out
    assert "login valid until: " in out
