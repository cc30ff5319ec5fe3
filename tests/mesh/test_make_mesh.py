"""`make mesh` itself (python -m scripts.mesh) in a terminal: it prints how to reach the edge,
and Ctrl-C (or SIGTERM) stops every process and removes its files."""

from __future__ import annotations

import re
import signal
import socket
import sys
from pathlib import Path

import pexpect
import pytest

from devtools.mesh import http_get
from devtools.paths import REPO_ROOT

pytestmark = pytest.mark.mesh


def refuses(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:PORT any more."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_stops_everything_and_cleans_up(stop: str) -> None:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "scripts.mesh"],
        cwd=str(REPO_ROOT),
        encoding="utf-8",
        timeout=90,
    )
    try:
        child.expect("Ctrl-C stops everything.")
        printed = str(child.before)
        ports = {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", printed)}
        ports |= {int(p) for p in re.findall(r" :(\d+)/", printed)}
        ca_file = Path(re.findall(r"MESHCHAT_CA_FILE=(\S+)", printed)[0])
        health = [int(p) for p in re.findall(r"health :(\d+)/healthz", printed)]
        assert len(health) == 2
        assert all(http_get(port, "/healthz")[0] == 200 for port in health)
        assert ca_file.is_file()

        if stop == "ctrl-c":
            child.sendintr()
        else:
            child.kill(signal.SIGTERM)
        child.expect(pexpect.EOF, timeout=60)
    finally:
        if child.isalive():
            child.terminate(force=True)
        child.close()
    assert child.exitstatus == 0, child.before
    assert "Stopped." in str(child.before)
    # Every process is gone (nothing listens on any port it printed) and its files with it.
    assert len(ports) >= 9
    assert [port for port in ports if not refuses(port)] == []
    assert not ca_file.parent.parent.parent.exists()
