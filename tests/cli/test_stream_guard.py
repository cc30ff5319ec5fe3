"""``connect`` against a misbehaving chat service: a message repeated is shown once, and a
message skipped is fetched by reopening the stream after the last one shown."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from devtools.processes import free_port
from meshchat.chat.v1 import chat_pb2
from tests.support.cli import ChatLine, Cli

CHAT_ID = "5d0c1f4e-94a2-4b8e-9f5e-6f3d1a2b3c4d"


def _message(seq: int) -> chat_pb2.ConnectResponse:
    message = chat_pb2.Message(
        chat_id=CHAT_ID, seq=seq, sender_id="bob-id", sender_username="bob", text=f"m{seq}"
    )
    message.create_time.GetCurrentTime()
    return chat_pb2.ConnectResponse(message=message)


class ScriptedChat:
    """A chat service whose first stream repeats one message and skips another; the streams
    after it tell the truth."""

    def __init__(self) -> None:
        self.after_seqs: list[int] = []
        self._released = threading.Event()

    def get_chat(
        self, request: chat_pb2.GetChatRequest, context: grpc.ServicerContext
    ) -> chat_pb2.Chat:
        chat = chat_pb2.Chat(id=request.chat_id, name="scripted", last_seq=0)
        chat.members.add(username="alice")
        return chat

    def connect(
        self, request: chat_pb2.ConnectRequest, context: grpc.ServicerContext
    ) -> Iterator[chat_pb2.ConnectResponse]:
        self.after_seqs.append(request.after_seq)
        if len(self.after_seqs) == 1:
            script = [1, 1, 3, 4]
        else:
            script = [seq for seq in (1, 2, 2, 3, 4) if seq > request.after_seq - 1]
        for seq in script:
            yield _message(seq)
        yield chat_pb2.ConnectResponse(caught_up=chat_pb2.CaughtUp(last_seq=4))
        # Hold the stream open, as a live one is, until the client leaves.
        while context.is_active() and not self._released.wait(0.05):
            pass

    def release(self) -> None:
        self._released.set()


@pytest.fixture
def scripted_chat() -> Iterator[tuple[str, ScriptedChat]]:
    service = ScriptedChat()
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "GetChat": grpc.unary_unary_rpc_method_handler(
            service.get_chat,
            request_deserializer=chat_pb2.GetChatRequest.FromString,
            response_serializer=chat_pb2.Chat.SerializeToString,
        ),
        "Connect": grpc.unary_stream_rpc_method_handler(
            service.connect,
            request_deserializer=chat_pb2.ConnectRequest.FromString,
            response_serializer=chat_pb2.ConnectResponse.SerializeToString,
        ),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("meshchat.chat.v1.ChatService", handlers),)
    )
    address = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(address)
    server.start()
    yield address, service
    service.release()
    server.stop(grace=None)


def _logged_in(cli: Cli) -> None:
    """A login that the scripted service accepts (it checks no token)."""
    login = {
        "username": "alice",
        "user_id": "alice-id",
        "role": "user",
        "access_token": "not-checked",
        "access_token_expires": time.time() + 3600,
        "refresh_token": "not-used",
        "refresh_token_expires": time.time() + 86400,
        "login_time": time.time(),
    }
    path = cli.credentials_path()
    path.parent.mkdir(parents=True)
    document = {"version": 1, "servers": {cli.auth_address: {"alice": login}}}
    path.write_text(json.dumps(document))


def test_repeated_messages_are_shown_once_and_a_skipped_one_is_fetched(
    scripted_chat: tuple[str, ScriptedChat], tmp_path: Path
) -> None:
    address, service = scripted_chat
    cli = Cli("127.0.0.1:1", address, tmp_path / "config")
    _logged_in(cli)

    session = cli.spawn("connect", CHAT_ID, "--history", "0")
    session.wait_for_messages(["m1", "m2", "m3", "m4"])

    assert session.messages() == [ChatLine("bob", f"m{seq}", own=False) for seq in (1, 2, 3, 4)]
    assert service.after_seqs == [0, 1]
    assert "message 2 was missing" in session.text()
    session.child.sendintr()
    assert session.finish() == 0
