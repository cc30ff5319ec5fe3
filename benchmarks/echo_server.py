"""A bare grpc.aio echo server: the ceiling the chat service is compared with.

Run as ``python -m benchmarks.echo_server PORT``; it serves ``/bench.Echo/Echo`` (bytes in,
the same bytes out) with the same server options as the meshchat services.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import grpc
import grpc.aio

from meshchat_runtime.settings import HostPort, ServerSettings

METHOD = "/bench.Echo/Echo"


async def echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    """Return the request."""
    return request


async def serve(port: int) -> None:
    """Serve until SIGTERM."""
    settings = ServerSettings(listen=HostPort("127.0.0.1", port), metrics_listen=None)
    server = grpc.aio.server(options=settings.grpc_options())
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(str(settings.listen))
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(0)


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
