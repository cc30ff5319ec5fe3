"""user list|get|update|delete, as an admin and as a user."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from devtools.paths import VENV_BIN
from tests.support.cli import Cli, unique_name
from tests.support.passwords import PASSWORD
from tests.support.service_stack import Stack


def _new_admin(cli: Cli, stack: Stack) -> str:
    """An admin made with ``meshchat-auth create-admin``, logged in."""
    admin = unique_name("root")
    subprocess.run(
        [str(VENV_BIN / "meshchat-auth"), "create-admin", "--username", admin, "--password-stdin"],
        input=f"{PASSWORD}\n",
        cwd=stack.workdir,
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    cli.login(admin)
    return admin


def test_an_admin_lists_gets_updates_and_deletes_users(cli: Cli, shared_stack: Stack) -> None:
    alice = unique_name("alice")
    cli.register(alice)
    admin = _new_admin(cli, shared_stack)

    rows = [line.split("\t") for line in cli.ok("user", "list").splitlines()]
    by_name = {row[1]: row for row in rows}
    assert by_name[admin][2] == "admin"
    assert by_name[alice][2] == "user"
    alice_id = by_name[alice][0]

    out = cli.ok("user", "get", alice)
    assert f"id: {alice_id}" in out
    assert f"username: {alice}" in cli.ok("user", "get", alice_id)

    out = cli.ok("user", "update", alice, "--email", f"{alice}@example.org", "--role", "admin")
    assert out.strip() == (
        f"updated {alice}: email (none) -> {alice}@example.org, role user -> admin"
    )
    assert f"email: {alice}@example.org" in cli.ok("user", "get", alice)
    out = cli.ok("user", "update", alice, "--role", "admin")
    assert out.strip() == f"updated {alice}: nothing changed"

    users = [json.loads(line) for line in cli.ok("user", "list", "--json").splitlines()]
    assert {(u["username"], u["role"]) for u in users} >= {(admin, "admin"), (alice, "admin")}
    document = json.loads(cli.ok("user", "get", alice, "--json"))
    assert (document["id"], document["email"]) == (alice_id, f"{alice}@example.org")
    assert document["created"].endswith("+00:00")
    updated = json.loads(cli.ok("user", "update", alice, "--role", "user", "--json"))
    assert (updated["username"], updated["role"]) == (alice, "user")

    assert f"deleted user {alice}" in cli.ok("user", "delete", alice, "--yes")
    assert cli.run("user", "get", alice).returncode == 4
    result = cli.run("login", alice, "--password-stdin", input=f"{PASSWORD}\n")
    assert result.returncode == 3


def test_a_user_may_not_list_users_or_promote_themselves(cli: Cli) -> None:
    alice = cli.new_user("alice")

    result = cli.run("user", "list")
    assert result.returncode == 5
    assert result.stderr.strip() == (
        f"error: cannot list the users as {alice}: that needs an admin; ask an admin"
    )
    result = cli.run("user", "update", alice, "--role", "admin")
    assert result.returncode == 5
    assert "only an admin may change a role" in result.stderr


def test_a_user_changes_their_password_and_deletes_their_account(cli: Cli) -> None:
    alice = cli.new_user("alice")
    new_password = "a brand new password"

    result = cli.run("user", "update", alice, "--password-stdin", input=f"{new_password}\n")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: to change your email or password your current password is needed: add "
        "--current-password-stdin and give it on the first line of standard input"
    )
    result = cli.run(
        "user",
        "update",
        alice,
        "--current-password-stdin",
        "--password-stdin",
        input=f"not my password\n{new_password}\n",
    )
    assert result.returncode != 0
    assert "current_password" in result.stderr
    out = cli.ok(
        "user",
        "update",
        alice,
        "--current-password-stdin",
        "--password-stdin",
        input=f"{PASSWORD}\n{new_password}\n",
    )
    assert out.strip() == f"updated {alice}: password changed (your other logins have ended)"
    result = cli.run("login", alice, "--password-stdin", input=f"{PASSWORD}\n")
    assert result.returncode == 3
    cli.login(alice, new_password)

    result = cli.run("user", "update", alice)
    assert result.returncode == 2
    assert "give --email, --password or --role" in result.stderr

    result = cli.run("user", "delete", alice, "--yes")
    assert result.returncode == 2
    assert "to delete your account your current password is needed" in result.stderr
    assert f"deleted user {alice}" in cli.ok(
        "user", "delete", alice, "--yes", "--current-password-stdin", input=f"{new_password}\n"
    )
    result = cli.run("whoami")
    assert result.returncode == 3
    assert "not logged in" in result.stderr


def test_the_current_password_is_asked_at_a_terminal(cli: Cli) -> None:
    alice = cli.new_user("alice")
    terminal = cli.spawn("user", "update", alice, "--password")
    terminal.child.expect("Current password: ")
    terminal.type(PASSWORD)
    terminal.child.expect("New password: ")
    terminal.type("another new password")
    terminal.child.expect("Repeat for confirmation: ")
    terminal.type("another new password")
    assert terminal.finish() == 0
    assert f"updated {alice}: password changed" in terminal.text()
    assert PASSWORD not in terminal.text()
    cli.login(alice, "another new password")


def test_an_admin_ends_every_login_of_a_compromised_account(
    cli: Cli, shared_stack: Stack, tmp_path: Path
) -> None:
    alice = unique_name("alice")
    cli.register(alice)
    victim = Cli(cli.auth_address, cli.chat_address, tmp_path / "victim")
    victim.login(alice)
    admin = _new_admin(cli, shared_stack)
    result = victim.run("user", "logout", admin)
    assert result.returncode == 5
    assert "you may only end your own logins" in result.stderr

    assert cli.ok("user", "logout", alice).strip() == f"ended every login of {alice}"
    # Its access token, still fresh, is refused, and so is its refresh token.
    result = victim.run("user", "get", alice)
    assert result.returncode == 3
    victim.login(alice)
    assert f"username: {alice}" in victim.ok("user", "get", alice)
