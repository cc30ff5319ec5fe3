"""Accounts for the unit tier: signed up through the use cases, promoted in the store."""

from __future__ import annotations

from meshchat_auth.domain import User, UserChanges
from meshchat_auth.service import AccountService
from meshchat_auth.store import AuthStore
from meshchat_runtime.identity import Principal, Role
from tests.support.passwords import PASSWORD

__all__ = ["make_admin", "principal", "sign_up"]


def principal(user: User) -> Principal:
    """The caller of a request made as ``user``."""
    return Principal(user.id, user.username, user.role, 0)


async def sign_up(
    accounts: AccountService, username: str, email: str = "", password: str = PASSWORD
) -> User:
    """Sign up without a caller, as the public CreateUser does."""
    return await accounts.create(
        None,
        username=username,
        email=email,
        password=password,
        password_confirm=password,
        role=None,
    )


async def make_admin(accounts: AccountService, store: AuthStore, username: str = "root") -> User:
    """Sign up a user and make it an admin directly in the store, as an operator would."""
    user = await sign_up(accounts, username)
    promoted = await store.update_user(user.id, UserChanges(role=Role.ADMIN), user.created_at)
    assert promoted is not None
    return promoted
