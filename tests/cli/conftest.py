"""A real auth and chat service, as subprocesses on loopback ports, for the CLI's tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools.processes import ServiceProcess
from tests.support.cli import Cli


@dataclass
class Stack:
    """``meshchat-auth serve`` and ``meshchat-chat serve`` sharing one work directory."""

    auth: ServiceProcess
    chat: ServiceProcess
    workdir: Path

    @property
    def keys_dir(self) -> Path:
        """The auth service's signing keys."""
        return self.workdir / ".data" / "auth-keys"

    def stop(self) -> None:
        """Stop both."""
        self.chat.stop()
        self.auth.stop()


def start_stack(workdir: Path) -> Stack:
    """Start auth, then chat (which fetches auth's keys), on the embedded SQLite default."""
    auth = ServiceProcess("meshchat-auth", {}, workdir).start()
    try:
        chat = ServiceProcess("meshchat-chat", {"MESHCHAT_AUTH_ADDR": auth.address}, workdir)
        chat.start()
    except BaseException:
        auth.stop()
        raise
    return Stack(auth, chat, workdir)


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
