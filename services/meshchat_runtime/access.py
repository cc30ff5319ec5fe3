"""Access rules declared in the .proto files as the ``meshchat.auth.v1.access`` method option.

Both the auth service's AccessService.Check and every service's auth interceptor decide
with an :class:`AccessPolicy` built from the same compiled descriptors, so the rule of an
RPC is written once, next to the RPC, and visible through reflection.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from google.protobuf.descriptor import FileDescriptor

from meshchat.auth.v1 import access_options_pb2
from meshchat_runtime.errors import PermissionDenied, Unauthenticated
from meshchat_runtime.identity import Principal, Role

__all__ = ["UNAUTHENTICATED_MESSAGE", "AccessPolicy", "Decision", "MethodRule", "default_policy"]

UNAUTHENTICATED_MESSAGE = "this call needs an access token"
"""What a caller without a token hears, from the interceptors and AccessService.Check alike."""


@dataclass(frozen=True, slots=True)
class MethodRule:
    """Who may call one RPC: anyone (``public``), callers of at least ``min_role``, or only
    other meshchat services (``service``), identified by their mesh certificate."""

    public: bool
    min_role: Role | None
    service: bool = False


class Decision(enum.Enum):
    """The outcome of an access check."""

    ALLOW = "allow"
    UNAUTHENTICATED = "unauthenticated"
    PERMISSION_DENIED = "permission_denied"


class AccessPolicy:
    """The access rules of a set of gRPC services, keyed by full method name."""

    def __init__(self, rules: Mapping[str, MethodRule]) -> None:
        self._rules = dict(rules)

    @classmethod
    def from_files(cls, files: Iterable[FileDescriptor]) -> AccessPolicy:
        """Read the access option of every method of every service in ``files``.

        A method without the option gets no rule and is denied to everyone.
        """
        rules: dict[str, MethodRule] = {}
        for file in files:
            for service in file.services_by_name.values():
                for method in service.methods:
                    options = method.GetOptions()
                    if not options.HasExtension(access_options_pb2.access):
                        continue
                    rule = options.Extensions[access_options_pb2.access]
                    min_role = Role(rule.min_role) if rule.min_role else None
                    if not rule.public and min_role is None and not rule.service:
                        continue
                    rules[f"/{service.full_name}/{method.name}"] = MethodRule(
                        public=rule.public, min_role=min_role, service=rule.service
                    )
        return cls(rules)

    def rule_for(self, method: str) -> MethodRule | None:
        """The rule of ``method`` ("/package.Service/Method"), or None when it has none."""
        return self._rules.get(method)

    def is_service_only(self, method: str) -> bool:
        """Whether only other meshchat services may call ``method``."""
        rule = self._rules.get(method)
        return rule is not None and rule.service

    def is_public(self, method: str) -> bool:
        """Whether ``method`` may be called without a token."""
        rule = self._rules.get(method)
        return rule is not None and rule.public

    def methods(self) -> list[str]:
        """Every method that has a rule, sorted."""
        return sorted(self._rules)

    def decide(self, method: str, principal: Principal | None) -> Decision:
        """Whether ``principal`` (None: no valid token) may call ``method``.

        Unknown methods are denied, and so are service-only methods to every user. A caller
        without a valid token is UNAUTHENTICATED for any non-public method, known or not, so
        that probing reveals nothing.
        """
        rule = self._rules.get(method)
        if rule is not None and rule.public:
            return Decision.ALLOW
        if principal is None:
            return Decision.UNAUTHENTICATED
        if rule is None or rule.min_role is None:
            return Decision.PERMISSION_DENIED
        if principal.role.includes(rule.min_role):
            return Decision.ALLOW
        return Decision.PERMISSION_DENIED

    def enforce(self, method: str, principal: Principal | None) -> None:
        """Return when ``principal`` may call ``method``; raise Unauthenticated or
        PermissionDenied with the message the caller sees otherwise."""
        decision = self.decide(method, principal)
        if decision is Decision.UNAUTHENTICATED:
            raise Unauthenticated(UNAUTHENTICATED_MESSAGE)
        if decision is Decision.PERMISSION_DENIED:
            if method not in self._rules:
                raise PermissionDenied(f"{method} is not a known endpoint")
            if self.is_service_only(method):
                raise PermissionDenied(f"only meshchat services may call {method}")
            role = principal.role.name if principal is not None else "-"
            raise PermissionDenied(f"role {role} may not call {method}")


def default_policy() -> AccessPolicy:
    """The access rules of every meshchat service (auth and chat), from their descriptors."""
    from meshchat.auth.v1 import access_pb2, auth_pb2, events_pb2, users_pb2
    from meshchat.chat.v1 import chat_pb2

    return AccessPolicy.from_files(
        [
            users_pb2.DESCRIPTOR,
            auth_pb2.DESCRIPTOR,
            access_pb2.DESCRIPTOR,
            events_pb2.DESCRIPTOR,
            chat_pb2.DESCRIPTOR,
        ]
    )
