"""A bare grpc.aio server-streaming server: the ceiling of writes to many streams.

Run as ``python -m benchmarks.stream_server PORT``; ``/bench.Stream/Push`` takes a duration
in seconds (as text) and writes a 100-byte message to its stream, as fast as the stream takes
them, for that long. No meshchat code runs in it, only the same server options.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator

import grpc
import grpc.aio

from meshchat_runtime.settings import HostPort, ServerSettings

METHOD = "/bench.Stream/Push"
PAYLOAD = b"x" * 100


async def push(
    request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
) -> AsyncIterator[bytes]:
    """Write PAYLOAD for the requested number of seconds."""
    end = time.perf_counter() + float(request.decode())
    while time.perf_counter() < end:
        yield PAYLOAD


async def serve(port: int) -> None:
    """Serve until SIGTERM."""
    settings = ServerSettings(listen=HostPort("127.0.0.1", port), metrics_listen=None)
    server = grpc.aio.server(options=settings.grpc_options())
    handler = grpc.method_handlers_generic_handler(
        "bench.Stream", {"Push": grpc.unary_stream_rpc_method_handler(push)}
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
