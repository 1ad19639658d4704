"""reactmesh's service-level error vocabulary.

Expected failures carry a gRPC status code and a message a client can act on; a servicer raises
them and ``abort_with`` turns them into the call's status in one place. Misuse of the Python API
(wrong types, calling after close) raises ordinary TypeError/RuntimeError instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from reactmesh.merge.errors import ConfigError

__all__ = [
    "RETRY_AFTER_KEY",
    "ConfigError",
    "ServiceError",
    "abort_with",
    "failed_precondition",
    "invalid_argument",
    "not_found",
    "resource_exhausted",
    "unauthenticated",
]


@dataclass
class ServiceError(Exception):
    """Raised by a servicer for an expected failure the caller should see as a gRPC status."""

    code: grpc.StatusCode
    message: str
    retry_after_ms: int | None = None

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


def invalid_argument(message: str) -> ServiceError:
    """The request is malformed; resending it unchanged will fail again."""
    return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, message)


def resource_exhausted(message: str, retry_after_ms: int) -> ServiceError:
    """The server is overloaded; retry after ``retry_after_ms`` (sent as trailing metadata)."""
    return ServiceError(grpc.StatusCode.RESOURCE_EXHAUSTED, message, retry_after_ms)


def unauthenticated(message: str) -> ServiceError:
    """Missing or bad credentials in the ``authorization`` metadata."""
    return ServiceError(grpc.StatusCode.UNAUTHENTICATED, message)


def not_found(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.NOT_FOUND, message)


def failed_precondition(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.FAILED_PRECONDITION, message)


RETRY_AFTER_KEY = "retry-after-ms"


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], error: ServiceError) -> None:
    """End the call with ``error``'s status; attaches ``retry-after-ms`` trailing metadata if set."""
    if error.retry_after_ms is not None:
        context.set_trailing_metadata(((RETRY_AFTER_KEY, str(error.retry_after_ms)),))
    await context.abort(error.code, error.message)
