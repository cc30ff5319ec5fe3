"""``meshchat-chat``: run the chat service."""

from __future__ import annotations

import click
from opentelemetry.sdk.trace import TracerProvider

from meshchat_chat.config import SETTINGS, ChatConfig, config_from
from meshchat_runtime.cli import ServiceApp, setting_options
from meshchat_runtime.cli import serve as serve_service
from meshchat_runtime.settings import parse_settings

PROGRAM = "meshchat-chat"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """The meshchat chat service: chats, members, messages and live streams."""


@cli.command()
@setting_options(SETTINGS)
def serve(**texts: str | bool | None) -> None:
    """Serve the chat API until SIGTERM or Ctrl-C."""

    serve_service(PROGRAM, lambda: config_from(parse_settings(SETTINGS, texts)), _build)


async def _build(config: ChatConfig, tracer_provider: TracerProvider | None) -> ServiceApp:
    from meshchat_chat.bootstrap import build_server

    return await build_server(config, tracer_provider=tracer_provider)


def main() -> None:
    """Entry point of ``meshchat-chat``."""
    cli(prog_name=PROGRAM)


if __name__ == "__main__":
    main()
