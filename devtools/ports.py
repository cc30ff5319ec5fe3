"""Free TCP ports for processes that bind them later (servers, Envoys, PostgreSQL).

A port is free when :func:`free_port` looks, but the process that is given it binds it only
seconds later, and two things can take it in between:

- any outgoing connection, which gets its source port from the kernel's ephemeral range (what
  binding port 0 hands out): so ports are chosen below that range;
- another test worker (or script) choosing the same port at the same time: so every choice is
  written to a registry shared by the processes of this machine, under a file lock, and a port
  handed out in the last ``REMEMBERED_SECONDS`` is not handed out again.
"""

from __future__ import annotations

import fcntl
import secrets
import socket
import tempfile
import time
from pathlib import Path
from typing import IO

__all__ = ["LOWEST_CHOSEN_PORT", "REMEMBERED_SECONDS", "ephemeral_port_range", "free_port"]

# Ports are chosen from here up to the ephemeral range: above the well-known ports and the
# common ones of databases and dev servers.
LOWEST_CHOSEN_PORT = 10_000
REMEMBERED_SECONDS = 600.0
EPHEMERAL_PORTS = Path("/proc/sys/net/ipv4/ip_local_port_range")
REGISTRY = Path(tempfile.gettempdir()) / "meshchat-ports-handed-out"


def ephemeral_port_range() -> tuple[int, int]:
    """The ports the kernel gives out for port 0 and as the source port of connections."""
    try:
        low, high = EPHEMERAL_PORTS.read_text().split()
    except (OSError, ValueError):
        return 32768, 60999
    return int(low), int(high)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing holds now and nobody was given recently."""
    low, _ = ephemeral_port_range()
    span = low - LOWEST_CHOSEN_PORT
    if span < 1000:  # a kernel configured to give out nearly every port: nowhere else to go
        return _kernel_port()
    with REGISTRY.open("a+") as registry:
        fcntl.flock(registry, fcntl.LOCK_EX)
        now = time.time()
        given = _recent(registry, now)
        for _ in range(200):
            port = LOWEST_CHOSEN_PORT + secrets.randbelow(span)
            if port not in given and _bindable(port):
                given[port] = now
                registry.seek(0)
                registry.truncate()
                registry.writelines(f"{p} {t}\n" for p, t in given.items())
                return port
    return _kernel_port()


def _recent(registry: IO[str], now: float) -> dict[int, float]:
    """The ports of the registry handed out within REMEMBERED_SECONDS (a line it cannot
    read is dropped)."""
    registry.seek(0)
    given: dict[int, float] = {}
    for line in registry.read().splitlines():
        try:
            port, when = int(line.split()[0]), float(line.split()[1])
        except (IndexError, ValueError):
            continue
        if now - when < REMEMBERED_SECONDS:
            given[port] = when
    return given


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _kernel_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
