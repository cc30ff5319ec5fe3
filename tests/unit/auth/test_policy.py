"""The access rules declared in the protos, and the policy that reads them."""

from __future__ import annotations

from meshchat.auth.v1 import access_options_pb2
from meshchat_runtime.access import Decision, default_policy
from meshchat_runtime.identity import Principal, Role

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
