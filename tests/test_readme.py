"""The README's command walk-throughs work as written (only the ports are changed)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.processes import ServiceProcess, free_port

ROOT = Path(__file__).resolve().parent.parent


def readme_block(heading: str) -> str:
    """The first ```sh block under ``heading`` in README.md."""
    text = (ROOT / "README.md").read_text()
    section = text.split(f"\n{heading}\n", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, f"no sh block under {heading}"
    return match.group(1)


def run_script(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("heading", ["## Try the auth service with grpcurl"])
def test_auth_walkthrough(tmp_path: Path, heading: str) -> None:
    metrics = free_port()
    auth = ServiceProcess(
        "meshchat-auth", {"MESHCHAT_METRICS_LISTEN": f"127.0.0.1:{metrics}"}, tmp_path
    )
    auth.start()
    try:
        script = readme_block(heading).replace("127.0.0.1:50051", auth.address)
        script = script.replace("127.0.0.1:9101", f"127.0.0.1:{metrics}")
        result = run_script(script, tmp_path)
    finally:
        auth.stop()
    assert result.returncode == 0, result.stderr + result.stdout
    out = result.stdout
    assert "meshchat.auth.v1.UserService" in out
    assert '"status": "SERVING"' in out
    assert '"access_token": "ey' in out
    assert '"username": "ada"' in out
    assert '"role": "ROLE_USER"' in out
    assert '"kty": "EC"' in out
    assert 'grpc_server_handled_total{grpc_code="OK",grpc_method="Login"' in out


def test_create_admin_command(tmp_path: Path) -> None:
    section = (ROOT / "README.md").read_text().split("\n### The first admin\n", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match
    result = run_script(match.group(1), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "created admin root" in result.stdout
