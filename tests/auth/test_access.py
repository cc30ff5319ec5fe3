"""AccessService.Check and the access rules declared in the protos."""

from __future__ import annotations

import grpc
import pytest

from meshchat.auth.v1 import access_options_pb2, access_pb2
from meshchat_runtime.access import Decision, default_policy
from meshchat_runtime.identity import Principal, Role
from tests.support.auth_stubs import Stubs, login_admin
from tests.support.rpc import status_of
from tests.support.stack import RunningAuth, bearer, register_and_login

SEND = "/meshchat.chat.v1.ChatService/SendMessage"
LIST_USERS = "/meshchat.auth.v1.UserService/ListUsers"


def test_every_rpc_of_every_service_declares_a_rule() -> None:
    from meshchat.auth.v1 import access_pb2 as a
    from meshchat.auth.v1 import auth_pb2, users_pb2
    from meshchat.chat.v1 import chat_pb2

    policy = default_policy()
    for file in (users_pb2.DESCRIPTOR, auth_pb2.DESCRIPTOR, a.DESCRIPTOR, chat_pb2.DESCRIPTOR):
        for service in file.services_by_name.values():
            for method in service.methods:
                assert policy.rule_for(f"/{service.full_name}/{method.name}") is not None, (
                    method.full_name
                )


def test_policy_decisions() -> None:
    policy = default_policy()
    user = Principal("u", "alice", Role.USER, 0)
    admin = Principal("a", "root", Role.ADMIN, 0)
    assert policy.decide(SEND, user) is Decision.ALLOW
    assert policy.decide(SEND, admin) is Decision.ALLOW
    assert policy.decide(SEND, None) is Decision.UNAUTHENTICATED
    assert policy.decide(LIST_USERS, user) is Decision.PERMISSION_DENIED
    assert policy.decide(LIST_USERS, admin) is Decision.ALLOW
    assert policy.decide("/meshchat.auth.v1.AuthService/Login", None) is Decision.ALLOW
    assert policy.decide("/x.Y/Z", admin) is Decision.PERMISSION_DENIED
    assert policy.decide("/x.Y/Z", None) is Decision.UNAUTHENTICATED


def test_rules_are_visible_in_the_descriptors() -> None:
    from meshchat.auth.v1 import users_pb2

    method = users_pb2.DESCRIPTOR.services_by_name["UserService"].methods_by_name["ListUsers"]
    rule = method.GetOptions().Extensions[access_options_pb2.access]
    assert rule.min_role == access_options_pb2.ROLE_ADMIN


async def test_check_allows_a_user_endpoint(stubs: Stubs) -> None:
    pair = await register_and_login(stubs.channel, "alice")
    answer = await stubs.access.Check(
        access_pb2.CheckRequest(endpoint=SEND), metadata=bearer(pair.access_token)
    )
    assert answer.username == "alice"
    assert answer.user_id == pair.user.id
    assert answer.role == access_options_pb2.ROLE_USER
    assert answer.expires_at == pair.access_token_expire_time.seconds


async def test_check_denies_admin_endpoints_and_unknown_ones(
    stubs: Stubs, auth: RunningAuth
) -> None:
    pair = await register_and_login(stubs.channel, "alice")
    for endpoint in (LIST_USERS, "/meshchat.chat.v1.ChatService/Nope", "/evil.Service/Do"):
        code, _ = await status_of(
            stubs.access.Check(
                access_pb2.CheckRequest(endpoint=endpoint), metadata=bearer(pair.access_token)
            )
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED, endpoint
    admin = await login_admin(stubs, auth)
    await stubs.access.Check(access_pb2.CheckRequest(endpoint=LIST_USERS), metadata=bearer(admin))
    await stubs.access.Check(access_pb2.CheckRequest(endpoint=SEND), metadata=bearer(admin))
    code, _ = await status_of(
        stubs.access.Check(
            access_pb2.CheckRequest(endpoint="/evil.Service/Do"), metadata=bearer(admin)
        )
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    "endpoint", ["", "SendMessage", "meshchat.chat.v1.ChatService/SendMessage"]
)
async def test_check_rejects_endpoints_that_are_not_method_names(
    stubs: Stubs, endpoint: str
) -> None:
    pair = await register_and_login(stubs.channel, "alice")
    code, details = await status_of(
        stubs.access.Check(
            access_pb2.CheckRequest(endpoint=endpoint), metadata=bearer(pair.access_token)
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("endpoint:")


async def test_check_without_a_token_is_unauthenticated(stubs: Stubs) -> None:
    code, _ = await status_of(stubs.access.Check(access_pb2.CheckRequest(endpoint=SEND)))
    assert code == grpc.StatusCode.UNAUTHENTICATED
