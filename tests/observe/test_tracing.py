"""One trace per request across the mesh: a SendMessage through the edge is one connected trace
from the edge Envoy through the chat sidecar to the chat app and its database; a CreateChat
that asks the auth service continues through both sidecars to the auth app. Log lines name the
trace; a Connect stream is one span with its deliveries as events.

Each call starts its trace at the client, as an instrumented client does (a ``traceparent``
with a new trace id, sampled), so that each test finds its own trace among the others."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from devtools.mesh import Mesh
from meshchat.auth.v1 import auth_pb2, auth_pb2_grpc, users_pb2, users_pb2_grpc
from meshchat.chat.v1 import chat_pb2, chat_pb2_grpc
from tests.observe.otlp import OtlpReceiver, Span
from tests.support.passwords import PASSWORD
from tests.support.stack import bearer

SEND = "/meshchat.chat.v1.ChatService/SendMessage"
CREATE = "/meshchat.chat.v1.ChatService/CreateChat"
CONNECT = "/meshchat.chat.v1.ChatService/Connect"
CREATE_USER = "/meshchat.auth.v1.UserService/CreateUser"
LOOKUP_USERS = "/meshchat.auth.v1.UserService/LookupUsers"


@dataclass(frozen=True)
class ClientSpan:
    """The client's side of a trace: its ids, and the metadata that carries them."""

    trace_id: str
    span_id: str

    @classmethod
    def new(cls) -> ClientSpan:
        """A new trace."""
        return cls(secrets.token_hex(16), secrets.token_hex(8))

    def metadata(self, token: str = "") -> tuple[tuple[str, str], ...]:
        """``traceparent`` (sampled), and the access token when given."""
        traceparent = ("traceparent", f"00-{self.trace_id}-{self.span_id}-01")
        return (traceparent, *bearer(token)) if token else (traceparent,)


def sign_up(mesh: Mesh, *names: str, client: ClientSpan | None = None) -> str:
    """Sign the users up through the edge (the first in ``client``'s trace, when given); the
    first one's access token."""
    with mesh.edge_channel(mesh.hosts["auth"]) as channel:
        for index, name in enumerate(names):
            users_pb2_grpc.UserServiceStub(channel).CreateUser(
                users_pb2.CreateUserRequest(
                    username=name, password=PASSWORD, password_confirm=PASSWORD
                ),
                metadata=client.metadata() if client is not None and index == 0 else (),
                timeout=30,
            )
        login = auth_pb2_grpc.AuthServiceStub(channel).Login(
            auth_pb2.LoginRequest(username=names[0], password=PASSWORD), timeout=30
        )
    return str(login.access_token)


def span_of(otlp: OtlpReceiver, client: ClientSpan, service: str, name: str) -> Span:
    """The one span of ``service`` named ``name`` in the client's trace (waiting for it)."""

    def matching() -> list[Span]:
        return [s for s in otlp.trace(client.trace_id) if s.service == service and s.name == name]

    otlp.wait_for(lambda: bool(matching()), f"a {name} span of {service}")
    (span,) = matching()
    return span


def assert_connected(spans: list[Span], client: ClientSpan) -> Span:
    """Every span's parent is in the trace but one's, the client's child; that one."""
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if s.parent_id not in ids]
    assert len(roots) == 1, [(s.service, s.name, s.parent_id) for s in roots]
    assert roots[0].parent_id == client.span_id, roots[0]
    return roots[0]


def test_a_send_through_the_edge_is_one_trace_from_the_edge_to_the_database(
    mesh: Mesh, otlp: OtlpReceiver
) -> None:
    token = sign_up(mesh, "tara")
    client = ClientSpan.new()
    with mesh.edge_channel(mesh.hosts["chat"]) as channel:
        chats = chat_pb2_grpc.ChatServiceStub(channel)
        chat = chats.CreateChat(
            chat_pb2.CreateChatRequest(name="traced"), metadata=bearer(token), timeout=30
        )
        chats.SendMessage(
            chat_pb2.SendMessageRequest(chat_id=chat.id, text="hello"),
            metadata=client.metadata(token),
            timeout=30,
        )
    send = span_of(otlp, client, "meshchat-chat", SEND)
    wanted = {"meshchat-edge", "meshchat-chat-envoy", "meshchat-chat"}
    otlp.wait_for(
        lambda: (
            {s.service for s in otlp.trace(client.trace_id)} >= wanted
            and any(s.name == "postgresql" for s in otlp.trace(client.trace_id))
        ),
        "the edge's, the sidecar's and the database's spans of the SendMessage",
    )
    spans = otlp.trace(client.trace_id)
    assert assert_connected(spans, client).service == "meshchat-edge"
    by_id = {s.span_id: s for s in spans}
    # edge -> chat sidecar -> chat app -> database, each the parent of the next.
    sidecar = by_id[send.parent_id]
    assert sidecar.service == "meshchat-chat-envoy"
    assert by_id[sidecar.parent_id].service == "meshchat-edge"
    assert any(s.name == "postgresql" and s.parent_id == send.span_id for s in spans)


