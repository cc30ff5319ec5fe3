"""Run meshchat services as real subprocesses and wait for them with deadlines."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devtools.paths import VENV_BIN
from devtools.ports import free_port

__all__ = [
    "ServiceNotHealthy",
    "ServiceProcess",
    "free_port",
    "health_status",
    "health_stub",
    "wait_for_health",
]


class ServiceNotHealthy(RuntimeError):
    """A service did not report the awaited health status in time, or exited first."""


def health_stub(channel: grpc.Channel | grpc.aio.Channel) -> Any:
    """A Health stub; typeshed's stub class declares no methods, hence Any."""
    return health_pb2_grpc.HealthStub(channel)


def health_status(address: str, service: str = "", timeout: float = 1.0) -> int | None:
    """The health status of ``service`` at ``address``, or None when it does not answer."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_stub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError:
            return None
        return int(reply.status)


def wait_for_health(
    address: str,
    status: int = health_pb2.HealthCheckResponse.SERVING,
    deadline: float = 20.0,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Return once ``address`` reports ``status``; fail after ``deadline`` seconds or when the
    process exits first."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process is not None and process.poll() is not None:
            raise ServiceNotHealthy(
                f"process exited with {process.returncode} before {address} was healthy"
            )
        if health_status(address, timeout=0.5) == status:
            return
        time.sleep(0.05)  # polling interval of a condition with a deadline, not a synchronisation
    raise ServiceNotHealthy(f"{address} did not report status {status} within {deadline} s")


@dataclass
class ServiceProcess:
    """``meshchat-auth serve`` or ``meshchat-chat serve`` as a subprocess."""

    program: str
    env: Mapping[str, str]
    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """Its gRPC address."""
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """Where its stderr goes."""
        return self.workdir / f"{self.program}-{self.port}.log"

    def start(self, wait: bool = True) -> ServiceProcess:
        """Start it (and wait for SERVING unless told not to)."""
        env = {
            **os.environ,
            "MESHCHAT_LISTEN": self.address,
            "MESHCHAT_METRICS_LISTEN": "off",
            "MESHCHAT_GRACE_PERIOD": "2s",
            **self.env,
        }
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(VENV_BIN / self.program), "serve"],
                env=env,
                cwd=self.workdir,
                stdout=log,
                stderr=log,
            )
        if wait:
            wait_for_health(self.address, process=self.process)
        return self

    def send(self, sig: signal.Signals) -> None:
        """Send a signal."""
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Stop it and return its exit status (killing it if it does not stop in time)."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def logs(self) -> str:
        """Everything it wrote to stderr and stdout."""
        return self.log_path.read_text() if self.log_path.exists() else ""
