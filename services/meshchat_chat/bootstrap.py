"""The chat service's composition root: the one place that builds and wires everything."""

from __future__ import annotations

from dataclasses import dataclass

import grpc.aio
from opentelemetry.sdk.trace import TracerProvider

from meshchat.chat.v1 import chat_pb2
from meshchat_chat.authclient.authenticators import (
    JwksCache,
    LocalAuthenticator,
    RemoteAuthenticator,
)
from meshchat_chat.authclient.events import AccountEventFollower, FollowerCollector
from meshchat_chat.authclient.revocations import RevocationList, RevokingAuthenticator
from meshchat_chat.authclient.users import GrpcUserDirectory
from meshchat_chat.config import AuthzMode, ChatConfig
from meshchat_chat.fanout.cache import ChatCache
from meshchat_chat.fanout.hub import Hub, HubCollector
from meshchat_chat.fanout.listener import PostgresListener
from meshchat_chat.service import ChatLimits, ChatService
from meshchat_chat.servicer import ChatServicer, add_to_server
from meshchat_chat.store import Store, open_store
from meshchat_runtime.access import default_policy
from meshchat_runtime.interceptors import Authenticator, AuthInterceptor, ErrorInterceptor
from meshchat_runtime.metrics import DatabaseMetrics, DeliveryMetrics, JwksCollector
from meshchat_runtime.server import GrpcServer, ServiceRegistration
from meshchat_runtime.telemetry import StreamSpanEvents, client_interceptors
from meshchat_runtime.tokens import TokenVerifier

__all__ = ["ChatApp", "build_server"]

# Reconnect to the auth service within a couple of seconds after an outage (gRPC's default
# backoff grows to two minutes).
AUTH_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
]
SERVICE_NAME = chat_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name


@dataclass(slots=True)
class ChatApp:
    """A built chat service: its server and the parts it owns."""

    config: ChatConfig
    server: GrpcServer
    store: Store
    hub: Hub
    cache: ChatCache
    auth_channel: grpc.aio.Channel
    jwks: JwksCache | None
    listener: PostgresListener | None
    follower: AccountEventFollower

    async def start(self) -> None:
        """Fetch the keys, start listening, bind and serve; on failure (a port in use),
        release everything before raising, so that the process can exit."""
        try:
            if self.jwks is not None:
                await self.jwks.start()
            if self.listener is not None:
                await self.listener.start()
            await self.follower.start()
            await self.server.start()
        except BaseException:
            await self.stop(grace=0)
            raise

    async def stop(self, grace: float | None = None) -> None:
        """Stop serving (in-flight RPCs get ``grace`` seconds), then release everything."""
        await self.server.stop(grace)
        await self.close()

    async def close(self) -> None:
        """Release the follower, the listener, the keys' refresher, the auth channel and the
        store."""
        await self.follower.stop()
        if self.listener is not None:
            await self.listener.stop()
        if self.jwks is not None:
            await self.jwks.stop()
        await self.auth_channel.close()
        await self.store.close()

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT, then stop gracefully."""
        await self.start()
        await self.server.run_until_signalled(on_stop=self.close)


async def build_server(
    config: ChatConfig, tracer_provider: TracerProvider | None = None
) -> ChatApp:
    """Wire the chat service from its configuration. Opens the store; binds nothing yet."""
    tracer = tracer_provider.get_tracer(__name__) if tracer_provider is not None else None
    database_metrics = DatabaseMetrics(config.database.dialect, tracer)
    store = await open_store(
        config.database, pool_size=config.database_pool_size, metrics=database_metrics
    )
    auth_channel = grpc.aio.insecure_channel(
        str(config.auth_addr),
        options=AUTH_CHANNEL_OPTIONS,
        interceptors=client_interceptors(tracer_provider),
    )
    jwks: JwksCache | None = None
    authenticator: Authenticator
    if config.authz_mode is AuthzMode.LOCAL:
        jwks = JwksCache(
            auth_channel,
            archive=store,
            refresh_interval=config.jwks_refresh_interval,
            min_refetch_interval=config.jwks_min_refetch_interval,
            max_age=config.jwks_max_age,
        )
        verifier = TokenVerifier(jwks, issuer=config.issuer, audience=config.audience)
        authenticator = LocalAuthenticator(verifier, jwks)
    else:
        authenticator = RemoteAuthenticator(auth_channel, ttl=config.authz_cache_ttl)
    revocations = RevocationList()
    # On PostgreSQL the cache waits for the listener: announcements keep it exact.
    cache = ChatCache(active=config.database.dialect == "sqlite")
    hub = Hub(store, queue_size=config.stream_queue_size, cache=cache)
    listener: PostgresListener | None = None
    if config.database.dialect == "postgresql":
        listener = PostgresListener(
            config.database.url, hub, check_interval=config.listen_check_interval
        )
    deliveries = DeliveryMetrics()
    chats = ChatService(
        store,
        GrpcUserDirectory(auth_channel),
        hub,
        ChatLimits(
            max_message_length=config.max_message_length,
            heartbeat_interval=config.heartbeat_interval,
            max_streams_per_user=config.max_streams_per_user,
            send_burst=config.send_burst,
            send_interval=config.send_interval,
            max_chats_per_user=config.max_chats_per_user,
            max_members_per_chat=config.max_members_per_chat,
        ),
        revocations,
        deliveries=StreamSpanEvents(deliveries) if tracer_provider is not None else deliveries,
        cache=cache,
        settle=listener.barrier if listener is not None else None,
    )
    follower = AccountEventFollower(auth_channel, chats)
    servicer = ChatServicer(chats)
    server = GrpcServer(
        config.server,
        services=[ServiceRegistration(SERVICE_NAME, lambda s: add_to_server(servicer, s))],
        interceptors=[
            ErrorInterceptor(),
            AuthInterceptor(RevokingAuthenticator(authenticator, revocations), default_policy()),
        ],
        tracer_provider=tracer_provider,
    )
    collectors = (HubCollector(hub), FollowerCollector(follower), deliveries, database_metrics)
    for collector in collectors:
        server.registry.register(collector)
    if jwks is not None:
        server.registry.register(JwksCollector(jwks.age, jwks.max_age))
    server.on_stop(hub.close_streams)
    if listener is not None:
        # First: it answers at once, while a ping of a lost database waits for its timeout.
        server.add_dependency(listener.probe)
    server.add_dependency(store.ping)
    if jwks is not None:
        # Without usable keys every call would fail: such a replica is not ready.
        server.add_dependency(jwks.probe)
    return ChatApp(config, server, store, hub, cache, auth_channel, jwks, listener, follower)
