"""The ``meshchat-auth`` program as an operator runs it: settings, errors, signals, logs."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from devtools.paths import VENV_BIN
from devtools.processes import ServiceProcess, health_stub
from meshchat.auth.v1 import auth_pb2, auth_pb2_grpc, users_pb2, users_pb2_grpc
from meshchat_auth.config import SETTINGS
from tests.support.passwords import PASSWORD

PROGRAM = str(VENV_BIN / "meshchat-auth")


def run_auth(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run meshchat-auth to completion in ``tmp_path``."""
    return subprocess.run(
        [PROGRAM, *args],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_help_documents_every_setting(tmp_path: Path) -> None:
    result = run_auth(tmp_path, "serve", "--help")
    assert result.returncode == 0
    flat = " ".join(result.stdout.split())
    for setting in SETTINGS:
        assert f"--{setting.name}" in flat, setting.name
        assert setting.env in flat, setting.env


def _occupied_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MESHCHAT_DATABASE_URL": "mysql://x"}, "MESHCHAT_DATABASE_URL: expected sqlite:///path"),
        (
            {"MESHCHAT_DATABASE_URL": "sqlite:///a.db", "MESHCHAT_DATABASE_URL_FILE": "url"},
            "MESHCHAT_DATABASE_URL and MESHCHAT_DATABASE_URL_FILE: give one of them, not both",
        ),
        ({"MESHCHAT_DATABASE_URL_FILE": "no-such-file"}, "MESHCHAT_DATABASE_URL_FILE: cannot read"),
        ({"MESHCHAT_LISTEN": "nonsense"}, "MESHCHAT_LISTEN: expected HOST:PORT"),
        ({"MESHCHAT_LISTEN": "127.0.0.1:99999"}, "MESHCHAT_LISTEN: port must be 0 to 65535"),
        ({"MESHCHAT_ACCESS_TOKEN_TTL": "soon"}, "MESHCHAT_ACCESS_TOKEN_TTL: expected seconds"),
        (
            {"MESHCHAT_KEYS_DIR": "/proc/1/nonexistent", "MESHCHAT_GENERATE_KEY": "false"},
            "MESHCHAT_KEYS_DIR:",
        ),
        (
            {"MESHCHAT_KEYS_DIR": "keys-empty", "MESHCHAT_GENERATE_KEY": "false"},
            "no *.pem signing key",
        ),
        ({"MESHCHAT_KEYS_DIR": "bad-keys"}, "is not an unencrypted PEM private key"),
        ({"MESHCHAT_ARGON2_MEMORY_KIB": "1024"}, "below the OWASP minimum"),
        (
            {"MESHCHAT_ARGON2_TIME_COST": "two"},
            "MESHCHAT_ARGON2_TIME_COST: expected a whole number",
        ),
        ({"MESHCHAT_LOG_LEVEL": "loud"}, "MESHCHAT_LOG_LEVEL: expected one of debug, info"),
        (
            {"MESHCHAT_MAX_CONCURRENT_STREAMS": "0"},
            "MESHCHAT_MAX_CONCURRENT_STREAMS: must be at least 1",
        ),
    ],
)
def test_bad_settings_end_in_one_line_and_exit_2(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    (tmp_path / "keys-empty").mkdir()
    (tmp_path / "bad-keys").mkdir()
    (tmp_path / "bad-keys" / "a.pem").write_text("not a key")
    result = run_auth(tmp_path, "serve", env={"MESHCHAT_METRICS_LISTEN": "off", **env})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("meshchat-auth: error: ")
    assert message in lines[0]


@pytest.mark.parametrize("setting", ["MESHCHAT_LISTEN", "MESHCHAT_METRICS_LISTEN"])
def test_a_port_in_use_is_a_one_line_error(tmp_path: Path, setting: str) -> None:
    with _occupied_port() as sock:
        port = sock.getsockname()[1]
        env = {"MESHCHAT_LISTEN": "127.0.0.1:0", "MESHCHAT_METRICS_LISTEN": "127.0.0.1:0"}
        env[setting] = f"127.0.0.1:{port}"
        result = run_auth(tmp_path, "serve", env=env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"meshchat-auth: error: {setting}: cannot listen")
    )


def test_sigterm_turns_health_not_serving_and_exits_cleanly(tmp_path: Path) -> None:
    service = ServiceProcess("meshchat-auth", {"MESHCHAT_GRACE_PERIOD": "5s"}, tmp_path).start()
    with grpc.insecure_channel(service.address) as channel:
        watch = health_stub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        service.send(signal.SIGTERM)
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert service.stop() == 0
    assert "signal received: stopping" in service.logs()


def test_logs_are_json_lines(tmp_path: Path) -> None:
    service = ServiceProcess("meshchat-auth", {}, tmp_path).start()
    try:
        with grpc.insecure_channel(service.address) as channel:
            users_pb2_grpc.UserServiceStub(channel).CreateUser(
                users_pb2.CreateUserRequest(
                    username="alice", password=PASSWORD, password_confirm=PASSWORD
                ),
                timeout=10,
            )
    finally:
        service.stop()
    records = [json.loads(line) for line in service.logs().splitlines() if line.startswith("{")]
    created = [r for r in records if r["message"] == "user created"]
    assert len(created) == 1
    assert created[0]["service"] == "meshchat-auth"
    assert created[0]["level"] == "INFO"
    # Tracing is off without OTEL_EXPORTER_OTLP_ENDPOINT; test_tracing.py covers it on.
    assert created[0]["trace_id"] == ""


def test_create_admin_makes_an_admin_who_can_log_in(tmp_path: Path) -> None:
    result = run_auth(
        tmp_path,
        "create-admin",
        "--username",
        "root",
        "--password-stdin",
        stdin="s3cret-password\n",
    )
    assert result.returncode == 0, result.stderr
    assert "created admin root" in result.stdout
    again = run_auth(
        tmp_path,
        "create-admin",
        "--username",
        "root",
        "--password-stdin",
        stdin="s3cret-password\n",
    )
    assert again.returncode == 2
    assert "already exists" in again.stderr
    short = run_auth(
        tmp_path, "create-admin", "--username", "other", "--password-stdin", stdin="short\n"
    )
    assert short.returncode == 2
    assert "password: must be at least 8 characters" in short.stderr
    service = ServiceProcess("meshchat-auth", {}, tmp_path).start()
    try:
        with grpc.insecure_channel(service.address) as channel:
            pair = auth_pb2_grpc.AuthServiceStub(channel).Login(
                auth_pb2.LoginRequest(username="root", password="s3cret-password"), timeout=10
            )
    finally:
        service.stop()
    assert pair.user.role == 2


def test_the_database_url_may_come_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "database-url").write_text("sqlite:///from-file.db\n")
    result = run_auth(
        tmp_path,
        "create-admin",
        "--username",
        "root",
        "--password-stdin",
        env={"MESHCHAT_DATABASE_URL_FILE": "database-url"},
        stdin="s3cret-password\n",
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "from-file.db").is_file()
    assert not (tmp_path / ".data" / "auth.db").exists()


def test_the_module_runs_as_python_dash_m(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "meshchat_auth", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert "serve" in result.stdout
    assert "create-admin" in result.stdout
