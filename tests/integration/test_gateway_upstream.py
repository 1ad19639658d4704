"""The gateway against scripted upstreams (a fake Broadcast and Ingest server on loopback).

What they prove: an upstream Subscribe that breaks is resumed with the last (epoch, seq), so the socket sees the
missed frames and no second snapshot; an overloaded edge (RESOURCE_EXHAUSTED + retry-after-ms) is 429 with
Retry-After, an unavailable one 503.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
import websockets

from reactmesh.edge.auth import Authorizer
from reactmesh.edge.errors import RETRY_AFTER_KEY
from reactmesh.region_node.gateway.app import Gateway
from reactmesh.region_node.gateway.config import GatewayConfig
from reactmesh.v1 import broadcast_pb2, broadcast_pb2_grpc, common_pb2, ingest_pb2, ingest_pb2_grpc
from tests.support.polling import eventually

Frame = broadcast_pb2.Frame


def frame(kind: Any, seq: int, heart: int) -> broadcast_pb2.Frame:
    return Frame(
        stream_id="s1", epoch=7, seq=seq, kind=kind, counts=[common_pb2.ReactionCount(emoji="heart", count=heart)]
    )


class Upstreams(broadcast_pb2_grpc.BroadcastServicer, ingest_pb2_grpc.IngestServicer):
    """Subscribe: the first call sends a snapshot and a delta, then breaks; later calls send one delta and stay
    open. Send: ends with ``send_status`` (and retry-after-ms ``retry_after``)."""

    def __init__(self) -> None:
        self.requests: list[broadcast_pb2.SubscribeRequest] = []
        self.send_status = grpc.StatusCode.RESOURCE_EXHAUSTED
        self.retry_after: str | None = "1500"

    async def Subscribe(self, request: Any, context: Any) -> AsyncIterator[broadcast_pb2.Frame]:  # type: ignore[override]
        self.requests.append(request)
        if len(self.requests) == 1:
            yield frame(Frame.SNAPSHOT, 1, 2)
            yield frame(Frame.DELTA, 2, 3)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "broadcaster restarting")
        yield frame(Frame.DELTA, request.resume.seq + 1, 1)
        await asyncio.Event().wait()

    async def Send(self, request: Any, context: Any) -> ingest_pb2.BatchAck:
        if self.retry_after is not None:
            context.set_trailing_metadata(((RETRY_AFTER_KEY, self.retry_after),))
        await context.abort(self.send_status, "edge overloaded; resend unacknowledged batches later")
        raise AssertionError("unreachable")


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[Upstreams, Gateway]]:
    upstreams = Upstreams()
    server = grpc.aio.server()
    broadcast_pb2_grpc.add_BroadcastServicer_to_server(upstreams, server)
    ingest_pb2_grpc.add_IngestServicer_to_server(upstreams, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    config = GatewayConfig(
        listen="127.0.0.1:0", edge=f"127.0.0.1:{port}", broadcaster=f"127.0.0.1:{port}", backoff_initial_ms=1
    )
    gateway = Gateway(config, Authorizer.disabled())
    await gateway.start()
    try:
        yield upstreams, gateway
    finally:
        await gateway.close(1.0)
        await server.stop(0)


async def test_a_broken_upstream_is_resumed_at_its_last_frame_without_a_second_snapshot(
    scripted: tuple[Upstreams, Gateway],
) -> None:
    upstreams, gateway = scripted
    seen: list[dict[str, Any]] = []
    async with websockets.connect(f"ws://{gateway.address}/v1/streams/s1") as ws:

        async def read() -> None:
            async for text in ws:
                seen.append(json.loads(text))

        reader = asyncio.create_task(read())
        await eventually(lambda: len(seen) == 3)
        reader.cancel()
    assert [(m["kind"], m["seq"]) for m in seen] == [("snapshot", 1), ("delta", 2), ("delta", 3)]
    assert sum(m["counts"]["heart"] for m in seen) == 6
    assert [(r.resume.epoch, r.resume.seq) for r in upstreams.requests] == [(0, 0), (7, 2)]
    assert gateway.statistics()["upstream_reconnects"] == 1
    assert seen[0]["epoch"] == "7"


async def test_an_overloaded_edge_is_429_with_retry_after_and_an_unavailable_one_503(
    scripted: tuple[Upstreams, Gateway],
) -> None:
    upstreams, gateway = scripted
    batch = {"session_id": os.urandom(16).hex(), "viewer_id": "v", "seq": 1, "stream_id": "s1", "counts": {"heart": 1}}
    async with httpx.AsyncClient(base_url=f"http://{gateway.address}") as http:
        r = await http.post("/v1/reactions", json=batch)
        assert (r.status_code, r.headers["retry-after"], r.json()["retry_after_ms"]) == (429, "2", 1500)
        upstreams.send_status, upstreams.retry_after = grpc.StatusCode.UNAVAILABLE, None
        r = await http.post("/v1/reactions", json=batch)
        assert r.status_code == 503 and "retry-after" not in r.headers
