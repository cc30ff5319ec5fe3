"""One trace per request across the mesh: a SendMessage through the edge is one connected trace
from the edge Envoy through the chat sidecar to the chat app and its database; a CreateChat
that asks the auth service continues through both sidecars to the auth app. Log lines name the
trace; a Connect stream is one span with its deliveries as events."""

from __future__ import annotations

import json

from devtools.mesh import Mesh
from meshchat.auth.v1 import auth_pb2, auth_pb2_grpc, users_pb2, users_pb2_grpc
from meshchat.chat.v1 import chat_pb2, chat_pb2_grpc
from tests.observe.otlp import OtlpReceiver, Span

PASSWORD = "correct horse battery"
SEND = "/meshchat.chat.v1.ChatService/SendMessage"
CREATE = "/meshchat.chat.v1.ChatService/CreateChat"
CONNECT = "/meshchat.chat.v1.ChatService/Connect"
GET_USER = "/meshchat.auth.v1.UserService/GetUser"


def sign_up(mesh: Mesh, *names: str) -> str:
    """Sign the users up through the edge; the first one's access token."""
    with mesh.edge_channel(mesh.hosts["auth"]) as channel:
        for name in names:
            users_pb2_grpc.UserServiceStub(channel).CreateUser(
                users_pb2.CreateUserRequest(
                    username=name, password=PASSWORD, password_confirm=PASSWORD
                ),
                timeout=30,
            )
        login = auth_pb2_grpc.AuthServiceStub(channel).Login(
            auth_pb2.LoginRequest(username=names[0], password=PASSWORD), timeout=30
        )
    return str(login.access_token)


def server_span(otlp: OtlpReceiver, service: str, name: str) -> Span:
    """The one span of ``service`` named ``name`` (waiting for it)."""
    otlp.wait_for(
        lambda: any(s.service == service and s.name == name for s in otlp.spans),
        f"a {name} span of {service}",
    )
    (span,) = [s for s in otlp.spans if s.service == service and s.name == name]
    return span


def assert_connected(spans: list[Span]) -> Span:
    """One root, and every other span's parent in the trace; the root."""
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if s.parent_id not in ids]
    assert len(roots) == 1, [(s.service, s.name, s.parent_id) for s in roots]
    assert not roots[0].parent_id, roots[0]
    return roots[0]


def test_a_send_through_the_edge_is_one_trace_from_the_edge_to_the_database(
    mesh: Mesh, otlp: OtlpReceiver
) -> None:
    token = sign_up(mesh, "tara")
    md = (("authorization", f"Bearer {token}"),)
    with mesh.edge_channel(mesh.hosts["chat"]) as channel:
        chats = chat_pb2_grpc.ChatServiceStub(channel)
        chat = chats.CreateChat(chat_pb2.CreateChatRequest(name="traced"), metadata=md, timeout=30)
        chats.SendMessage(
            chat_pb2.SendMessageRequest(chat_id=chat.id, text="hello"), metadata=md, timeout=30
        )
    send = server_span(otlp, "meshchat-chat", SEND)
    wanted = {"meshchat-edge", "meshchat-chat-envoy", "meshchat-chat"}
    otlp.wait_for(
        lambda: (
            {s.service for s in otlp.trace(send.trace_id)} >= wanted
            and any(s.name == "postgresql" for s in otlp.trace(send.trace_id))
        ),
        "the edge's, the sidecar's and the database's spans of the SendMessage",
    )
    spans = otlp.trace(send.trace_id)
    root = assert_connected(spans)
    assert root.service == "meshchat-edge"
    by_id = {s.span_id: s for s in spans}
    # edge -> chat sidecar -> chat app -> database, each the parent of the next.
    assert by_id[send.parent_id].service == "meshchat-chat-envoy"
    assert by_id[by_id[send.parent_id].parent_id].service == "meshchat-edge"
    assert any(s.name == "postgresql" and s.parent_id == send.span_id for s in spans)


