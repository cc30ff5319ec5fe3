"""Wrapping grpc.aio method handlers, the mechanism every server interceptor here uses."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio

__all__ = ["StreamBehavior", "UnaryBehavior", "iterate_stream", "wrap_handler"]

UnaryBehavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
StreamBehavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]


async def iterate_stream(
    behavior: Callable[..., Any], request: Any, context: grpc.aio.ServicerContext[Any, Any]
) -> AsyncIterator[Any]:
    """Yield what a response-streaming behavior produces, whether it is an async
    generator or a coroutine that writes with ``context.write``."""
    result = behavior(request, context)
    if inspect.isawaitable(result):
        await result
        return
    async for response in result:
        yield response


def wrap_handler(
    handler: grpc.RpcMethodHandler,
    unary: Callable[[UnaryBehavior], UnaryBehavior],
    stream: Callable[[StreamBehavior], StreamBehavior],
) -> grpc.RpcMethodHandler:
    """A copy of ``handler`` whose behavior is wrapped by ``unary`` or ``stream``.

    Request-streaming handlers receive the request iterator as their "request".
    """
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **kwargs)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), **kwargs)
    if handler.unary_stream is not None:
        inner = handler.unary_stream
        return grpc.unary_stream_rpc_method_handler(
            stream(lambda req, ctx: iterate_stream(inner, req, ctx)), **kwargs
        )
    inner_bidi = handler.stream_stream
    return grpc.stream_stream_rpc_method_handler(
        stream(lambda req, ctx: iterate_stream(inner_bidi, req, ctx)), **kwargs
    )
