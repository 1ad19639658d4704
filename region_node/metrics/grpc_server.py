"""gRPC server metrics: calls started and handled per method and status, and handling time, per role's server.

``GrpcServerMetrics.interceptor(role)`` is a grpc.aio server interceptor, installed first on every server of a node
(region_node.node), so it sees every call, refused ones included:

- ``reactmesh_grpc_server_started_total{region, role, service, method}``
- ``reactmesh_grpc_server_handled_total{region, role, service, method, code}``: ``code`` is the status the call
  ended with (OK, INVALID_ARGUMENT, UNAUTHENTICATED, ... ; CANCELLED when the client went away; UNKNOWN for an
  exception no status was set for);
- ``reactmesh_grpc_server_handling_seconds{region, role, service, method}``: start to end (for a stream, its
  whole life).

Names and labels follow go-grpc-prometheus (grpc_server_started_total, grpc_server_handled_total) with the
``reactmesh_`` prefix and ``role`` added, since one process serves several roles on several ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, cast

import grpc
from prometheus_client.core import Metric

from reactmesh.edge.handlers import wrap_handler
from reactmesh.region_node.metrics.families import DURATION_BUCKETS, Histogram, HistogramChild, counter

Labels = tuple[str, str, str]
"""(role, service, method)."""


class GrpcServerMetrics:
    """The counters of every server of one process; a prometheus collector."""

    def __init__(self, region: str) -> None:
        self._region = region
        self.started: dict[Labels, int] = {}
        self.handled: dict[tuple[str, str, str, str], int] = {}
        self._seconds = Histogram(
            "reactmesh_grpc_server_handling_seconds",
            "gRPC calls, start to end (a stream's whole life), by role, service and method.",
            ["region", "role", "service", "method"],
            (*DURATION_BUCKETS, 10.0, 60.0, 600.0),
        )
        self._children: dict[Labels, HistogramChild] = {}

    def interceptor(self, role: str) -> grpc.aio.ServerInterceptor:
        return _Interceptor(self, role)

    def _start(self, labels: Labels) -> None:
        self.started[labels] = self.started.get(labels, 0) + 1

    def _end(self, labels: Labels, code: grpc.StatusCode, seconds: float) -> None:
        key = (*labels, code.name)
        self.handled[key] = self.handled.get(key, 0) + 1
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self._seconds.child(self._region, *labels)
        child.observe(seconds)

    def collect(self) -> Iterator[Metric]:
        r = self._region
        started = counter(
            "reactmesh_grpc_server_started_total", "gRPC calls started.", ("region", "role", "service", "method")
        )
        for labels, n in sorted(self.started.items()):
            started.add_metric([r, *labels], n)
        yield started
        handled = counter(
            "reactmesh_grpc_server_handled_total",
            "gRPC calls ended, by status code.",
            ("region", "role", "service", "method", "code"),
        )
        for key, n in sorted(self.handled.items()):
            handled.add_metric([r, *key], n)
        yield handled
        yield self._seconds.family()


class _Interceptor(grpc.aio.ServerInterceptor):
    def __init__(self, metrics: GrpcServerMetrics, role: str) -> None:
        self._metrics = metrics
        self._role = role

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        _, service, method = [*handler_call_details.method.split("/"), "", ""][:3]
        return _measured(handler, self._metrics, (self._role, service, method))


def _code_of(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException | None) -> grpc.StatusCode:
    code = cast("grpc.StatusCode | None", context.code())  # None until a status is set
    if code is not None:
        return code
    if isinstance(exc, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.OK if exc is None else grpc.StatusCode.UNKNOWN


def _measured(
    handler: grpc.RpcMethodHandler[Any, Any], metrics: GrpcServerMetrics, labels: Labels
) -> grpc.RpcMethodHandler[Any, Any]:
    @contextlib.asynccontextmanager
    async def measure(_: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
        metrics._start(labels)
        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            failure = exc
            raise
        finally:
            metrics._end(labels, _code_of(context, failure), time.perf_counter() - started)

    return wrap_handler(handler, measure)
