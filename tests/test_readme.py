"""The commands of README.md and docs/ work as written (only the ports are changed), every shell
block of those pages is run by a test or says why not, and every local link resolves."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.processes import ServiceProcess, free_port
from tests.support.docs import DOCS, PAGES, ROOT, broken_links, code_blocks, section

README = ROOT / "README.md"
AUTH_PAGE = DOCS / "auth-service.md"

# Every ```sh block, by page and heading: the test that runs it as written, or why none does.
RUN_BY = {
    ("README.md", "Install"): "test_install_block",
    ("README.md", "Walk-through: two users, three terminals"): "tests/cli/test_walkthrough.py",
    ("docs/auth-service.md", "Try the auth service with grpcurl"): "test_auth_walkthrough",
    ("docs/auth-service.md", "The first admin"): "test_create_admin_command",
    ("docs/chat-service.md", "Try it with grpcurl"): "tests/chat/test_walkthrough.py",
}
NOT_RUN = {
    (
        "README.md",
        "Set up",
    ): "`make test` is this suite; `make run` starts what the walk-throughs start",
    ("docs/kubernetes.md", "From nothing to a chat on kind"): "needs docker and a kind cluster",
    (
        "docs/mesh.md",
        "The mesh in a box: `make mesh`",
    ): "tests/mesh/test_make_mesh.py runs its command",
    (
        "helm/meshchat/README.md",
        "meshchat Helm chart",
    ): "needs a cluster; tests/deploy renders the chart",
}


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


def test_every_shell_block_is_run_or_says_why_not() -> None:
    found = {
        (str(page.relative_to(ROOT)), block.heading)
        for page in PAGES
        for block in code_blocks(page)
    }
    assert found == RUN_BY.keys() | NOT_RUN.keys()


def test_auth_walkthrough(tmp_path: Path) -> None:
    metrics = free_port()
    auth = ServiceProcess(
        "meshchat-auth", {"MESHCHAT_METRICS_LISTEN": f"127.0.0.1:{metrics}"}, tmp_path
    )
    auth.start()
    try:
        (block,) = section(AUTH_PAGE, "Try the auth service with grpcurl")
        script = block.replace("127.0.0.1:50051", auth.address)
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
    (block,) = section(AUTH_PAGE, "The first admin")
    result = run_script(block, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "created admin root" in result.stdout


def test_install_block(tmp_path: Path) -> None:
    (block,) = section(README, "Install")
    result = run_script(block, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Usage: meshchat" in result.stdout


def test_bad_setting_example_prints_what_the_page_shows(tmp_path: Path) -> None:
    (block,) = section(DOCS / "configuration.md", "Settings", language="")
    command, *expected = block.splitlines()
    assert command.startswith("$ ")
    result = run_script(command[2:], tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == expected


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_local_link_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_link_check_finds_broken_links(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading: here\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n"
        "[ok](other.md) [ok](other.md#a-code-heading-here) [ok](#page) [web](https://example.org)\n"
        "`[not a link](missing.md)`\n"
        "```sh\n[not a link](missing.md)\n```\n"
        "[gone](missing.md) [no heading](other.md#nowhere) [not markdown](.#x) [here](#nope)\n"
        "[across\nlines](#nowhere)\n"
    )
    assert broken_links(page) == [
        "page.md:8: missing.md: no such file",
        "page.md:8: other.md#nowhere: no such heading",
        "page.md:8: .#x: no such heading",
        "page.md:8: #nope: no such heading",
        "page.md:10: #nowhere: no such heading",
    ]
