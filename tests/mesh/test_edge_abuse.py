"""The edge and the sidecars under abuse (issue 10, cases 15 to 17 and the client address of 4),
against real Envoys. The mesh of this module has its limits scaled down, so that a few dozen
streams or connections prove each point on two cores in seconds; the defaults are asserted on the
rendered configuration (tests/deploy/test_envoy.py). Every attack is bounded (loopback only, fixed
counts, deadlines) and ends by itself."""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

from devtools.mesh import Mesh, http_get, wait_until
from devtools.processes import health_stub
from devtools.tools import Doc
from meshchat.chat.v1 import chat_pb2, chat_pb2_grpc
from tests.mesh.clients import access_log, curl_grpc, edge_cli, inbound_port
from tests.support.cli import unique_name
from tests.support.meshes import start_mesh

pytestmark = pytest.mark.mesh

LISTENER_CONNECTIONS = 24
PUBLIC_STREAMS = 6
CONNECT_STREAMS = 6
PUBLIC_BURST = 40
HANDSHAKE_SECONDS = 2
PLAINTEXT_IDLE_SECONDS = 2
GUARDED: Doc = {
    "mesh": {
        "envoy": {
            "limits": {"maxListenerConnections": LISTENER_CONNECTIONS},
            "circuitBreakers": {
                "public": {
                    "maxConnections": 4,
                    "maxPendingRequests": 64,
                    "maxRequests": PUBLIC_STREAMS,
                },
                "streaming": {
                    "maxConnections": 4,
                    "maxPendingRequests": 64,
                    "maxRequests": CONNECT_STREAMS,
                },
            },
            "timeouts": {"handshake": f"{HANDSHAKE_SECONDS}s", "requestHeaders": "2s"},
            "plaintext": {"connectionIdle": f"{PLAINTEXT_IDLE_SECONDS}s"},
        }
    },
    "edge": {
        "perClient": {
            "public": {"perSecond": 1, "burst": PUBLIC_BURST},
            "streaming": {"perSecond": 1, "burst": 100},
        }
    },
}
HEALTH_CHECK = "/grpc.health.v1.Health/Check"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """A mesh of its own, with the lowered limits of GUARDED."""
    yield from start_mesh(tmp_path_factory.mktemp("guarded-mesh"), GUARDED)


def first_answer(call: Any) -> grpc.StatusCode:
    """OK once a Health/Watch stream has delivered its first status, else the stream's error."""
    try:
        reply = next(call)
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        return code
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    return grpc.StatusCode.OK


def health_check(stub: Any, metadata: tuple[tuple[str, str], ...] = ()) -> grpc.StatusCode:
    """grpc.health.v1 Check: OK, or the call's status code."""
    try:
        stub.Check(health_pb2.HealthCheckRequest(), timeout=5, metadata=metadata)
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        return code
    return grpc.StatusCode.OK


