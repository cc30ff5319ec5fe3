"""The unit tier: the use cases of both services on in-memory fakes. No servers, no
databases, no argon2: the whole directory runs in seconds."""

from __future__ import annotations

import pytest

from meshchat_auth.config import TokenPolicy
from meshchat_auth.issuer import TokenIssuer
from meshchat_auth.keys import KeyRing
from meshchat_auth.service import AccessChecker, AccountService, PasswordCheck, SessionService
from meshchat_chat.authclient.revocations import RevocationList
from meshchat_chat.fanout.hub import Hub
from meshchat_chat.service import ChatLimits, ChatService
from meshchat_runtime.access import default_policy
from meshchat_runtime.tokens import TokenVerifier
from tests.support.clock import FakeClock
from tests.support.fakes import MemoryAuthStore, MemoryChatStore, MemoryUserDirectory
from tests.support.fakes.hasher import FakePasswordHasher
from tests.support.keys import memory_key_ring

# -- auth -------------------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    """The use cases' time, moved by the test."""
    return FakeClock()


@pytest.fixture
def auth_store() -> MemoryAuthStore:
    """The auth service's store."""
    return MemoryAuthStore()


@pytest.fixture
def hasher() -> FakePasswordHasher:
    """The password hasher."""
    return FakePasswordHasher()


@pytest.fixture
def policy() -> TokenPolicy:
    """The token policy; override to test other limits."""
    return TokenPolicy(max_failed_logins=3, failed_login_window=60)


@pytest.fixture(scope="session")
def keys() -> KeyRing:
    """Signing keys (generating one is the slow part, so the session shares them)."""
    return memory_key_ring()


@pytest.fixture
def passwords(
    auth_store: MemoryAuthStore, hasher: FakePasswordHasher, policy: TokenPolicy, clock: FakeClock
) -> PasswordCheck:
    """Password checks behind the failed-attempt limits."""
    return PasswordCheck(auth_store, hasher, policy, clock)


@pytest.fixture
def accounts(
    auth_store: MemoryAuthStore,
    hasher: FakePasswordHasher,
    passwords: PasswordCheck,
    clock: FakeClock,
) -> AccountService:
    """Account use cases."""
    return AccountService(auth_store, hasher, passwords, clock)


@pytest.fixture
def sessions(
    auth_store: MemoryAuthStore,
    hasher: FakePasswordHasher,
    passwords: PasswordCheck,
    keys: KeyRing,
    policy: TokenPolicy,
    clock: FakeClock,
) -> SessionService:
    """Session use cases."""
    return SessionService(auth_store, hasher, passwords, TokenIssuer(keys, policy), policy, clock)


@pytest.fixture
def access(
    auth_store: MemoryAuthStore, keys: KeyRing, policy: TokenPolicy, clock: FakeClock
) -> AccessChecker:
    """Access-token checks."""
    verifier = TokenVerifier(
        keys, issuer=policy.issuer, audience=policy.audience, clock=clock.timestamp
    )
    return AccessChecker(verifier, auth_store, default_policy())


# -- chat -------------------------------------------------------------------------------------


@pytest.fixture
def chat_store() -> MemoryChatStore:
    """The chat service's store."""
    return MemoryChatStore()


@pytest.fixture
def directory() -> MemoryUserDirectory:
    """The users the auth service knows."""
    return MemoryUserDirectory()


@pytest.fixture
def hub(chat_store: MemoryChatStore) -> Hub:
    """The in-process fan-out."""
    return Hub(chat_store, queue_size=16)


@pytest.fixture
def chat_limits() -> ChatLimits:
    """The chat use cases' limits: quick heartbeats, no send rate limit (floods are what
    several tests are about); override with ``@pytest.mark.parametrize("chat_limits", ...)``."""
    return ChatLimits(heartbeat_interval=0.05, send_interval=0.0)


@pytest.fixture
def chats(
    chat_store: MemoryChatStore,
    directory: MemoryUserDirectory,
    hub: Hub,
    chat_limits: ChatLimits,
) -> ChatService:
    """Chat use cases."""
    return ChatService(chat_store, directory, hub, chat_limits, RevocationList())
