"""Both service images run as containers exactly as the chart runs them: the security context,
environment and volumes read from the rendered chart (only the listen addresses, the database and
chat's way to auth differ: no sidecars and no PostgreSQL here). Each container answers health
SERVING, lists its services by reflection, serves /metrics and, together, they sign a user up,
log in and create a chat."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from devtools.containers import Engine
from devtools.images import SERVICES, Images
from devtools.tools import find_grpcurl
from meshchat.auth.v1 import auth_pb2, auth_pb2_grpc, users_pb2, users_pb2_grpc
from meshchat.chat.v1 import chat_pb2, chat_pb2_grpc
from tests.containers.container_support import (
    Container,
    Doc,
    RunSpec,
    environment,
    pod_container,
    security_context,
    security_flags,
    volume_flags,
)
from tests.deploy.deploy_support import require, run
from tests.support.passwords import PASSWORD

pytestmark = pytest.mark.containers

OTHER = {"auth": "chat", "chat": "auth"}


@dataclass(frozen=True)
class Running:
    """A service's container, the pod spec it was started from, and its published addresses."""

    container: Container
    pod_spec: Doc
    spec: Doc
    grpc_address: str
    metrics_address: str
    port: int


def _port(host_port: str) -> int:
    return int(host_port.rsplit(":", 1)[1])


def start(
    engine: Engine,
    rendering: list[Doc],
    service: str,
    workdir: Path,
    overrides: dict[str, str],
) -> Running:
    """Start the app container of the service's Deployment as the rendering declares it."""
    pod_spec, spec = pod_container(rendering, f"meshchat-{service}", service)
    env = environment(rendering, spec, overrides)
    port, metrics = _port(env["MESHCHAT_LISTEN"]), _port(env["MESHCHAT_METRICS_LISTEN"])
    # Reachable from the host without the sidecar; SQLite on the /tmp emptyDir.
    del env["MESHCHAT_DATABASE_URL_FILE"]  # the mounted Secret's URL names the cluster's database
    env |= {
        "MESHCHAT_LISTEN": f"0.0.0.0:{port}",
        "MESHCHAT_METRICS_LISTEN": f"0.0.0.0:{metrics}",
        "MESHCHAT_DATABASE_URL": f"sqlite:////tmp/{service}.db",
    }
    flags = [
        *security_flags(engine, pod_spec, spec),
        *volume_flags(rendering, pod_spec, spec, workdir / service),
        *(f"--env={key}={value}" for key, value in env.items()),
        f"--publish=127.0.0.1::{port}",
        f"--publish=127.0.0.1::{metrics}",
    ]
    name = f"meshchat-test-{service}-{os.getpid()}"
    container = Container.start(
        engine, RunSpec(name, spec["image"], tuple(flags), tuple(spec["args"]))
    )
    try:
        address = container.published(port)
        container.wait_serving(address)
    except BaseException:
        container.remove()
        raise
    return Running(container, pod_spec, spec, address, container.published(metrics), port)


@pytest.fixture(scope="module")
def stack(
    engine: Engine,
    images: Images,
    rendering: list[Doc],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Running]]:
    """auth, then chat pointed at auth's container, each under the chart's security context."""
    for service, image in images.services.items():
        (_, spec) = pod_container(rendering, f"meshchat-{service}", service)
        assert spec["image"] == image, "the chart's default image is not the one make images tags"
    workdir = tmp_path_factory.mktemp("containers")
    auth = start(engine, rendering, "auth", workdir, {})
    try:
        auth_addr = f"{auth.container.ip_address()}:{auth.port}"
        chat = start(engine, rendering, "chat", workdir, {"MESHCHAT_AUTH_ADDR": auth_addr})
        try:
            yield {"auth": auth, "chat": chat}
        finally:
            chat.container.remove()
    finally:
        auth.container.remove()


