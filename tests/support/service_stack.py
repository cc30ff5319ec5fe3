"""A real auth and chat service as subprocesses on loopback ports, as the CLI meets them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from devtools.processes import ServiceProcess

__all__ = ["Stack", "start_stack"]


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
