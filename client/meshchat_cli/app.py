"""``meshchat``: the command-line client of the meshchat services."""

from __future__ import annotations

import os
import sys

import typer

# Typer carries its own copy of click; these are its classes, which typer does not re-export.
from typer._click import ClickException, Command, Context
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.core import TyperArgument, TyperGroup, TyperOption

__all__ = ["create_app", "create_command", "main"]

_HELP_OPTION_NAMES = ["-h", "--help"]


def _group(help_text: str) -> typer.Typer:
    return typer.Typer(help=help_text, no_args_is_help=True, rich_markup_mode="markdown")


def create_app() -> typer.Typer:
    """The command tree; built per invocation, so nothing lives at module level."""
    from meshchat_cli.commands import accounts, changes, chats, messages, profiles, users
    from meshchat_cli.options import HELP, global_options

    app = typer.Typer(
        name="meshchat",
        help=HELP,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode="markdown",
        context_settings={"help_option_names": _HELP_OPTION_NAMES},
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
    app.command("edit")(changes.edit)
    app.command("delete-message")(changes.delete_message)
    app.command("read")(changes.read)

    user = _group("Manage accounts: list, show, change, delete, log out everywhere.")
    user.command("list")(users.list_users)
    user.command("get")(users.get_user)
    user.command("update")(users.update_user)
    user.command("delete")(users.delete_user)
    user.command("logout")(users.logout_user)
    app.add_typer(user, name="user")
    return app


class _Argument(TyperArgument):
    """An argument shown by its name alone: ``USERNAME``, ``[MESSAGE]`` when optional."""

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name if self.nargs == 1 else f"{name}..."

    def display_type_rich(self, ctx: Context) -> str | None:
        return None


class _Option(TyperOption):
    """An option whose value is shown by its metavar; a flag shows none."""

    def display_type_rich(self, ctx: Context) -> str | None:
        return None if self.is_flag else super().display_type_rich(ctx)


def _name_values_plainly(command: Command) -> None:
    """Typer shows an argument as ``{USERNAME} <str>`` and a flag as ``--json <bool>``; the
    help of meshchat names values the way its README does."""
    # The help option is made on first use; made now, it is among the params to change.
    help_option = command.get_help_option(Context(command, help_option_names=_HELP_OPTION_NAMES))
    for param in [*command.params, help_option]:
        if isinstance(param, TyperArgument):
            param.__class__ = _Argument
        elif isinstance(param, TyperOption):
            param.__class__ = _Option
    if isinstance(command, TyperGroup):
        for subcommand in command.commands.values():
            _name_values_plainly(subcommand)


def create_command() -> Command:
    """The command tree as click runs it."""
    command = typer.main.get_command(create_app())
    _name_values_plainly(command)
    return command


def _usage_error(error: UsageError) -> int:
    """One line, like every other error, with where to read the usage."""
    from meshchat_cli.errors import CliError, ExitCode

    where = error.ctx.command_path if error.ctx else "meshchat"
    message = error.format_message().rstrip(".")
    CliError(f"{message}; `{where} --help` shows the usage", ExitCode.USAGE).show()
    return ExitCode.USAGE


def _run() -> int:
    """Run the command line; its exit status."""
    from meshchat_cli.errors import CliError, ExitCode

    try:
        status = create_command().main(prog_name="meshchat", standalone_mode=False)
    except CliError as error:
        error.show()
        return error.exit_code
    except NoArgsIsHelpError as error:
        error.show()
        return ExitCode.USAGE
    except UsageError as error:
        return _usage_error(error)
    except ClickException as error:
        CliError(error.format_message()).show()
        return error.exit_code
    except typer.Abort:
        # Ctrl-C or the end of input at a prompt.
        typer.echo("", err=True)
        return 130
    return status if isinstance(status, int) else 0


def main() -> None:
    """Entry point of the ``meshchat`` script. Whatever happens, the user sees one line,
    never a traceback."""
    # gRPC's C core writes its own log lines (a failed TLS handshake, say) to stderr unless
    # told otherwise before grpc is first imported; the user gets our one line instead.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    try:
        sys.exit(_run())
    except BrokenPipeError:
        # The reader of our output went away (`meshchat chats | head -1`): nothing to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except Exception as exc:  # the last resort: a bug must not print a traceback either
        typer.echo(f"error: unexpected {type(exc).__name__}: {exc}; please report it", err=True)
        sys.exit(70)
