"""register, login, logout, whoami; the credentials file; token refresh."""

from __future__ import annotations

import json
import stat
import subprocess
import time
from pathlib import Path

from tests.support.cli import MESHCHAT, Cli, unique_name
from tests.support.passwords import PASSWORD
from tests.support.service_stack import Stack
from tests.support.tokens import mint_access_token


def test_register_login_whoami_logout(cli: Cli) -> None:
    alice = unique_name("alice")
    email = f"{alice}@example.org"
    out = cli.ok("register", alice, "--email", email, "--password-stdin", input=PASSWORD)
    assert f"registered {alice}" in out

    out = cli.ok("login", alice, "--password-stdin", input=f"{PASSWORD}\n")
    assert f"logged in as {alice} (user) on {cli.auth_address}" in out

    out = cli.ok("whoami")
    assert f"username: {alice}" in out
    assert "role: user" in out
    assert f"auth service: {cli.auth_address}" in out
    assert f"chat service: {cli.chat_address}" in out
    assert f"email: {email}" in cli.ok("user", "get", alice)

    assert f"logged out {alice} from {cli.auth_address}" in cli.ok("logout")
    result = cli.run("whoami")
    assert result.returncode == 3
    assert result.stderr.strip() == (
        f"error: you are not logged in to {cli.auth_address}; run `meshchat login USERNAME`"
    )


def test_the_hint_after_register_carries_the_options_given(cli: Cli) -> None:
    bob = unique_name("bob")
    out = cli.ok(
        "--auth-addr",
        cli.auth_address,
        "--insecure",
        "register",
        bob,
        "--password-stdin",
        input=PASSWORD,
    )
    assert out.strip() == (
        f"registered {bob}; log in with "
        f"`meshchat --auth-addr {cli.auth_address} --insecure login {bob}`"
    )
    # From the environment (as the Cli sets the addresses), they still apply: not repeated.
    carol = unique_name("carol")
    assert f"log in with `meshchat login {carol}`" in cli.ok(
        "register", carol, "--password-stdin", input=PASSWORD
    )


def test_credentials_file_is_private_and_holds_no_password(cli: Cli) -> None:
    alice = cli.new_user("alice")
    path = cli.credentials_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert PASSWORD not in path.read_text()
    login = cli.credentials(alice)
    assert login["access_token"].startswith("ey")
    assert login["refresh_token"]

    # A file made readable by others is private again after the next write.
    path.chmod(0o644)
    cli.login(alice)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_logins_are_kept_per_user_and_the_newest_is_the_default(cli: Cli) -> None:
    alice = cli.new_user("alice")
    bob = cli.new_user("bob")
    assert f"username: {bob}" in cli.ok("whoami")
    assert f"username: {alice}" in cli.ok("--user", alice, "whoami")
    assert f"username: {alice}" in cli.run("whoami", env={"MESHCHAT_USER": alice}).stdout

    cli.ok("--user", bob, "logout")
    assert f"username: {alice}" in cli.ok("whoami")
    result = cli.run("--user", bob, "whoami")
    assert result.returncode == 3
    assert f"{bob} is not logged in to {cli.auth_address}; run `meshchat login {bob}`" in (
        result.stderr
    )


def test_login_asks_for_the_password_without_echo(cli: Cli) -> None:
    alice = unique_name("alice")
    cli.register(alice)
    terminal = cli.spawn("login", alice)
    terminal.child.expect("Password: ")
    terminal.type(PASSWORD)
    assert terminal.finish() == 0
    assert f"logged in as {alice}" in terminal.text()
    assert PASSWORD not in terminal.text()


def test_register_asks_for_the_password_twice(cli: Cli) -> None:
    bob = unique_name("bob")
    terminal = cli.spawn("register", bob)
    terminal.child.expect("Password: ")
    terminal.type(PASSWORD)
    terminal.child.expect("Repeat for confirmation: ")
    terminal.type(PASSWORD)
    assert terminal.finish() == 0
    assert PASSWORD not in terminal.text()
    cli.login(bob)


