"""The ``reactmesh.v1.Aggregator`` servicer: one ordered Forward stream per edge over an Aggregator.

Each call gets a ForwardStream: a reader task feeds its EdgeBatches to the aggregator in order, and the call
writes the EdgeAcks the aggregator queues after each commit, in batch order. The call ends with OK after the edge
half-closes and every ack is out, or with the status the aggregator queued (UNAVAILABLE when it stops or a commit
fails, so the edge resends its unacked batches). Undecodable input ends the call with INVALID_ARGUMENT.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf.message import DecodeError as ProtobufDecodeError

from reactmesh.edge.errors import ServiceError, abort_with, internal, invalid_argument, unavailable
from reactmesh.region_node.aggregator.core import Aggregator
from reactmesh.region_node.aggregator.pending import ForwardStream
from reactmesh.v1 import aggregator_pb2, aggregator_pb2_grpc

log = logging.getLogger(__name__)


class AggregatorService(aggregator_pb2_grpc.AggregatorServicer):
    """Serves ``reactmesh.v1.Aggregator`` for one Aggregator."""

    SERVICE_NAME = "reactmesh.v1.Aggregator"

    def __init__(self, aggregator: Aggregator) -> None:
        self._aggregator = aggregator

    def add_to_server(self, server: grpc.aio.Server) -> None:
        aggregator_pb2_grpc.add_AggregatorServicer_to_server(self, server)

    async def Forward(
        self, request_iterator: AsyncIterator[aggregator_pb2.EdgeBatch], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[aggregator_pb2.EdgeAck]:
        agg = self._aggregator
        if not agg.serving:
            await abort_with(
                context,
                unavailable("aggregator is not serving", retry_after_ms=1000),
            )
            return
        fwd = ForwardStream()
        fwd.reader = asyncio.create_task(self._read(fwd, request_iterator))
        agg.attach(fwd)
        try:
            out = fwd.out
            while True:
                item = await out.get()
                if item is None:
                    return
                if isinstance(item, ServiceError):
                    await abort_with(context, item)
                    return
                yield item
        finally:
            fwd.reader.cancel()
            agg.detach(fwd)

    async def _read(self, fwd: ForwardStream, requests: AsyncIterator[aggregator_pb2.EdgeBatch]) -> None:
        agg = self._aggregator
        try:
            async for batch in requests:
                if fwd.dead or not agg.serving:
                    return
                agg.receive(fwd, batch)
            agg.end_of_input(fwd)
        except ProtobufDecodeError as exc:
            fwd.out.put_nowait(invalid_argument(f"undecodable EdgeBatch: {exc}"))
        except Exception as exc:
            log.exception("aggregator %s: Forward reader failed", agg.config.node_id)
            fwd.out.put_nowait(internal(f"aggregator failed reading: {exc!r}"))
