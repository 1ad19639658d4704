"""The SDK's errors: which server statuses end a session, and the error that reports them.

Everything else a server answers (UNAVAILABLE, a dropped connection, RESOURCE_EXHAUSTED with or without
``retry-after-ms``, a stalled stream) is retried by the SDK and never surfaces as an exception. Misuse of the
API raises ValueError (a malformed argument) or RuntimeError (a closed client); a bad setting raises
ConfigError naming the field.
"""

from __future__ import annotations

from typing import Any

import grpc

from reactmesh.edge.errors import RETRY_AFTER_KEY

__all__ = ["FATAL_CODES", "ClientError", "retry_after_s"]

FATAL_CODES = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)
"""Statuses that resending cannot fix: the client stops and reports them."""


class ClientError(Exception):
    """Raised by ``flush()`` and ``subscribe()`` (and passed to ``on_error``) when a server ends the stream with
    a status that resending cannot fix (see ``FATAL_CODES``); ``code`` and ``details`` are the server's. Also
    set, with INTERNAL and address ``<client>``, when one of the client's own tasks fails."""

    def __init__(self, code: grpc.StatusCode, details: str, address: str) -> None:
        super().__init__(f"{address}: {code.name}: {details}")
        self.code = code
        self.details = details
        self.address = address


def retry_after_s(metadata: Any) -> float | None:
    """The ``retry-after-ms`` a server sent in trailing ``metadata``, in seconds; None if absent or garbled."""
    if not metadata:
        return None
    for key, value in metadata:
        if key == RETRY_AFTER_KEY:
            try:
                return max(0, int(value)) / 1000.0
            except ValueError:
                return None
    return None
