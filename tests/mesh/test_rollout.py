"""A chat replica goes away while a client keeps calling, and no call fails.

Next to the shared mesh run a second chat pod (the chart's rendering with other ports, on chat's
database, reaching the running auth sidecar) and a second edge Envoy whose chat clusters have
both chat sidecars' mTLS listeners as endpoints: what DNS answers for the headless Service of two
pods. A client reads through that edge call after call; the second pod's app gets SIGTERM, as
the kubelet sends it after the preStop sleep, while its sidecar keeps running. No DNS change
tells the edge that the pod is gone, so only its retries (CANCELLED or UNAVAILABLE on an
idempotent read, on a pod not tried yet) and outlier detection keep the calls from failing."""

from __future__ import annotations

import copy
import dataclasses
import functools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import yaml

from devtools.mesh import Child, Mesh, Pod, Ports, envoy_stats, healthz_ok, render_pod, wait_until
from devtools.mesh.values import chart_values
from devtools.tools import find_envoy, find_helm
from meshchat.auth.v1 import auth_pb2, auth_pb2_grpc, users_pb2, users_pb2_grpc
from meshchat.chat.v1 import chat_pb2, chat_pb2_grpc
from tests.support.cli import PASSWORD, unique_name

pytestmark = pytest.mark.mesh

LEAVING = "chat-leaving"  # the second chat pod's processes: the replica that goes away
EDGE = "rollout-edge-envoy"
DEADLINE = 60.0  # for starting, for the calls each phase waits for, and for the app's exit
CALLS_PER_PHASE = 20
MAX_CALLS = 3000
# Pacing, not synchronisation: the client calls at most half as often as the edge lets one
# client address make unary calls (edge.perClient.unary.perSecond), so it is never rate limited.
PACE_SECONDS = 2 / chart_values()["edge"]["perClient"]["unary"]["perSecond"]
RETRIES = "cluster.chat.upstream_rq_retry"


def add_endpoint(edge: Pod, rendered: int, added: int) -> None:
    """Give every cluster of the edge's rendered bootstrap whose endpoint is the sidecar port
    ``rendered`` a second endpoint, port ``added`` (before the Envoy starts): both pods, as
    every cluster resolving one Service's name would find them."""
    args = edge.containers["envoy"]["args"]
    config = Path(args[args.index("--config-path") + 1])
    bootstrap = yaml.safe_load(config.read_text())
    for cluster in bootstrap["static_resources"]["clusters"]:
        [locality] = cluster["load_assignment"]["endpoints"]
        [endpoint] = locality["lb_endpoints"]
        if endpoint["endpoint"]["address"]["socket_address"]["port_value"] == rendered:
            second = copy.deepcopy(endpoint)
            second["endpoint"]["address"]["socket_address"]["port_value"] = added
            locality["lb_endpoints"].append(second)
    config.write_text(yaml.safe_dump(bootstrap))


@dataclass(frozen=True)
class Replica:
    """The second chat pod and the edge in front of both."""

    ports: Ports
    app: Child

    @property
    def edge_address(self) -> str:
        """The edge's TLS listener for clients."""
        return f"127.0.0.1:{self.ports.edge}"

    def requests(self) -> int:
        """The calls its sidecar's mTLS listener has taken."""
        return envoy_stats(self.ports.chat_admin)["http.inbound.downstream_rq_total"]

    def edge_stat(self, name: str) -> int:
        """A counter of the edge."""
        return envoy_stats(self.ports.edge_admin)[name]


@pytest.fixture
def replica(mesh: Mesh, tmp_path: Path) -> Iterator[Replica]:
    """A second chat pod behind a second edge, both healthy; stopped afterwards."""
    helm, envoy = find_helm(), find_envoy()
    ports = dataclasses.replace(Ports.free(), auth_inbound=mesh.ports.auth_inbound)
    chat = render_pod(helm, "chat", ports, tmp_path / "chat", mesh.ca, mesh.values)
    edge = render_pod(helm, "edge", ports, tmp_path / "edge", mesh.ca, mesh.values)
    add_endpoint(edge, ports.chat_inbound, mesh.ports.chat_inbound)
    children: dict[str, Child] = {}
    try:
        children[LEAVING] = mesh.start_app(LEAVING, chat)
        children[f"{LEAVING}-envoy"] = mesh.start_envoy(f"{LEAVING}-envoy", chat, envoy)
        children[EDGE] = mesh.start_envoy(EDGE, edge, envoy)
        for port in (ports.chat_health, ports.edge_health):
            wait_until(
                functools.partial(healthz_ok, port), f"/healthz on {port}", DEADLINE, children
            )
        yield Replica(ports, children[LEAVING])
    finally:
        for child in reversed(children.values()):
            child.stop()


