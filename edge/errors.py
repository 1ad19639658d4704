"""reactmesh's service-level error vocabulary.

Expected failures carry a gRPC status code and a message a client can act on; a servicer raises
them and ``abort_with`` turns them into the call's status in one place. Build them with the
constructors below (one per status the servers use, each saying when it is used) rather than
``ServiceError(grpc.StatusCode...., ...)``, so every status means the same thing in every service.
A ``retry_after_ms`` travels as ``retry-after-ms`` trailing metadata, which the SDK honours.
Misuse of the Python API (wrong types, calling after close) raises ordinary TypeError/RuntimeError
instead; a bad configuration raises ConfigError.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
from google.protobuf.message import DecodeError

from reactmesh.edge.handlers import wrap_handler
from reactmesh.merge.errors import ConfigError

__all__ = [
    "RETRY_AFTER_KEY",
    "ConfigError",
    "RejectingUndecodable",
    "ServiceError",
    "abort_with",
    "deadline_exceeded",
    "failed_precondition",
    "internal",
    "invalid_argument",
    "not_found",
    "permission_denied",
    "resource_exhausted",
    "unauthenticated",
    "unavailable",
]

RETRY_AFTER_KEY = "retry-after-ms"
"""Trailing-metadata key of a ServiceError's ``retry_after_ms`` (decimal milliseconds)."""


@dataclass
class ServiceError(Exception):
    """Raised by a servicer for an expected failure the caller should see as a gRPC status."""

    code: grpc.StatusCode
    message: str
    retry_after_ms: int | None = None

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


def invalid_argument(message: str) -> ServiceError:
    """The request is malformed (undecodable bytes, an id or field outside its wire form, a second session
    on one stream); resending it unchanged will fail again."""
    return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, message)


def resource_exhausted(message: str, retry_after_ms: int | None = None) -> ServiceError:
    """A bound was reached: the server is overloaded (in-flight batches, subscribers), so retry after
    ``retry_after_ms``; or, without ``retry_after_ms``, a per-object cap that waiting does not lift (polls
    per stream)."""
    return ServiceError(grpc.StatusCode.RESOURCE_EXHAUSTED, message, retry_after_ms)


def unauthenticated(message: str) -> ServiceError:
    """Missing, malformed, forged or expired credentials in the ``authorization`` metadata."""
    return ServiceError(grpc.StatusCode.UNAUTHENTICATED, message)


def permission_denied(message: str) -> ServiceError:
    """The caller is authenticated but may not do this, e.g. vote as a viewer other than the token's subject."""
    return ServiceError(grpc.StatusCode.PERMISSION_DENIED, message)


def not_found(message: str) -> ServiceError:
    """The named object does not exist here: an unknown poll, or a stream this node has no data for."""
    return ServiceError(grpc.StatusCode.NOT_FOUND, message)


def failed_precondition(message: str) -> ServiceError:
    """The object is not in a state that allows this: a vote on a closed poll, a new poll on a drained stream.
    Retrying does not help until the state changes."""
    return ServiceError(grpc.StatusCode.FAILED_PRECONDITION, message)


def unavailable(message: str, retry_after_ms: int | None = None) -> ServiceError:
    """The server cannot serve right now (starting, shutting down, a commit or a file write failed); the
    client should resend what is unacknowledged, here after ``retry_after_ms`` when set, or elsewhere."""
    return ServiceError(grpc.StatusCode.UNAVAILABLE, message, retry_after_ms)


def deadline_exceeded(message: str) -> ServiceError:
    """A server-side time limit ran out before the operation finished; the one status every server-side timeout
    maps to. No server raises it yet."""
    return ServiceError(grpc.StatusCode.DEADLINE_EXCEEDED, message)


def internal(message: str) -> ServiceError:
    """A bug: a handler failed in a way no request should cause (the details are logged on the server)."""
    return ServiceError(grpc.StatusCode.INTERNAL, message)


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], error: ServiceError) -> None:
    """End the call with ``error``'s status; attaches ``retry-after-ms`` trailing metadata if set."""
    if error.retry_after_ms is not None:
        context.set_trailing_metadata(((RETRY_AFTER_KEY, str(error.retry_after_ms)),))
    await context.abort(error.code, error.message)


_Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


class _Undecodable:
    """What a strict request deserializer returns for bytes that do not parse."""

    def __init__(self, message: str) -> None:
        self.message = message


def _strict(handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    """``handler`` with undecodable unary requests answered INVALID_ARGUMENT (stream requests are left as they are:
    their handlers read messages themselves)."""
    parse = handler.request_deserializer
    if handler.request_streaming or parse is None:
        return handler
    kind = getattr(getattr(parse, "__self__", None), "__name__", "request")

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as exc:
            return _Undecodable(f"undecodable {kind}: {exc}")

    @contextlib.asynccontextmanager
    async def refuse_undecodable(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
        if isinstance(request, _Undecodable):
            await abort_with(context, invalid_argument(request.message))
        yield

    return wrap_handler(handler, refuse_undecodable, request_deserializer=deserialize)


class _StrictGeneric(grpc.GenericRpcHandler):
    def __init__(self, inner: grpc.GenericRpcHandler) -> None:
        self._inner = inner

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = self._inner.service(handler_call_details)
        return _strict(handler) if handler is not None else None


class RejectingUndecodable:
    """A stand-in for a ``grpc.aio.Server`` while servicers register on it: their unary requests that do not
    decode end with INVALID_ARGUMENT (and no server-side traceback) instead of grpc's UNKNOWN."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(tuple(_StrictGeneric(h) for h in handlers))

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        self._server.add_registered_method_handlers(service, {name: _strict(h) for name, h in handlers.items()})
