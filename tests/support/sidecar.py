"""A stand-in for a caller's Envoy sidecar, for the real-server tiers without Envoy: a gRPC
proxy on a loopback port that forwards every call, bytes as they are, to a target and sets
``x-forwarded-client-cert`` to a mesh identity, as the sidecar's SANITIZE_SET does (any such
header the caller sent is replaced). A test can cut it to take the target away and restore
it. The Envoy itself is tested in tests/mesh and tests/deploy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio

from meshchat_runtime.peers import CLIENT_CERT_HEADER

__all__ = ["Sidecar"]

Context = grpc.aio.ServicerContext[Any, Any]


class _Forward(grpc.GenericRpcHandler):
    def __init__(self, sidecar: Sidecar) -> None:
        self._sidecar = sidecar

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any]:
        return grpc.stream_stream_rpc_method_handler(
            self._sidecar.forwarder(handler_call_details.method)
        )


class Sidecar:
    """Forwards 127.0.0.1:<port> to ``target`` as the mesh identity ``identity``."""

    def __init__(self, target: str, identity: str) -> None:
        self._target = target
        self.identity = identity
        self._server: grpc.aio.Server | None = None
        self._channel: grpc.aio.Channel | None = None
        self._cut = False
        self._calls: set[grpc.aio.Call] = set()
        self.port = 0

    @property
    def address(self) -> str:
        """Its address, HOST:PORT."""
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self._channel = grpc.aio.insecure_channel(self._target)
        self._server = grpc.aio.server()
        self._server.add_generic_rpc_handlers((_Forward(self),))
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()

    async def stop(self) -> None:
        """Stop forwarding."""
        if self._server is not None:
            await self._server.stop(0)
        if self._channel is not None:
            await self._channel.close()

    def cut(self) -> None:
        """End every forwarded call with UNAVAILABLE and refuse new ones until restored."""
        self._cut = True
        for call in list(self._calls):
            call.cancel()

    def restore(self) -> None:
        """Forward again."""
        self._cut = False

    def forwarder(self, method: str) -> Any:
        """The handler that forwards calls of ``method``."""

        async def forward(requests: AsyncIterator[bytes], context: Context) -> AsyncIterator[bytes]:
            if self._cut:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "the sidecar is cut")
            assert self._channel is not None
            metadata = [
                (key, value)
                for key, value in context.invocation_metadata() or ()
                if key != CLIENT_CERT_HEADER and not key.startswith(":")
            ]
            metadata.append((CLIENT_CERT_HEADER, f"Hash=00;DNS={self.identity}"))
            forwarded: Any = self._channel.stream_stream(method)
            call: grpc.aio.StreamStreamCall[bytes, bytes] = forwarded(
                requests, metadata=metadata, timeout=context.time_remaining()
            )
            self._calls.add(call)
            try:
                async for response in call:
                    yield response
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if self._cut and code == grpc.StatusCode.CANCELLED:
                    code = grpc.StatusCode.UNAVAILABLE
                await context.abort(code, exc.details() or "")
            finally:
                self._calls.discard(call)

        return forward
