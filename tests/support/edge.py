"""Test harness for edge integration tests: a small in-process Aggregator and an edge on loopback.

``FakeAggregator`` implements the Forward contract the edge relies on (apply an entry iff its seq is
above the session's watermark; one EdgeAck per EdgeBatch, in order) and can misbehave on demand:
withhold acks (``gate``), break the stream after applying a batch but before acking it
(``break_after_batches``), or refuse entries of chosen streams. It records what arrived, in order.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import grpc

from reactmesh.edge.auth import Authorizer
from reactmesh.edge.config import EdgeConfig
from reactmesh.edge.service import Edge
from reactmesh.merge.clock import FakeClock
from reactmesh.v1 import aggregator_pb2, aggregator_pb2_grpc, common_pb2, ingest_pb2, ingest_pb2_grpc

EdgeAck = aggregator_pb2.EdgeAck


class FakeAggregator(aggregator_pb2_grpc.AggregatorServicer):
    def __init__(self) -> None:
        self.watermarks: dict[bytes, int] = {}
        self.received: list[tuple[bytes, int]] = []  # every entry as it arrived, resends included
        self.applied: list[tuple[bytes, int]] = []
        self.totals: Counter[tuple[str, str]] = Counter()
        self.batch_sizes: list[int] = []
        self.refused_streams: set[str] = set()
        self.break_after_batches: int | None = None  # break after applying this many more EdgeBatches
        self.corrupt_next_ack = False  # answer the next EdgeBatch with a wrong batch_id
        self.refuse_calls = False  # end every Forward call at once, acking nothing
        self.streams = 0
        self.breaks = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self._changed = asyncio.Condition()

    async def wait_for(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        """Wait, without polling, until ``predicate`` holds after a Forward call or an EdgeBatch arrived."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)

    async def Forward(self, request_iterator: Any, context: Any) -> AsyncIterator[aggregator_pb2.EdgeAck]:
        self.streams += 1
        async with self._changed:
            self._changed.notify_all()
        if self.refuse_calls:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "refusing Forward calls")
        async for batch in request_iterator:
            outcomes = []
            for entry in batch.entries:
                key = (entry.session_id, entry.seq)
                self.received.append(key)
                if entry.stream_id in self.refused_streams:
                    outcomes.append(EdgeAck.REFUSED)
                elif entry.seq > self.watermarks.get(entry.session_id, 0):
                    self.watermarks[entry.session_id] = entry.seq
                    self.applied.append(key)
                    for count in entry.counts:
                        self.totals[(entry.stream_id, count.emoji)] += count.count
                    outcomes.append(EdgeAck.APPLIED)
                else:
                    outcomes.append(EdgeAck.DUPLICATE)
            self.batch_sizes.append(len(batch.entries))
            async with self._changed:
                self._changed.notify_all()
            if self.break_after_batches is not None:
                self.break_after_batches -= 1
                if self.break_after_batches <= 0:
                    self.break_after_batches = None
                    self.breaks += 1
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "forced break before ack")
            await self.gate.wait()
            batch_id = batch.batch_id
            if self.corrupt_next_ack:
                self.corrupt_next_ack = False
                batch_id += 1000
            yield EdgeAck(batch_id=batch_id, outcomes=outcomes)

    def applied_seqs(self, session_id: bytes) -> list[int]:
        return [seq for sid, seq in self.applied if sid == session_id]


async def serve_aggregator(agg: FakeAggregator) -> tuple[Any, str]:
    server = grpc.aio.server()
    aggregator_pb2_grpc.add_AggregatorServicer_to_server(agg, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


@dataclass
class EdgeRig:
    edge: Edge
    clock: FakeClock
    address: str
    channel: Any
    stub: Any
    aggregators: dict[str, FakeAggregator]

    @property
    def aggregator(self) -> FakeAggregator:
        return next(iter(self.aggregators.values()))


@asynccontextmanager
async def edge_rig(
    n_aggregators: int = 1, *, auth: Callable[[FakeClock], Authorizer] | None = None, **overrides: Any
) -> AsyncIterator[EdgeRig]:
    """An edge on loopback in front of ``n_aggregators`` FakeAggregators, with a FakeClock; batches
    are flushed as soon as the forwarder runs (flush_interval_ms=0) unless overridden; ``auth`` builds the edge's
    Authorizer on the rig's clock (none: auth disabled)."""
    clock = FakeClock()
    servers = []
    aggregators: dict[str, FakeAggregator] = {}
    for _ in range(n_aggregators):
        agg = FakeAggregator()
        server, address = await serve_aggregator(agg)
        servers.append(server)
        aggregators[address] = agg
    settings: dict[str, Any] = {"flush_interval_ms": 0, "burst": 100_000, "rate_per_s": 1000.0}
    settings.update(overrides)
    config = replace(EdgeConfig(region="test", aggregators=tuple(aggregators)), **settings)
    edge = Edge(config, clock, authorizer=auth(clock) if auth is not None else None)
    server = grpc.aio.server()
    edge.add_to_server(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await edge.start()
    address = f"127.0.0.1:{port}"
    channel = grpc.aio.insecure_channel(address)
    try:
        yield EdgeRig(edge, clock, address, channel, ingest_pb2_grpc.IngestStub(channel), aggregators)
    finally:
        await channel.close()
        await edge.close(grace_s=0)
        await server.stop(None)
        for s in servers:
            await s.stop(None)


def session() -> bytes:
    return os.urandom(16)


def batch(
    session_id: bytes,
    seq: int,
    counts: dict[str, int] | None = None,
    *,
    stream_id: str = "live-1",
    viewer_id: str = "viewer-1",
) -> ingest_pb2.ClientBatch:
    counts = {"like": 1} if counts is None else counts
    return ingest_pb2.ClientBatch(
        session_id=session_id,
        viewer_id=viewer_id,
        seq=seq,
        stream_id=stream_id,
        counts=[common_pb2.ReactionCount(emoji=e, count=n) for e, n in counts.items()],
    )


async def read_acks(call: Any, n: int, within: float = 5.0) -> dict[int, ingest_pb2.BatchAck]:
    """Read ``n`` acks from an Ingest.Stream call, keyed by seq (acks may come out of order)."""
    acks: dict[int, ingest_pb2.BatchAck] = {}
    async with asyncio.timeout(within):
        while len(acks) < n:
            ack = await call.read()
            assert ack is not grpc.aio.EOF, f"stream ended after {len(acks)} of {n} acks"
            assert ack.seq not in acks, f"two acks for seq {ack.seq}"
            acks[ack.seq] = ack
    return acks


async def stream_exchange(rig: EdgeRig, batches: list[ingest_pb2.ClientBatch], **call_kw: Any) -> dict[int, Any]:
    """Send ``batches`` on one Ingest.Stream, half-close, return every ack by seq; the stream must end OK."""
    call = rig.stub.Stream(**call_kw)
    for b in batches:
        await call.write(b)
    await call.done_writing()
    acks = await read_acks(call, len(batches))
    async with asyncio.timeout(5):
        assert await call.read() is grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK
    return acks
