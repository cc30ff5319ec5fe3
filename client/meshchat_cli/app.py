"""``meshchat``: the command-line client of the meshchat services."""

from __future__ import annotations

import os
import sys

import typer

__all__ = ["create_app", "main"]


def _group(help_text: str) -> typer.Typer:
    return typer.Typer(help=help_text, no_args_is_help=True, rich_markup_mode="markdown")


def create_app() -> typer.Typer:
    """The command tree; built per invocation, so nothing lives at module level."""
    from meshchat_cli.commands import accounts, chats, messages, profiles, users
    from meshchat_cli.options import HELP, global_options

    app = typer.Typer(
        name="meshchat",
        help=HELP,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode="markdown",
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(global_options)

    app.command("register")(accounts.register)
    app.command("login")(accounts.login)
    app.command("logout")(accounts.logout)
    app.command("whoami")(accounts.whoami)
    app.command("use")(profiles.use)
    profile = _group("Named profiles: where to connect and as whom.")
    profile.command("set")(profiles.set_profile)
    profile.command("list")(profiles.list_profiles)
    profile.command("remove")(profiles.remove_profile)
    app.add_typer(profile, name="profile")

    create = _group("Create a chat.")
    create.command("chat")(chats.create_chat)
    app.add_typer(create, name="create")
    app.command("chats")(chats.list_chats)
    members = _group("Add users to a chat or remove them.")
    members.command("add")(chats.add_member)
    members.command("remove")(chats.remove_member)
    app.add_typer(members, name="members")
    delete = _group("Delete a chat.")
    delete.command("chat")(chats.delete_chat)
    app.add_typer(delete, name="delete")

    app.command("send")(messages.send)
    app.command("history")(messages.history)
    app.command("connect")(messages.connect)

    user = _group("Manage accounts: list, show, change, delete.")
    user.command("list")(users.list_users)
    user.command("get")(users.get_user)
    user.command("update")(users.update_user)
    user.command("delete")(users.delete_user)
    app.add_typer(user, name="user")
    return app


def main() -> None:
    """Entry point of the ``meshchat`` script. Whatever happens, the user sees one line,
    never a traceback."""
    # gRPC's C core writes its own log lines (a failed TLS handshake, say) to stderr unless
    # told otherwise before grpc is first imported; the user gets our one line instead.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    from meshchat_cli.errors import CliError

    try:
        create_app()(prog_name="meshchat")
    except CliError as error:
        error.show()
        sys.exit(error.exit_code)
    except BrokenPipeError:
        # The reader of our output went away (`meshchat chats | head -1`): nothing to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except Exception as exc:  # the last resort: a bug must not print a traceback either
        typer.echo(f"error: unexpected {type(exc).__name__}: {exc}; please report it", err=True)
        sys.exit(70)