@dataclass
class Reader:
    """Lists the caller's chats call after call (PACE_SECONDS apart), each answer checked to hold
    ``chat_id``, until told to stop: at most MAX_CALLS calls, for at most the test's three waits
    (3 * DEADLINE)."""

    stub: chat_pb2_grpc.ChatServiceStub
    metadata: tuple[tuple[str, str], ...]
    chat_id: str
    calls: int = 0
    failures: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        end = time.monotonic() + 3 * DEADLINE
        while self.calls < MAX_CALLS and time.monotonic() < end:
            if self.done.wait(PACE_SECONDS):
                return
            try:
                reply = self.stub.ListChats(
                    chat_pb2.ListChatsRequest(), metadata=self.metadata, timeout=5
                )
                if self.chat_id not in [chat.id for chat in reply.chats]:
                    self.failures.append(f"call {self.calls}: the chat is not listed")
            except grpc.RpcError as exc:
                self.failures.append(f"call {self.calls}: {exc.code().name} {exc.details()}")
            self.calls += 1

    def calls_until(self, condition: Callable[[], bool], what: str) -> None:
        """Return once ``condition()`` holds or a call has failed (the asserts after say which);
        MeshError after DEADLINE seconds."""
        wait_until(lambda: bool(self.failures) or condition(), what, DEADLINE)


def signed_in_reader(channel: grpc.Channel) -> Reader:
    """A new user with a chat of their own, reading through ``channel``."""
    name = unique_name("rollout")
    users_pb2_grpc.UserServiceStub(channel).CreateUser(
        users_pb2.CreateUserRequest(username=name, password=PASSWORD, password_confirm=PASSWORD),
        timeout=10,
    )
    login = auth_pb2.LoginRequest(username=name, password=PASSWORD)
    tokens = auth_pb2_grpc.AuthServiceStub(channel).Login(login, timeout=10)
    metadata = (("authorization", f"Bearer {tokens.access_token}"),)
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    chat = stub.CreateChat(chat_pb2.CreateChatRequest(name=name), metadata=metadata, timeout=10)
    return Reader(stub, metadata, chat.id)


@pytest.mark.timeout(300)
def test_a_chat_replica_stops_while_a_client_calls_and_no_call_fails(
    mesh: Mesh, replica: Replica
) -> None:
    def served_by_the_mesh_chat() -> int:
        return mesh.envoy_stats("chat")["http.inbound.downstream_rq_total"]

    with mesh.edge_channel(mesh.hosts["main"], replica.edge_address) as channel:
        reader = signed_in_reader(channel)
        by_replica, by_mesh_chat = replica.requests(), served_by_the_mesh_chat()

        def both_replicas_served() -> bool:
            return (
                reader.calls >= CALLS_PER_PHASE
                and replica.requests() > by_replica
                and served_by_the_mesh_chat() > by_mesh_chat
            )

        calling = threading.Thread(target=reader.run)
        calling.start()
        try:
            reader.calls_until(both_replicas_served, "calls served by both chat replicas")
            retries = replica.edge_stat(RETRIES)
            replica.app.process.terminate()
            assert replica.app.process.wait(timeout=DEADLINE) == 0, replica.app.tail()
            exited = reader.calls

            def served_after_the_exit() -> bool:
                return (
                    reader.calls >= exited + CALLS_PER_PHASE
                    and replica.edge_stat(RETRIES) > retries
                )

            # The edge still sends calls to the stopped replica's sidecar, and retries them.
            reader.calls_until(served_after_the_exit, "calls after the exit, some retried")
        finally:
            reader.done.set()
            calling.join(timeout=DEADLINE)
    assert not calling.is_alive()
    failures = reader.failures
    assert not failures, f"{len(failures)} of {reader.calls} calls failed: {failures[:3]}"
    assert replica.edge_stat(RETRIES) > retries
