"""The ``reactmesh.v1.Broadcast`` servicer: Subscribe streams of pre-serialized frames from a Broadcaster.

Frames leave as the bytes the broadcaster serialized once for all of a stream's subscribers (an identity
serializer), so fan-out costs no protobuf work per subscriber. A refused subscription (bad stream id, too many
subscribers) ends the call with the ServiceError's status.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from reactmesh.edge.errors import ServiceError, abort_with
from reactmesh.edge.limits import is_stream_id
from reactmesh.region_node.broadcaster.core import Broadcaster
from reactmesh.v1 import broadcast_pb2


def _identity(data: bytes) -> bytes:
    return data


class BroadcastService:
    """Serves ``reactmesh.v1.Broadcast`` for one Broadcaster."""

    SERVICE_NAME = "reactmesh.v1.Broadcast"

    def __init__(self, broadcaster: Broadcaster) -> None:
        self._broadcaster = broadcaster

    async def _subscribe(
        self, request: broadcast_pb2.SubscribeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        try:
            if is_stream_id(request.stream_id):
                await self._broadcaster.warm(request.stream_id)  # a stream that left memory: its totals first
            sub = self._broadcaster.subscribe(request)
        except ServiceError as err:
            await abort_with(context, err)
            return
        try:
            while (data := await sub.get()) is not None:
                yield data
        finally:
            sub.close()

    def add_to_server(self, server: grpc.aio.Server) -> None:
        """Serve ``reactmesh.v1.Broadcast`` on ``server``; frames go out as pre-serialized bytes."""
        handler = grpc.unary_stream_rpc_method_handler(
            self._subscribe,
            request_deserializer=broadcast_pb2.SubscribeRequest.FromString,
            response_serializer=_identity,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(self.SERVICE_NAME, {"Subscribe": handler}),)
        )