def test_a_call_that_asks_the_auth_service_continues_through_both_sidecars(
    mesh: Mesh, otlp: OtlpReceiver
) -> None:
    token = sign_up(mesh, "uma", "ugo")
    md = (("authorization", f"Bearer {token}"),)
    with mesh.edge_channel(mesh.hosts["chat"]) as channel:
        chat_pb2_grpc.ChatServiceStub(channel).CreateChat(
            chat_pb2.CreateChatRequest(name="with ugo", member_usernames=["ugo"]),
            metadata=md,
            timeout=30,
        )
    # The chat service looks ugo up (UserService.GetUser): only this test's CreateChat does.
    lookup = server_span(otlp, "meshchat-auth", GET_USER)
    wanted = {"meshchat-edge", "meshchat-chat-envoy", "meshchat-chat", "meshchat-auth-envoy"}
    otlp.wait_for(
        lambda: {s.service for s in otlp.trace(lookup.trace_id)} >= wanted,
        "every hop's span of the CreateChat",
    )
    spans = otlp.trace(lookup.trace_id)
    assert assert_connected(spans).service == "meshchat-edge"
    by_id = {s.span_id: s for s in spans}
    chain = [(lookup.service, lookup.name)]
    node = lookup
    while node.parent_id:
        node = by_id[node.parent_id]
        chain.append((node.service, node.name))
    services = [service for service, _ in chain]
    # auth app <- auth sidecar <- chat sidecar (outbound) <- chat app (its client span, its
    # CreateChat span) <- chat sidecar (inbound) <- edge
    assert services[:3] == ["meshchat-auth", "meshchat-auth-envoy", "meshchat-chat-envoy"]
    assert ("meshchat-chat", CREATE) in chain
    assert services[-2:] == ["meshchat-chat-envoy", "meshchat-edge"]


def test_log_lines_carry_the_trace_of_the_request(mesh: Mesh, otlp: OtlpReceiver) -> None:
    sign_up(mesh, "vera")
    logged = [
        json.loads(line)
        for line in mesh.children["auth"].log.read_text().splitlines()
        if '"user created"' in line
    ]
    assert logged
    assert logged[-1]["trace_id"], logged[-1]
    trace_id, span_id = logged[-1]["trace_id"], logged[-1]["span_id"]
    otlp.wait_for(
        lambda: any(s.service == "meshchat-edge" for s in otlp.trace(trace_id)),
        "the edge's span of the logged request",
    )
    assert any(s.span_id == span_id for s in otlp.trace(trace_id))


def test_a_connect_stream_is_one_span_with_its_deliveries_as_events(
    mesh: Mesh, otlp: OtlpReceiver
) -> None:
    token = sign_up(mesh, "wim")
    md = (("authorization", f"Bearer {token}"),)
    with mesh.edge_channel(mesh.hosts["chat"]) as channel:
        chats = chat_pb2_grpc.ChatServiceStub(channel)
        chat = chats.CreateChat(chat_pb2.CreateChatRequest(name="stream"), metadata=md, timeout=30)
        stream = chats.Connect(chat_pb2.ConnectRequest(chat_id=chat.id), metadata=md, timeout=60)
        assert next(stream).HasField("caught_up")
        for i in range(5):
            chats.SendMessage(
                chat_pb2.SendMessageRequest(chat_id=chat.id, text=f"m{i}"), metadata=md
            )
            assert next(stream).message.text == f"m{i}"
        stream.cancel()
    otlp.wait_for(
        lambda: any(s.name == CONNECT and s.service == "meshchat-chat" for s in otlp.spans),
        "the Connect stream's span",
    )
    (connect,) = [s for s in otlp.spans if s.name == CONNECT and s.service == "meshchat-chat"]
    assert connect.events.count("delivered") == 5
    assert "catch-up" in connect.events
    in_trace = [s for s in otlp.trace(connect.trace_id) if s.service == "meshchat-chat"]
    # The stream's own span and its database reads; no span per delivered message.
    assert {s.name for s in in_trace} <= {CONNECT, "postgresql"}
