"""devtools.processes.free_port: the ports handed to processes that bind them later."""

from __future__ import annotations

import socket

from devtools.processes import LOWEST_CHOSEN_PORT, ephemeral_port_range, free_port


def test_free_ports_are_bindable_and_never_from_theephemeral_port_range() -> None:
    # A port of the kernel's ephemeral range can become the source port of any connection
    # before its process binds it: a mesh failed with "Address already in use" that way.
    low, _ = ephemeral_port_range()
    ports = [free_port() for _ in range(200)]
    assert all(LOWEST_CHOSEN_PORT <= port < low for port in ports)
    assert len(set(ports)) > 150
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[0]))
