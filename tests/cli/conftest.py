"""Fixtures of the CLI tests: a real auth and chat service as subprocesses, and the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import Cli
from tests.support.service_stack import Stack, start_stack


@pytest.fixture(scope="session")
def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack for the tests that do not stop servers; they use names of their own."""
    stack = start_stack(tmp_path_factory.mktemp("cli-stack"))
    yield stack
    stack.stop()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """A stack of the test's own, for tests that stop and restart the servers."""
    started = start_stack(tmp_path / "stack")
    yield started
    started.stop()


@pytest.fixture
def cli(shared_stack: Stack, tmp_path: Path) -> Cli:
    """The CLI against the shared stack, with an empty config directory."""
    return Cli(shared_stack.auth.address, shared_stack.chat.address, tmp_path / "config")