def test_a_health_watch_flood_leaves_logged_in_users_their_calls(
    guarded: Mesh, tmp_path: Path
) -> None:
    cli = edge_cli(guarded, tmp_path)
    bob = cli.new_user("bob")
    cli.new_user("alice")
    chat = cli.ok("create", "chat", unique_name("flood"), "--member", bob).strip()
    watches = 4 * PUBLIC_STREAMS
    with guarded.edge_channel(guarded.hosts["chat"]) as channel:
        stub = health_stub(channel)
        calls = [stub.Watch(health_pb2.HealthCheckRequest(), timeout=50) for _ in range(watches)]
        try:
            outcomes = [first_answer(call) for call in calls]
            # No token needed, and no more than the health-and-reflection cluster's limit held;
            # the rest fail fast, not queued.
            assert outcomes.count(grpc.StatusCode.OK) == PUBLIC_STREAMS, outcomes
            assert set(outcomes) == {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, outcomes
            stats = guarded.envoy_stats("edge")
            assert (
                stats["cluster.chat_public.upstream_rq_active_overflow"] >= watches - PUBLIC_STREAMS
            )
            assert stats["cluster.chat_public.circuit_breakers.default.rq_open"] == 1
            # Meanwhile a logged-in user's unary calls and Connect stream go through.
            cli.ok("--user", bob, "send", chat, "during the flood")
            session = cli.spawn("connect", chat)
            session.wait_for_messages(["during the flood"])
            cli.ok("--user", bob, "send", chat, "still during the flood")
            session.wait_for_messages(["still during the flood"])
            session.child.sendintr()
            assert session.finish() == 0
            stats = guarded.envoy_stats("edge")
            assert stats["cluster.chat_public.circuit_breakers.default.rq_open"] == 1
            assert stats["cluster.chat.upstream_rq_active_overflow"] == 0
            assert stats["cluster.chat_streaming.upstream_rq_active_overflow"] == 0
        finally:
            for call in calls:
                call.cancel()
    # Once the streams are gone, health is answered again.
    wait_until(lambda: guarded.serving_through_edge("chat"), "health through the edge again", 10)


def first_event(call: Any) -> grpc.StatusCode:
    """OK once a Connect stream has delivered its first event (caught up), else its error."""
    try:
        next(call)
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        return code
    return grpc.StatusCode.OK


def test_one_users_connect_flood_leaves_them_and_others_their_unary_calls(
    guarded: Mesh, tmp_path: Path
) -> None:
    cli = edge_cli(guarded, tmp_path)
    bob = cli.new_user("bob")
    alice = cli.new_user("alice")
    chat = cli.ok("create", "chat", unique_name("streams"), "--member", bob).strip()
    token = (("authorization", f"Bearer {cli.credentials(alice)['access_token']}"),)
    streams = 4 * CONNECT_STREAMS
    with guarded.edge_channel(guarded.hosts["chat"]) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        request = chat_pb2.ConnectRequest(chat_id=chat)
        calls = [stub.Connect(request, timeout=50, metadata=token) for _ in range(streams)]
        try:
            outcomes = [first_event(call) for call in calls]
            assert outcomes.count(grpc.StatusCode.OK) == CONNECT_STREAMS, outcomes
            assert set(outcomes) == {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, outcomes
            # The streams' cluster is full; unary calls, the flooder's own included, go through.
            cli.ok("--user", bob, "send", chat, "while alice floods")
            assert "while alice floods" in cli.ok("--user", alice, "history", chat)
            stats = guarded.envoy_stats("edge")
            assert stats["cluster.chat_streaming.circuit_breakers.default.rq_open"] == 1
            assert stats["cluster.chat.upstream_rq_active_overflow"] == 0
        finally:
            for call in calls:
                call.cancel()


def raw_call(mesh: Mesh, host: str, path: str) -> grpc.StatusCode:
    """A call through the edge with ``path`` as its :path, exactly, and an empty message: its
    status code."""
    with mesh.edge_channel(host) as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(path)
        try:
            call(b"", timeout=5)
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()
            return code
    return grpc.StatusCode.OK


def test_the_path_is_normalised_before_routing(guarded: Mesh) -> None:
    host = guarded.hosts["chat"]
    # Without a token the chat service answers UNAUTHENTICATED: the call reached its method.
    # A path it does not know would be UNIMPLEMENTED.
    for path in (
        "//meshchat.chat.v1.ChatService/ListChats",
        "/meshchat.chat.v1.ChatService//ListChats",
        "/meshchat.chat.v1.ChatService/./ListChats",
        "/meshchat.chat.v1.ChatService/x/../ListChats",
    ):
        assert raw_call(guarded, host, path) == grpc.StatusCode.UNAUTHENTICATED, path
    # An escaped slash is refused by the edge itself (a local HTTP 400, which a gRPC client
    # sees as INTERNAL).
    failed = "http.edge.downstream_rq_failed_path_normalization"
    before = guarded.envoy_stats("edge").get(failed, 0)
    path = "/meshchat.chat.v1.ChatService%2FListChats"
    assert raw_call(guarded, host, path) == grpc.StatusCode.INTERNAL
    assert guarded.envoy_stats("edge")[failed] == before + 1


def test_each_client_address_has_its_own_buckets(guarded: Mesh, tmp_path: Path) -> None:
    host = guarded.hosts["auth"]
    with guarded.edge_channel(host) as channel:
        stub = health_stub(channel)
        # Past its bucket, one address's health checks are answered RESOURCE_EXHAUSTED.
        codes = [health_check(stub) for _ in range(PUBLIC_BURST + 10)]
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
        assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
        # Naming another address in x-forwarded-for does not give the client another bucket.
        spoofed = (("x-forwarded-for", "203.0.113.9"),)
        assert health_check(stub, spoofed) == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Another address has a bucket of its own.
    assert curl_grpc(guarded, host, HEALTH_CHECK, source="127.0.0.2").grpc_status == 0
    # And the same address's calls of another class (a login, a listing) still go through.
    cli = edge_cli(guarded, tmp_path)
    cli.new_user("carol")
    cli.ok("chats")


def test_the_app_sees_the_address_the_edge_accepted(guarded: Mesh) -> None:
    login = "/meshchat.auth.v1.AuthService/Login"

    def logins() -> list[dict[str, object]]:
        return [line for line in access_log(guarded, "auth") if line["path"] == login]

    before = len(logins())
    # A client that claims another address in x-forwarded-for; the call itself may fail.
    answer = curl_grpc(guarded, guarded.hosts["auth"], login)
    assert answer.grpc_status is not None
    with guarded.edge_channel(guarded.hosts["auth"]) as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(login)
        with contextlib.suppress(grpc.RpcError):
            call(b"", timeout=5, metadata=(("x-forwarded-for", "203.0.113.9, 198.51.100.7"),))
    wait_until(lambda: len(logins()) >= before + 2, "the logins in auth's access log", 30)
    # The auth sidecar passed on exactly the address the edge accepted the connections from.
    assert {line["forwarded_for"] for line in logins()[before:]} == {"127.0.0.1"}


def closed(sock: socket.socket) -> bool:
    """Whether the peer has closed a connection this side never wrote to."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


@contextlib.contextmanager
def idle_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` TCP connections to a local port that never send a byte (no ClientHello)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.parametrize("envoy", ["edge", "chat"])
def test_connections_that_never_handshake_are_closed_and_cannot_fail_the_probes(
    guarded: Mesh, envoy: str
) -> None:
    ports = guarded.ports.component(envoy)
    port = guarded.ports.edge if envoy == "edge" else inbound_port(guarded, envoy)
    listener = f"listener.127.0.0.1_{port}"
    before = guarded.envoy_stats(envoy)
    extra = 8
    with idle_connections(port, LISTENER_CONNECTIONS + extra) as sockets:
        # The listener keeps at most its limit; the others are closed at once.
        wait_until(
            lambda: (
                guarded.envoy_stats(envoy)[f"{listener}.downstream_cx_overflow"]
                >= before[f"{listener}.downstream_cx_overflow"] + extra
            ),
            "the connections past the listener's limit refused",
            10,
        )
        # The probes and the metrics are outside that limit and the global one.
        assert http_get(ports["health"], "/livez")[0] == 200
        assert http_get(ports["health"], "/healthz")[0] == 200
        assert http_get(ports["metrics"], "/stats/prometheus")[0] == 200
        # Connections that have not finished a TLS handshake in time are closed.
        wait_until(
            lambda: all(closed(sock) for sock in sockets),
            "the idle connections closed by the handshake timeout",
            HANDSHAKE_SECONDS + 10,
        )
    after = guarded.envoy_stats(envoy)
    timeouts = f"{listener}.downstream_cx_transport_socket_connect_timeout"
    # (A sidecar's own callers, the edge, held some of the listener's connections already.)
    idle = LISTENER_CONNECTIONS - before[f"{listener}.downstream_cx_active"]
    assert after[timeouts] >= before.get(timeouts, 0) + idle
    # The heap is watched (the overload manager's fixed_heap monitor).
    assert "overload.envoy.overload_actions.shrink_heap.active" in after
    # Real clients are served again.
    wait_until(lambda: guarded.serving_through_edge("chat"), "chat through the edge", 10)


@pytest.mark.parametrize("envoy", ["edge", "auth"])
def test_idle_connections_to_the_plaintext_listeners_are_closed(guarded: Mesh, envoy: str) -> None:
    ports = guarded.ports.component(envoy)
    with (
        idle_connections(ports["health"], 8) as health,
        idle_connections(ports["metrics"], 8) as metrics,
    ):
        wait_until(
            lambda: all(closed(sock) for sock in health + metrics),
            "the plaintext listeners to close idle connections",
            PLAINTEXT_IDLE_SECONDS + 10,
        )


def h2_frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame (RFC 9113, section 4.1)."""
    return (
        len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload
    )


def test_request_headers_that_never_end_are_cut_off(guarded: Mesh) -> None:
    context = ssl.create_default_context(cafile=str(guarded.ca_file))
    context.set_alpn_protocols(["h2"])
    host = guarded.hosts["chat"]
    counter = "http.edge.downstream_rq_header_timeout"
    before = guarded.envoy_stats("edge").get(counter, 0)
    with (
        socket.create_connection(("127.0.0.1", guarded.ports.edge), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        assert tls.selected_alpn_protocol() == "h2"
        # The preface, empty SETTINGS, then the start of a header block (:method POST,
        # :scheme https) whose END_HEADERS never comes.
        tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0))
        tls.sendall(h2_frame(1, 0, 1, b"\x83\x87"))
        wait_until(
            lambda: guarded.envoy_stats("edge").get(counter, 0) > before,
            "the edge to give up on the request's headers",
            10,
        )


def server_settings(port: int) -> dict[int, int]:
    """The SETTINGS an Envoy plaintext listener announces to an HTTP/2 client (prior knowledge)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0))
        data = b""
        while len(data) < 9 or len(data) < 9 + int.from_bytes(data[:3], "big"):
            chunk = sock.recv(4096)
            assert chunk, "the listener closed the connection"
            data += chunk
    length, kind = int.from_bytes(data[:3], "big"), data[3]
    assert kind == 4  # the server's connection preface is a SETTINGS frame
    payload = data[9 : 9 + length]
    return {
        int.from_bytes(payload[i : i + 2], "big"): int.from_bytes(payload[i + 2 : i + 6], "big")
        for i in range(0, length, 6)
    }


@pytest.mark.parametrize("envoy", ["edge", "auth"])
def test_the_plaintext_listeners_allow_few_streams_and_small_windows(
    guarded: Mesh, envoy: str
) -> None:
    max_concurrent_streams, initial_window_size = 0x3, 0x4
    for listener in ("health", "metrics"):
        settings = server_settings(guarded.ports.component(envoy)[listener])
        assert settings[max_concurrent_streams] == 8, (listener, settings)
        assert settings[initial_window_size] == 65536, (listener, settings)
