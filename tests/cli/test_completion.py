"""Shell completion: commands, the user's chat names, the usernames they know, profiles."""

from __future__ import annotations

from tests.support.cli import Cli, unique_name


def _complete(cli: Cli, line: str) -> list[str]:
    """What bash offers for the last word of ``line`` (empty after a trailing space)."""
    words = line.split()
    index = len(words) if line.endswith(" ") else len(words) - 1
    result = cli.run(
        env={
            "_MESHCHAT_COMPLETE": "complete_bash",
            "COMP_WORDS": line,
            "COMP_CWORD": str(index),
        }
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_commands_chat_names_and_usernames_complete(cli: Cli) -> None:
    bob = cli.new_user("bob")
    alice = cli.new_user("alice")
    prefix = unique_name("team")
    cli.ok("create", "chat", f"{prefix}-red", "-m", bob)
    cli.ok("create", "chat", f"{prefix}-blue")

    assert _complete(cli, "meshchat us") == ["use", "user"]
    assert _complete(cli, f"meshchat send {prefix}") == [f"{prefix}-blue", f"{prefix}-red"]
    assert _complete(cli, f"meshchat connect {prefix}-r") == [f"{prefix}-red"]
    assert _complete(cli, f"meshchat members add {prefix}-red {bob[:5]}") == [bob]
    assert _complete(cli, "meshchat user get alice-") == [alice]
    assert _complete(cli, f"meshchat --user {bob} send {prefix}") == [f"{prefix}-red"]


def test_completion_offers_nothing_when_it_cannot_ask(cli: Cli) -> None:
    assert _complete(cli, "meshchat send ") == []


def test_profile_names_complete(cli: Cli) -> None:
    for name in ("work", "weekend", "home"):
        cli.ok("profile", "set", name, "--server", "chat.example.org:443")

    assert _complete(cli, "meshchat use w") == ["weekend", "work"]
    assert _complete(cli, "meshchat --profile h") == ["home"]
    assert _complete(cli, "meshchat profile remove ") == ["home", "weekend", "work"]
