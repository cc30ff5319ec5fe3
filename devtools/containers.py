"""The container engine that builds and runs meshchat's images, and the one place that holds the
flags it needs on a machine like the project's CI host.

The engine is docker where its daemon answers, else podman (``MESHCHAT_CONTAINER_ENGINE=docker``
or ``podman`` chooses). Podman is called with ``--runtime runc --cgroup-manager cgroupfs`` (crun
refuses hybrid cgroup hierarchies, and there is no systemd to manage cgroups) and, for ``build``,
``run`` and ``create``, with explicit ulimits under this process's hard limits (podman's defaults
exceed what the machine allows, and the runtime then refuses to start the container).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["ENGINE_ENV", "Engine", "EngineMissing", "find_engine", "podman_ulimits"]

ENGINE_ENV = "MESHCHAT_CONTAINER_ENGINE"
PODMAN_FLAGS = ("--runtime", "runc", "--cgroup-manager", "cgroupfs")
# Each limit podman is given: the resource, and the most asked for. Podman's own defaults
# (1048576 files, 4194304 processes) are refused here, as is the processes' hard limit itself.
PODMAN_ULIMITS = {
    "nofile": (resource.RLIMIT_NOFILE, 65_536),
    "nproc": (resource.RLIMIT_NPROC, 4_096),
}
_CONTAINER_SUBCOMMANDS = frozenset({"build", "run", "create"})


class EngineMissing(RuntimeError):
    """Neither docker (with a running daemon) nor podman can be used."""


def podman_ulimits() -> list[tuple[str, int, int]]:
    """Each limit podman's containers get here: its name, soft and hard value (equal)."""
    limits = []
    for name, (limit, most) in PODMAN_ULIMITS.items():
        hard = resource.getrlimit(limit)[1]
        value = most if hard == resource.RLIM_INFINITY else min(hard, most)
        limits.append((name, value, value))
    return limits


def _ulimit_flags() -> tuple[str, ...]:
    flags: list[str] = []
    for name, soft, hard in podman_ulimits():
        flags += ["--ulimit", f"{name}={soft}:{hard}"]
    return tuple(flags)


@dataclass(frozen=True)
class Engine:
    """A container engine: its executable and the flags every call needs."""

    name: str
    global_flags: tuple[str, ...] = ()
    container_flags: tuple[str, ...] = ()
    read_only_flags: tuple[str, ...] = ("--read-only",)
    environment: Mapping[str, str] = field(default_factory=dict)

    def command(self, subcommand: str, *args: str) -> list[str]:
        """The command line of ``<engine> <subcommand> args``, with the flags it needs here."""
        flags = self.container_flags if subcommand in _CONTAINER_SUBCOMMANDS else ()
        return [self.name, *self.global_flags, subcommand, *flags, *args]

    def run(
        self,
        subcommand: str,
        *args: str,
        check: bool = True,
        capture: bool = True,
        timeout: float | None = 600,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``<engine> <subcommand> args``; raise on failure when ``check``, with its stderr."""
        result = subprocess.run(
            self.command(subcommand, *args),
            capture_output=capture,
            env={**os.environ, **self.environment},
            text=True,
            check=False,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            detail = (result.stderr or "").strip()
            raise subprocess.CalledProcessError(
                result.returncode, result.args, result.stdout, f"{subcommand} failed: {detail}"
            )
        return result

    def image_exists(self, image: str) -> bool:
        """Whether the image is in the engine's local storage."""
        return self.run("image", "inspect", image, check=False).returncode == 0

    def pull(self, image: str) -> str | None:
        """Pull an image: None when that worked, else why not."""
        result = self.run("pull", image, check=False)
        if result.returncode == 0:
            return None
        lines = (result.stderr or "").strip().splitlines()
        return lines[-1] if lines else f"exit status {result.returncode}"


def docker() -> Engine:
    """docker, with BuildKit (the Dockerfiles mount the CA bundle as a build secret)."""
    return Engine("docker", environment={"DOCKER_BUILDKIT": "1"})


def podman() -> Engine:
    """podman with the runtime, cgroup manager and ulimits it needs here; ``--read-only`` without
    podman's extra tmpfs on /tmp, /run and /var/tmp (Kubernetes mounts none)."""
    return Engine(
        "podman",
        global_flags=PODMAN_FLAGS,
        container_flags=_ulimit_flags(),
        read_only_flags=("--read-only", "--read-only-tmpfs=false"),
    )


_ENGINES = {"docker": docker, "podman": podman}


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        info = subprocess.run(
            ["docker", "info"], capture_output=True, text=True, check=False, timeout=20
        )
    except subprocess.TimeoutExpired:
        return False
    return info.returncode == 0


def find_engine(environ: Mapping[str, str] = os.environ) -> Engine:
    """The engine named by MESHCHAT_CONTAINER_ENGINE, else docker if its daemon answers, else
    podman if installed."""
    chosen = environ.get(ENGINE_ENV, "")
    if chosen:
        if chosen not in _ENGINES:
            raise EngineMissing(f"{ENGINE_ENV}={chosen!r}: expected one of {sorted(_ENGINES)}")
        if shutil.which(chosen) is None:
            raise EngineMissing(f"{ENGINE_ENV}={chosen} but {chosen} is not on the PATH")
        return _ENGINES[chosen]()
    if _docker_answers():
        return docker()
    if shutil.which("podman") is not None:
        return podman()
    raise EngineMissing(
        "no container engine: neither a docker daemon that answers nor podman "
        "(Debian: apt-get install podman buildah runc)"
    )
