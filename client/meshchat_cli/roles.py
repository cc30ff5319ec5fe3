"""The roles of meshchat's users by the names the CLI shows and stores: ``user``, ``admin``."""

from __future__ import annotations

from meshchat.auth.v1 import access_options_pb2

__all__ = ["role_name"]


def role_name(role: access_options_pb2.Role.ValueType) -> str:
    """``user`` or ``admin``."""
    return access_options_pb2.Role.Name(role).removeprefix("ROLE_").lower()