def test_an_access_token_about_to_expire_is_refreshed_first(cli: Cli) -> None:
    alice = cli.new_user("alice")
    before = cli.credentials(alice)
    cli.edit_credentials(alice, access_token_expires=time.time() + 5)

    assert f"username: {alice}" in cli.ok("user", "get", alice)

    after = cli.credentials(alice)
    assert after["refresh_token"] != before["refresh_token"]
    assert after["access_token_expires"] > time.time() + 60


def test_an_access_token_the_server_rejects_is_refreshed_and_the_call_repeated(
    cli: Cli, shared_stack: Stack
) -> None:
    alice = cli.new_user("alice")
    before = cli.credentials(alice)
    expired = mint_access_token(
        shared_stack.keys_dir, user_id=before["user_id"], username=alice, expires_in=-60
    )
    # The file claims the token is good for an hour, so only the server can tell.
    cli.edit_credentials(alice, access_token=expired, access_token_expires=time.time() + 3600)

    assert f"username: {alice}" in cli.ok("user", "get", alice)

    after = cli.credentials(alice)
    assert after["access_token"] != expired
    assert after["refresh_token"] != before["refresh_token"]


def test_processes_refreshing_at_once_do_not_revoke_the_login(cli: Cli) -> None:
    alice = cli.new_user("alice")
    cli.edit_credentials(alice, access_token_expires=0)
    # Without the lock, they would all spend the same refresh token; the auth service would
    # see a reused refresh token and revoke the login.
    processes = [
        subprocess.Popen(
            [MESHCHAT, "user", "get", alice],
            env=cli.environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for process in processes:
        out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        assert f"username: {alice}" in out
    assert f"username: {alice}" in cli.ok("user", "get", alice)


def test_a_revoked_login_says_to_log_in_again_and_is_forgotten(cli: Cli) -> None:
    alice = cli.new_user("alice")
    kept = cli.credentials_path().read_text()
    cli.ok("logout")
    cli.credentials_path().write_text(kept)
    cli.edit_credentials(alice, access_token_expires=0)

    result = cli.run("chats")

    assert result.returncode == 3
    assert result.stderr.strip() == (
        f"error: the login of {alice} on {cli.auth_address} has ended (refresh token revoked: "
        f"log in again); run `meshchat login {alice}`"
    )
    assert alice not in json.loads(cli.credentials_path().read_text())["servers"].get(
        cli.auth_address, {}
    )


def test_a_damaged_credentials_file_says_what_to_do(cli: Cli) -> None:
    cli.new_user("alice")
    cli.credentials_path().write_text("{not json")

    result = cli.run("whoami")

    assert result.returncode == 3
    assert result.stderr.startswith(
        f"error: the credentials file {cli.credentials_path()} is damaged (JSONDecodeError: "
    )
    assert result.stderr.strip().endswith("delete it and log in again")


def test_logout_everywhere_ends_the_logins_of_other_devices(cli: Cli, tmp_path: Path) -> None:
    alice = cli.new_user("alice")
    laptop = Cli(cli.auth_address, cli.chat_address, tmp_path / "laptop")
    laptop.login(alice)
    # Force the laptop to refresh on its next call, which the server now refuses.
    laptop.edit_credentials(alice, access_token_expires=0)

    result = cli.run("logout", "--everywhere")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: to log out everywhere your current password is needed: add "
        "--current-password-stdin and give it on the first line of standard input"
    )
    result = cli.run("logout", "--current-password-stdin", input=f"{PASSWORD}\n")
    assert result.returncode == 2
    assert "only goes with --everywhere" in result.stderr
    result = cli.run("logout", "--everywhere", "--current-password-stdin", input="a wrong one\n")
    assert result.returncode != 0
    assert "current_password: is wrong" in result.stderr

    out = cli.ok("logout", "--everywhere", "--current-password-stdin", input=f"{PASSWORD}\n")
    assert out.strip() == f"logged out {alice} everywhere: every login of it has ended"
    assert cli.run("whoami").returncode == 3  # forgotten here
    result = laptop.run("user", "get", alice)
    assert result.returncode == 3
    assert "meshchat login" in result.stderr
    laptop.login(alice)
    assert f"username: {alice}" in laptop.ok("user", "get", alice)
