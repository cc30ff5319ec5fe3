"""AccessService.Check over the wire: the token from the metadata, the answer's fields. The\nrules are tested in tests/unit/auth."""

from __future__ import annotations

import grpc

from meshchat.auth.v1 import access_options_pb2, access_pb2
from tests.support.auth_stubs import Stubs
from tests.support.rpc import status_of
from tests.support.stack import bearer, register_and_login

SEND = "/meshchat.chat.v1.ChatService/SendMessage"
LIST_USERS = "/meshchat.auth.v1.UserService/ListUsers"


async def test_check_allows_a_user_endpoint(stubs: Stubs) -> None:
    pair = await register_and_login(stubs.channel, "alice")
    answer = await stubs.access.Check(
        access_pb2.CheckRequest(endpoint=SEND), metadata=bearer(pair.access_token)
    )
    assert answer.username == "alice"
    assert answer.user_id == pair.user.id
    assert answer.role == access_options_pb2.ROLE_USER
    assert answer.expire_time == pair.access_token_expire_time
    assert answer.expires_at == pair.access_token_expire_time.seconds  # the deprecated field


async def test_check_without_a_token_is_unauthenticated(stubs: Stubs) -> None:
    code, _ = await status_of(stubs.access.Check(access_pb2.CheckRequest(endpoint=SEND)))
    assert code == grpc.StatusCode.UNAUTHENTICATED
