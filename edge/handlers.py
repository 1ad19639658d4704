"""Wrapping gRPC method handlers: one way for every layer that acts around a servicer's calls.

``wrap_handler(handler, hook)`` returns ``handler`` with each call run inside ``async with hook(request, context)``,
whatever the method's kind (unary or stream request, coroutine or async-generator behaviour). A hook may abort the
call before it runs (admission checks) or observe how it ended (metrics). Used by the undecodable-request guard
(edge.errors), the peer-certificate guard (region_node.tls) and the gRPC server metrics.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import grpc

Hook = Callable[[Any, "grpc.aio.ServicerContext[Any, Any]"], AbstractAsyncContextManager[object]]


def wrap_handler(
    handler: grpc.RpcMethodHandler[Any, Any],
    hook: Hook,
    *,
    request_deserializer: Callable[[bytes], Any] | None = None,
) -> grpc.RpcMethodHandler[Any, Any]:
    """``handler`` with every call inside ``hook``; ``request_deserializer`` replaces the handler's when given."""

    def wrap(behavior: Any) -> Any:
        if inspect.isasyncgenfunction(behavior):

            async def gen(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                async with hook(request, context):
                    async for item in behavior(request, context):
                        yield item

            return gen

        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async with hook(request, context):
                return await behavior(request, context)

        return call

    parse = request_deserializer or handler.request_deserializer
    serialize = handler.response_serializer
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary), parse, serialize)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(wrap(handler.unary_stream), parse, serialize)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary), parse, serialize)
    return grpc.stream_stream_rpc_method_handler(wrap(handler.stream_stream), parse, serialize)
