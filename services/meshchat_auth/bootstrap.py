"""The auth service's composition root: the one place that builds and wires everything."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.sdk.trace import TracerProvider

from meshchat.auth.v1 import (
    access_pb2,
    access_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    events_pb2,
    events_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
)
from meshchat_auth.config import AuthConfig
from meshchat_auth.events import AccountEventFeed
from meshchat_auth.issuer import TokenIssuer
from meshchat_auth.keys import KeyRing
from meshchat_auth.passwords import HashingPool, PasswordHasher, pool_workers
from meshchat_auth.service import AccessChecker, AccountService, PasswordCheck, SessionService
from meshchat_auth.servicer import (
    AccessServicer,
    AccountEventServicer,
    AuthServicer,
    UserServicer,
)
from meshchat_auth.store import AuthStore, open_store
from meshchat_runtime.access import default_policy
from meshchat_runtime.clients import ClientAddresses
from meshchat_runtime.interceptors import AuthInterceptor, ErrorInterceptor
from meshchat_runtime.metrics import DatabaseMetrics, LimitRefusals
from meshchat_runtime.peers import ServiceCallers
from meshchat_runtime.resources import container_resources
from meshchat_runtime.server import GrpcServer, ServiceRegistration
from meshchat_runtime.timestamps import utc_now
from meshchat_runtime.tokens import TokenVerifier

__all__ = ["AuthApp", "build_server"]

SERVICE_NAMES = (
    users_pb2.DESCRIPTOR.services_by_name["UserService"].full_name,
    auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
    access_pb2.DESCRIPTOR.services_by_name["AccessService"].full_name,
    events_pb2.DESCRIPTOR.services_by_name["AccountEventService"].full_name,
)


@dataclass(slots=True)
class AuthApp:
    """A built auth service: its server, store and use cases."""

    config: AuthConfig
    server: GrpcServer
    store: AuthStore
    keys: KeyRing
    hashing: HashingPool
    accounts: AccountService
    sessions: SessionService

    async def start(self) -> None:
        """Bind and serve; on failure (a port in use), release everything before raising, so
        that the process can exit."""
        try:
            await self.server.start()
        except BaseException:
            await self.stop(grace=0)
            raise

    async def stop(self, grace: float | None = None) -> None:
        """Stop serving (in-flight RPCs get ``grace`` seconds), then release everything."""
        await self.server.stop(grace)
        await self.close()

    async def close(self) -> None:
        """Release the store and the hashing threads."""
        self.hashing.close()
        await self.store.close()

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT, then stop gracefully."""
        await self.start()
        await self.server.run_until_signalled(on_stop=self.close)


async def build_server(
    config: AuthConfig, tracer_provider: TracerProvider | None = None
) -> AuthApp:
    """Wire the auth service from its configuration. Opens the store; binds nothing yet."""
    keys = KeyRing.load(config.keys_dir, generate=config.generate_key)
    tracer = tracer_provider.get_tracer(__name__) if tracer_provider is not None else None
    database_metrics = DatabaseMetrics(config.database.dialect, tracer)
    store = await open_store(config.database, database_metrics)
    policy = default_policy()
    workers = pool_workers(config.hashing, container_resources(), config.argon2)
    hashing = HashingPool(workers, config.hashing.queue)
    hasher = PasswordHasher(config.argon2, hashing)
    refusals = LimitRefusals()
    passwords = PasswordCheck(store, hasher, config.tokens, utc_now, on_refusal=refusals.refused)
    issuer = TokenIssuer(keys, config.tokens)
    verifier = TokenVerifier(keys, issuer=config.tokens.issuer, audience=config.tokens.audience)
    checker = AccessChecker(verifier, store, policy)
    accounts = AccountService(store, hasher, passwords)
    sessions = SessionService(store, hasher, passwords, issuer, config.tokens)
    addresses = ClientAddresses(trust_forwarded_for=config.trust_forwarded_for)
    user_servicer = UserServicer(accounts, addresses)
    auth_servicer = AuthServicer(sessions, addresses)
    access_servicer = AccessServicer(checker)
    event_servicer = AccountEventServicer(AccountEventFeed(store))
    server = GrpcServer(
        config.server,
        services=[
            ServiceRegistration(
                SERVICE_NAMES[0],
                lambda s: users_pb2_grpc.add_UserServiceServicer_to_server(user_servicer, s),
            ),
            ServiceRegistration(
                SERVICE_NAMES[1],
                lambda s: auth_pb2_grpc.add_AuthServiceServicer_to_server(auth_servicer, s),
            ),
            ServiceRegistration(
                SERVICE_NAMES[2],
                lambda s: access_pb2_grpc.add_AccessServiceServicer_to_server(access_servicer, s),
            ),
            ServiceRegistration(
                SERVICE_NAMES[3],
                lambda s: events_pb2_grpc.add_AccountEventServiceServicer_to_server(
                    event_servicer, s
                ),
            ),
        ],
        interceptors=[
            ErrorInterceptor(),
            AuthInterceptor(
                checker, policy, service_callers=ServiceCallers(config.service_callers)
            ),
        ],
        tracer_provider=tracer_provider,
    )
    for collector in (database_metrics, refusals):
        server.registry.register(collector)
    server.add_dependency(store.ping)
    return AuthApp(config, server, store, keys, hashing, accounts, sessions)