def test_a_call_that_asks_the_auth_service_continues_through_both_sidecars(
    mesh: Mesh, otlp: OtlpReceiver
) -> None:
    token = sign_up(mesh, "uma", "ugo")
    client = ClientSpan.new()
    with mesh.edge_channel(mesh.hosts["chat"]) as channel:
        chat_pb2_grpc.ChatServiceStub(channel).CreateChat(
            chat_pb2.CreateChatRequest(name="with ugo", member_usernames=["ugo"]),
            metadata=client.metadata(token),
            timeout=30,
        )
    # The chat service looks ugo up with UserService.LookupUsers.
    lookup = span_of(otlp, client, "meshchat-auth", LOOKUP_USERS)
    wanted = {"meshchat-edge", "meshchat-chat-envoy", "meshchat-chat", "meshchat-auth-envoy"}
    otlp.wait_for(
        lambda: {s.service for s in otlp.trace(client.trace_id)} >= wanted,
        "every hop's span of the CreateChat",
    )
    spans = otlp.trace(client.trace_id)
    assert assert_connected(spans, client).service == "meshchat-edge"
    by_id = {s.span_id: s for s in spans}
    chain = [(lookup.service, lookup.name)]
    node = lookup
    while node.parent_id in by_id:
        node = by_id[node.parent_id]
        chain.append((node.service, node.name))
    services = [service for service, _ in chain]
    # auth app <- auth sidecar <- chat sidecar (outbound) <- chat app (its client span, its
    # CreateChat span) <- chat sidecar (inbound) <- edge
    assert services[:3] == ["meshchat-auth", "meshchat-auth-envoy", "meshchat-chat-envoy"]
    assert ("meshchat-chat", CREATE) in chain
    assert services[-2:] == ["meshchat-chat-envoy", "meshchat-edge"]


def test_log_lines_carry_the_trace_of_the_request(mesh: Mesh, otlp: OtlpReceiver) -> None:
    client = ClientSpan.new()
    sign_up(mesh, "vera", client=client)
    logged = [
        json.loads(line)
        for line in mesh.children["auth"].log.read_text().splitlines()
        if client.trace_id in line
    ]
    assert [entry["message"] for entry in logged] == ["user created"]
    create = span_of(otlp, client, "meshchat-auth", CREATE_USER)
    assert logged[0]["span_id"] == create.span_id


def test_a_connect_stream_is_one_span_with_its_deliveries_as_events(
    mesh: Mesh, otlp: OtlpReceiver
) -> None:
    token = sign_up(mesh, "wim")
    client = ClientSpan.new()
    with mesh.edge_channel(mesh.hosts["chat"]) as channel:
        chats = chat_pb2_grpc.ChatServiceStub(channel)
        chat = chats.CreateChat(
            chat_pb2.CreateChatRequest(name="stream"), metadata=bearer(token), timeout=30
        )
        stream = chats.Connect(
            chat_pb2.ConnectRequest(chat_id=chat.id), metadata=client.metadata(token), timeout=60
        )
        assert next(stream).HasField("caught_up")
        for i in range(5):
            chats.SendMessage(
                chat_pb2.SendMessageRequest(chat_id=chat.id, text=f"m{i}"), metadata=bearer(token)
            )
            assert next(stream).message.text == f"m{i}"
        stream.cancel()
    connect = span_of(otlp, client, "meshchat-chat", CONNECT)
    assert connect.events.count("delivered") == 5
    assert "catch-up" in connect.events
    # The stream's own span and its database reads; no span per delivered message.
    in_app = {s.name for s in otlp.trace(client.trace_id) if s.service == "meshchat-chat"}
    assert in_app <= {CONNECT, "postgresql"}
