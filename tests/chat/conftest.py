"""Fixtures of the chat tests: a chat service on each storage backend (trusting the SQLite auth
service of the root conftest), and people who sign up, log in and call the chat API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.people import People
from tests.support.stack import RunningAuth, RunningChat, start_chat


@pytest.fixture
def chat_options() -> dict[str, Any]:
    """ChatConfig fields for the ``chat`` fixture; override with
    ``@pytest.mark.parametrize("chat_options", [{...}])``."""
    return {}


@pytest.fixture
async def chat(
    tmp_path: Path, auth: RunningAuth, database_url: str, chat_options: dict[str, Any]
) -> AsyncIterator[RunningChat]:
    """A chat service, once per storage backend."""
    running = await start_chat(tmp_path / "chat", auth, database_url, **chat_options)
    yield running
    await running.stop()


@pytest.fixture
async def people(auth: RunningAuth, chat: RunningChat) -> AsyncIterator[People]:
    """Make people who use ``chat``."""
    async with auth.channel() as auth_channel, chat.channel() as chat_channel:
        yield People(auth, auth_channel, chat_channel)
