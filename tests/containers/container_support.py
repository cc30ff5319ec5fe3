"""Run a container of a rendered pod with podman or docker as the chart declares it, with the flags
of devtools.podspec (the security context, the environment and the volumes of the pod spec)."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devtools.containers import Engine
from devtools.podspec import (
    Doc,
    Unsupported,
    environment,
    pod_container,
    security_context,
    security_flags,
    volume_flags,
)

__all__ = [
    "Container",
    "Doc",
    "RunSpec",
    "Unsupported",
    "environment",
    "pod_container",
    "security_context",
    "security_flags",
    "volume_flags",
]


@dataclass(frozen=True)
class RunSpec:
    """What ``Container.start`` runs: an image with flags and arguments."""

    name: str
    image: str
    flags: tuple[str, ...]
    args: tuple[str, ...]


@dataclass(frozen=True)
class Container:
    """A started container."""

    engine: Engine
    name: str

    @classmethod
    def start(cls, engine: Engine, spec: RunSpec) -> Container:
        """Start ``spec`` detached."""
        engine.run("run", "--detach", "--name", spec.name, *spec.flags, spec.image, *spec.args)
        return cls(engine, spec.name)

    def published(self, port: int) -> str:
        """HOST:PORT where the container's ``port`` is published."""
        lines = self.engine.run("port", self.name, f"{port}/tcp").stdout.split()
        return lines[0].replace("0.0.0.0:", "127.0.0.1:")

    def ip_address(self) -> str:
        """The container's address on its network."""
        result = self.engine.run("inspect", "--format", "{{.NetworkSettings.IPAddress}}", self.name)
        return result.stdout.strip()

    def running(self) -> bool:
        """Whether it still runs."""
        result = self.engine.run(
            "inspect", "--format", "{{.State.Running}}", self.name, check=False
        )
        return result.stdout.strip() == "true"

    def logs(self) -> str:
        """What it wrote to stdout and stderr."""
        result = self.engine.run("logs", self.name, check=False)
        return result.stdout + result.stderr

    def exec(self, *command: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command in it, under its security context, as its user or ``user``."""
        as_user = ("--user", user) if user is not None else ()
        return self.engine.run("exec", *as_user, self.name, *command, check=False)

    def remove(self) -> None:
        """Stop it (SIGTERM, SIGKILL after 2 s) and remove it."""
        self.engine.run("stop", "--time", "2", self.name, check=False)
        self.engine.run("rm", "--force", self.name, check=False)

    def wait_serving(self, address: str, deadline: float = 60.0) -> None:
        """Return once ``address`` reports SERVING; fail when the container stops first."""
        end = time.monotonic() + deadline
        serving = health_pb2.HealthCheckResponse.SERVING
        with grpc.insecure_channel(address) as channel:
            stub: Any = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < end:
                if not self.running():
                    raise AssertionError(f"{self.name} stopped:\n{self.logs()}")
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == serving:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.1)  # polling interval of a condition with a deadline
        raise AssertionError(f"{self.name} was not SERVING within {deadline} s:\n{self.logs()}")
