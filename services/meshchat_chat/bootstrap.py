"""The chat service's composition root: the one place that builds and wires everything."""

from __future__ import annotations

from dataclasses import dataclass

import grpc.aio
from opentelemetry.sdk.trace import TracerProvider

from meshchat.chat.v1 import chat_pb2, chat_pb2_grpc
from meshchat_chat.authclient.authenticators import (
    JwksCache,
    LocalAuthenticator,
    RemoteAuthenticator,
)
from meshchat_chat.authclient.users import GrpcUserDirectory
from meshchat_chat.config import AuthzMode, ChatConfig
from meshchat_chat.fanout.hub import Hub, HubCollector
from meshchat_chat.fanout.listener import PostgresListener
from meshchat_chat.service import ChatLimits, ChatService
from meshchat_chat.servicer import ChatServicer
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
    auth_channel: grpc.aio.Channel
    jwks: JwksCache | None
    listener: PostgresListener | None

    async def start(self) -> None:
        """Fetch the keys, start listening, bind and serve; on failure (a port in use),
        release everything before raising, so that the process can exit."""
        try:
            if self.jwks is not None:
                await self.jwks.start()
            if self.listener is not None:
                await self.listener.start()
            await self.server.start()
        except BaseException:
            await self.stop(grace=0)
            raise

    async def stop(self, grace: float | None = None) -> None:
        """Stop serving (in-flight RPCs get ``grace`` seconds), then release everything."""
        await self.server.stop(grace)
        await self.close()

    async def close(self) -> None:
        """Release the listener, the keys' refresher, the auth channel and the store."""
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
            refresh_interval=config.jwks_refresh_interval,
            min_refetch_interval=config.jwks_min_refetch_interval,
            max_age=config.jwks_max_age,
        )
        verifier = TokenVerifier(jwks, issuer=config.issuer, audience=config.audience)
        authenticator = LocalAuthenticator(verifier, jwks)
    else:
        authenticator = RemoteAuthenticator(auth_channel, ttl=config.authz_cache_ttl)
    hub = Hub(store, queue_size=config.stream_queue_size)
    deliveries = DeliveryMetrics()
    chats = ChatService(
        store,
        GrpcUserDirectory(auth_channel),
        hub,
        ChatLimits(
            max_message_length=config.max_message_length,
            heartbeat_interval=config.heartbeat_interval,
        ),
        deliveries=StreamSpanEvents(deliveries) if tracer_provider is not None else deliveries,
    )
    servicer = ChatServicer(chats)
    server = GrpcServer(
        config.server,
        services=[
            ServiceRegistration(
                SERVICE_NAME, lambda s: chat_pb2_grpc.add_ChatServiceServicer_to_server(servicer, s)
            )
        ],
        interceptors=[ErrorInterceptor(), AuthInterceptor(authenticator, default_policy())],
        tracer_provider=tracer_provider,
    )
    for collector in (HubCollector(hub), deliveries, database_metrics):
        server.registry.register(collector)
    if jwks is not None:
        server.registry.register(JwksCollector(jwks.age, jwks.max_age))
    server.on_stop(hub.close_streams)
    listener: PostgresListener | None = None
    if config.database.dialect == "postgresql":
        listener = PostgresListener(
            config.database.url, hub, check_interval=config.listen_check_interval
        )
        # First: it answers at once, while a ping of a lost database waits for its timeout.
        server.add_dependency(listener.probe)
    server.add_dependency(store.ping)
    return ChatApp(config, server, store, hub, auth_channel, jwks, listener)
