"""devtools.ports.free_port: the ports handed to processes that bind them later."""

from __future__ import annotations

import socket
import subprocess
import sys

from devtools.paths import REPO_ROOT
from devtools.ports import LOWEST_CHOSEN_PORT, ephemeral_port_range, free_port


def test_free_ports_are_bindable_and_never_from_the_ephemeral_range() -> None:
    # A port of the kernel's ephemeral range can become the source port of any connection
    # before its process binds it: a mesh failed with "Address already in use" that way.
    low, _ = ephemeral_port_range()
    ports = [free_port() for _ in range(50)]
    assert all(LOWEST_CHOSEN_PORT <= port < low for port in ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[0]))


def test_processes_choosing_at_the_same_moment_never_get_the_same_port() -> None:
    # Two test workers each started a mesh, chose ports at random, and one got a port the
    # other had just been given: the registry hands a port out once (400 random choices
    # below the ephemeral range would repeat one almost surely).
    choose = "from devtools.ports import free_port; print(*(free_port() for _ in range(100)))"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", choose], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT
        )
        for _ in range(4)
    ]
    chosen = [int(p) for process in processes for p in process.communicate(timeout=60)[0].split()]
    assert len(chosen) == 400
    assert len(set(chosen)) == len(chosen)
