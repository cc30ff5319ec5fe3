"""The access rules declared in the protos, and the policy that reads them."""

from __future__ import annotations

import pytest

from meshchat.auth.v1 import access_options_pb2
from meshchat_runtime.access import Decision, default_policy
from meshchat_runtime.errors import PermissionDenied
from meshchat_runtime.identity import Principal, Role
from meshchat_runtime.peers import CLIENT_CERT_HEADER, ServiceCallers, certificate_dns_names

SEND = "/meshchat.chat.v1.ChatService/SendMessage"
LIST_USERS = "/meshchat.auth.v1.UserService/ListUsers"
WATCH = "/meshchat.auth.v1.AccountEventService/Watch"


def test_every_rpc_of_every_service_declares_a_rule() -> None:
    from meshchat.auth.v1 import access_pb2 as a
    from meshchat.auth.v1 import auth_pb2, events_pb2, users_pb2
    from meshchat.chat.v1 import chat_pb2

    policy = default_policy()
    files = (users_pb2, auth_pb2, a, events_pb2, chat_pb2)
    for file in (f.DESCRIPTOR for f in files):
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


def test_a_service_only_method_is_denied_to_every_user() -> None:
    policy = default_policy()
    admin = Principal("a", "root", Role.ADMIN, 0)
    assert policy.is_service_only(WATCH)
    assert not policy.is_service_only(SEND)
    assert policy.decide(WATCH, admin) is Decision.PERMISSION_DENIED
    with pytest.raises(PermissionDenied, match="only meshchat services may call"):
        policy.enforce(WATCH, admin)


@pytest.mark.parametrize(
    ("header", "names"),
    [
        ("Hash=ab;DNS=chat.meshchat.svc", ["chat.meshchat.svc"]),
        ('By=spiffe://a;Hash=ab;URI=spiffe://b;DNS=chat.x;DNS="chat,y"', ["chat.x", "chat,y"]),
        # One element per proxy: the last is the nearest one's, the sidecar's.
        ("Hash=1;DNS=forged.chat, Hash=2;DNS=edge.x", ["edge.x"]),
        ('Hash=1;Subject="CN=a,O=b";DNS=edge.x', ["edge.x"]),
        ("", []),
        ("garbage", []),
    ],
)
def test_the_client_certificates_dns_names(header: str, names: list[str]) -> None:
    assert certificate_dns_names(header) == names


def test_service_callers_by_identity() -> None:
    callers = ServiceCallers(["chat.x"])
    assert callers.identity_of([(CLIENT_CERT_HEADER, b"Hash=1;DNS=chat.x")]) == "chat.x"
    assert callers.identity_of([(CLIENT_CERT_HEADER, "Hash=1;DNS=edge.x")]) is None
    assert callers.identity_of([("x-other", "Hash=1;DNS=chat.x")]) is None
    assert ServiceCallers().identity_of([(CLIENT_CERT_HEADER, "DNS=chat.x")]) is None


def test_rules_are_visible_in_the_descriptors() -> None:
    from meshchat.auth.v1 import users_pb2

    method = users_pb2.DESCRIPTOR.services_by_name["UserService"].methods_by_name["ListUsers"]
    rule = method.GetOptions().Extensions[access_options_pb2.access]
    assert rule.min_role == access_options_pb2.ROLE_ADMIN