def _proc(container: Container, name: str) -> str:
    result = container.exec("cat", f"/proc/1/{name}")
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("service", SERVICES)
def test_the_container_runs_under_the_charts_security_context(
    stack: dict[str, Running], service: str
) -> None:
    running = stack[service]
    context = security_context(running.pod_spec, running.spec)
    status = dict(line.split(":", 1) for line in _proc(running.container, "status").splitlines())
    assert status["Uid"].split() == [str(context["runAsUser"])] * 4
    assert status["Gid"].split() == [str(context["runAsGroup"])] * 4
    assert str(running.pod_spec["securityContext"]["fsGroup"]) in status["Groups"].split()
    assert context["capabilities"]["drop"] == ["ALL"]
    for capabilities in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[capabilities], 16) == 0, capabilities
    assert context["allowPrivilegeEscalation"] is False
    assert status["NoNewPrivs"].strip() == "1"
    assert context["seccompProfile"]["type"] == "RuntimeDefault"
    assert status["Seccomp"].strip() == "2"  # a filter: the engine's default profile
    mounts = {
        line.split()[1]: line.split() for line in _proc(running.container, "mounts").splitlines()
    }
    assert context["readOnlyRootFilesystem"] is True
    assert "ro" in mounts["/"][3].split(",")
    writable = {m["mountPath"] for m in running.spec["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/tmp"}
    assert mounts["/tmp"][2] == "tmpfs"
    assert "rw" in mounts["/tmp"][3].split(",")
    assert running.container.exec("touch", "/opt/meshchat/written").returncode != 0


_CONTENT = """
import importlib.util, json, os
names = ("meshchat", "meshchat_runtime", "meshchat_auth", "meshchat_chat", "meshchat_cli", "pip")
print(json.dumps({
    "app": sorted(os.listdir("/opt/meshchat/app")),
    "importable": [n for n in names if importlib.util.find_spec(n) is not None],
    "bin": sorted(os.listdir("/opt/meshchat/bin")),
}))
"""


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_holds_only_its_service(
    stack: dict[str, Running], engine: Engine, images: Images, service: str
) -> None:
    result = stack[service].container.exec("python", "-c", _CONTENT)
    assert result.returncode == 0, result.stderr
    content = json.loads(result.stdout)
    assert content["app"] == sorted(["meshchat", "meshchat_runtime", f"meshchat_{service}"])
    assert content["importable"] == ["meshchat", "meshchat_runtime", f"meshchat_{service}"]
    assert not {"meshchat", "pip", "meshchat-auth", "meshchat-chat"} & set(content["bin"])
    # Nowhere in the image either (the build stage's sources stay behind); as root, which may
    # read every folder of the image.
    left_out = ("-name", f"meshchat_{OTHER[service]}", "-o", "-name", "meshchat_cli")
    found = stack[service].container.exec(
        "find", "/", "-xdev", "(", *left_out, ")", "-print", user="0"
    )
    assert (found.returncode, found.stdout) == (0, "")
    inspected = engine.run(
        "image", "inspect", "--format", "{{json .Config.Labels}}", images.services[service]
    )
    labels = json.loads(inspected.stdout)
    assert labels["org.opencontainers.image.title"] == f"meshchat-{service}"
    assert labels["org.opencontainers.image.base.name"] == images.base.image
    if images.base.stand_in:
        assert labels["io.meshchat.stand-in"].startswith("not the official Python image")


def _grpcurl(*args: str) -> str:
    result = run([require(find_grpcurl), "-plaintext", *args])
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("service", SERVICES)
def test_health_is_serving(stack: dict[str, Running], service: str) -> None:
    reply = json.loads(_grpcurl(stack[service].grpc_address, "grpc.health.v1.Health/Check"))
    assert reply == {"status": "SERVING"}


EXPECTED_SERVICES = {
    "auth": {"meshchat.auth.v1.AuthService", "meshchat.auth.v1.UserService"},
    "chat": {"meshchat.chat.v1.ChatService"},
}


@pytest.mark.parametrize("service", SERVICES)
def test_reflection_lists_the_services(stack: dict[str, Running], service: str) -> None:
    listed = set(_grpcurl(stack[service].grpc_address, "list").split())
    assert {*EXPECTED_SERVICES[service], "grpc.health.v1.Health"} <= listed
    assert not EXPECTED_SERVICES[OTHER[service]] & listed


@pytest.mark.parametrize("service", SERVICES)
def test_metrics_are_served(stack: dict[str, Running], service: str) -> None:
    url = f"http://{stack[service].metrics_address}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        body = response.read().decode()
    assert "# TYPE grpc_server_started_total counter" in body


def test_sign_up_login_and_a_chat_through_the_containers(stack: dict[str, Running]) -> None:
    with grpc.insecure_channel(stack["auth"].grpc_address) as channel:
        users_pb2_grpc.UserServiceStub(channel).CreateUser(
            users_pb2.CreateUserRequest(
                username="frieda", password=PASSWORD, password_confirm=PASSWORD
            ),
            timeout=30,
        )
        tokens = auth_pb2_grpc.AuthServiceStub(channel).Login(
            auth_pb2.LoginRequest(username="frieda", password=PASSWORD), timeout=30
        )
        with pytest.raises(grpc.RpcError) as refused:
            auth_pb2_grpc.AuthServiceStub(channel).Login(
                auth_pb2.LoginRequest(username="frieda", password="not her password"), timeout=30
            )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    bearer = (("authorization", f"Bearer {tokens.access_token}"),)
    with grpc.insecure_channel(stack["chat"].grpc_address) as channel:
        chats = chat_pb2_grpc.ChatServiceStub(channel)
        created = chats.CreateChat(
            chat_pb2.CreateChatRequest(name="containers"), metadata=bearer, timeout=30
        )
        listed = chats.ListChats(chat_pb2.ListChatsRequest(), metadata=bearer, timeout=30)
    assert [chat.id for chat in listed.chats] == [created.id]
