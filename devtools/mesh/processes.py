"""The mesh's child processes: started in their own sessions, logged to files, waited on."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from devtools.mesh.errors import MeshError

__all__ = ["Child", "start_child", "wait_until"]


@dataclass
class Child:
    """A process of the mesh, with its output in log files."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    stdout_log: Path

    @property
    def alive(self) -> bool:
        """Whether it still runs."""
        return self.process.poll() is None

    def tail(self, lines: int = 30) -> str:
        """The end of its log."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM by PID; SIGKILL when it does not end in time."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)


def start_child(name: str, args: list[str], env: Mapping[str, str], cwd: Path, logs: Path) -> Child:
    """Start a process in its own session (Ctrl-C reaches only ``make mesh``, which stops the
    processes in order); stderr to ``logs/NAME.log``, stdout to ``logs/NAME.stdout.log``."""
    log, stdout_log = logs / f"{name}.log", logs / f"{name}.stdout.log"
    with log.open("ab") as err, stdout_log.open("ab") as out:
        process = subprocess.Popen(
            args, env=dict(env), cwd=cwd, stdout=out, stderr=err, start_new_session=True
        )
    return Child(name, process, log, stdout_log)


def wait_until(
    condition: Callable[[], bool],
    what: str,
    deadline: float,
    children: Mapping[str, Child] | None = None,
) -> None:
    """Return once ``condition()`` holds; MeshError after ``deadline`` seconds, or at once when
    one of ``children`` has exited."""
    end = time.monotonic() + deadline
    while not condition():
        for child in (children or {}).values():
            if not child.alive:
                raise MeshError(
                    f"{child.name} exited ({child.process.returncode}) while waiting for {what}:"
                    f"\n{child.tail()}"
                )
        if time.monotonic() > end:
            raise MeshError(f"timed out after {deadline} s waiting for {what}")
        time.sleep(0.1)  # the polling interval of a condition with a deadline
