"""Ended streams leave memory, totals too, and come back exactly: in a broadcaster (loaded from its history store
when gossip grows them again, when a viewer subscribes, or for GetTotals), in an aggregator (reloaded by the next
commit), and in a new broadcaster (learned from a peer's totals buckets by history sync).

Real Stores (SQLite files), real Broadcaster, Query and Broadcast services on loopback, a FakeClock.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest

from reactmesh.merge.clock import FakeClock
from reactmesh.merge.keyed import KeyedGCounter
from reactmesh.region_node.aggregator.config import AggregatorConfig
from reactmesh.region_node.aggregator.core import Aggregator
from reactmesh.region_node.aggregator.pending import ForwardStream
from reactmesh.region_node.aggregator.store import Store
from reactmesh.region_node.broadcaster.config import BroadcasterConfig
from reactmesh.region_node.broadcaster.core import Broadcaster
from reactmesh.region_node.broadcaster.service import BroadcastService
from reactmesh.region_node.query import QueryServicer
from reactmesh.region_node.replication import GossipServicer
from reactmesh.region_node.state import TOTALS, RegionGossipNode, RegionState
from reactmesh.region_node.windows.digests import HistoryReader
from reactmesh.region_node.windows.sealer import SEAL_EVERY_S, SealedBefore, WindowWriter
from reactmesh.region_node.windows.sync import HistorySync
from reactmesh.v1 import aggregator_pb2 as pb
from reactmesh.v1 import broadcast_pb2, broadcast_pb2_grpc, common_pb2, gossip_pb2_grpc
from tests.support.polling import eventually

IDLE_S = 60
CONFIG = BroadcasterConfig(idle_stream_s=IDLE_S)
Frame = broadcast_pb2.Frame


def grow(state: RegionState, stream: str, slots: Mapping[tuple[str, str], int]) -> None:
    """Merge (emoji, replica) -> absolute slot values of ``stream``, as a gossip delta would."""
    delta = KeyedGCounter()
    for (emoji, replica), count in slots.items():
        delta.increment((stream, emoji), replica, count)
    state.merge_part(TOTALS, delta.encode())


class Node:
    """A broadcaster node's pieces as region_node.node wires them with a history store, served on loopback."""

    def __init__(self, path: Path, clock: FakeClock) -> None:
        self.path, self.clock = path, clock
        self.state = RegionState()

    async def start(self) -> Node:
        self.store = await Store.open(self.path)
        self.reader = HistoryReader(str(self.path))
        self.writer = WindowWriter(self.state, self.store, self.clock, horizon_s=30, retention_s=86_400)
        self.broadcaster = Broadcaster(CONFIG, self.clock, self.state)
        self.query = QueryServicer(self.state, self.clock, self.reader, lambda: self.writer.sealed_before_s)
        self.broadcaster.set_totals_loader(self.reader.stored_totals)
        self.broadcaster.add_evict_listener(self.query.forget_streams)
        self.server = grpc.aio.server()
        BroadcastService(self.broadcaster).add_to_server(self.server)
        GossipServicer(RegionGossipNode("a/b", "a", "broadcaster", self.state, self.clock), self.reader).add_to_server(
            self.server
        )
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        await self.server.start()
        self.channel = grpc.aio.insecure_channel(self.address)
        self.stub = broadcast_pb2_grpc.BroadcastStub(self.channel)
        return self

    async def idle_out(self) -> None:
        """Let every unwatched stream pass idle_stream_s, as the broadcaster's ticks and the writer would."""
        await self.writer.step()
        await self.clock.advance(IDLE_S + 1)
        self.broadcaster.tick()

    async def snapshot(self, stream: str) -> dict[str, int]:
        call = self.stub.Subscribe(broadcast_pb2.SubscribeRequest(stream_id=stream))
        frame = await asyncio.wait_for(call.read(), 10)
        call.cancel()
        assert isinstance(frame, Frame) and frame.kind == Frame.SNAPSHOT
        return {c.emoji: c.count for c in frame.counts}

    async def close(self) -> None:
        await self.broadcaster.close()
        await self.channel.close()
        await self.server.stop(None)
        await self.store.close()
        await self.reader.close()


@pytest.fixture
async def node(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Node]:
    n = await Node(tmp_path / "b.db", clock).start()
    yield n
    await n.close()


def drain(b: Broadcaster) -> None:
    for _ in range(CONFIG.smoothing.drain_ticks + 2):
        b.tick()


async def test_an_ended_stream_leaves_memory_and_its_totals_are_read_from_disk(node: Node) -> None:
    grow(node.state, "ended", {("like", "r1"): 7, ("like", "r2"): 3, ("fire", "r1"): 2})
    grow(node.state, "live", {("like", "r1"): 1})
    await node.broadcaster.warm("ended")  # the cold load each new stream starts
    await node.broadcaster.warm("live")
    drain(node.broadcaster)
    watching = node.stub.Subscribe(broadcast_pb2.SubscribeRequest(stream_id="live"))
    await asyncio.wait_for(watching.read(), 10)
    await node.idle_out()
    assert [k for k, _ in node.state.totals.items() if k[0] == "ended"] == []
    assert [k for k, _ in node.state.totals.items() if k[0] == "live"] == [("live", "like")]  # watched: stays
    assert node.broadcaster.statistics().streams_evicted == 1
    assert await node.query.totals("ended") == {"fire": 2, "like": 10}
    assert await node.snapshot("ended") == {"fire": 2, "like": 10}  # a subscriber warms it first
    watching.cancel()


async def test_a_stream_that_comes_back_by_gossip_is_loaded_and_counted_exactly(node: Node) -> None:
    grow(node.state, "s", {("like", "r1"): 7, ("like", "r2"): 3})
    await node.broadcaster.warm("s")
    drain(node.broadcaster)
    await node.idle_out()
    assert node.broadcaster.statistics().streams_evicted == 1
    grow(node.state, "s", {("like", "r1"): 9})  # r1's next commit: its absolute slot, r2's not resent
    await node.broadcaster.warm("s")  # waits for the load that growth started
    assert node.state.totals.value(("s", "like")) == 12  # r2's slot came back from disk
    assert await node.snapshot("s") == {"like": 12}
    assert node.broadcaster.statistics().cold_loads >= 2


async def test_a_resume_from_before_an_eviction_gets_a_snapshot(node: Node) -> None:
    call = node.stub.Subscribe(broadcast_pb2.SubscribeRequest(stream_id="s"))
    await asyncio.wait_for(call.read(), 10)
    grow(node.state, "s", {("like", "r1"): 4})
    drain(node.broadcaster)
    last = node.broadcaster._channels["s"].seq
    call.cancel()
    await eventually(lambda: node.broadcaster.statistics().subscribers == 0)
    await node.idle_out()
    assert "s" not in node.broadcaster._channels
    request = broadcast_pb2.SubscribeRequest(stream_id="s")
    request.resume.epoch, request.resume.seq = node.broadcaster.epoch, last
    again = node.stub.Subscribe(request)
    frame = await asyncio.wait_for(again.read(), 10)
    assert isinstance(frame, Frame)
    assert frame.kind == Frame.SNAPSHOT and {c.emoji: c.count for c in frame.counts} == {"like": 4}
    again.cancel()


async def test_a_new_broadcaster_learns_ended_streams_totals_from_a_peer(
    tmp_path: Path, clock: FakeClock, node: Node
) -> None:
    grow(node.state, "ended", {("like", "r1"): 7, ("like", "r2"): 3})
    await node.broadcaster.warm("ended")
    drain(node.broadcaster)
    await node.idle_out()
    fresh = await Node(tmp_path / "fresh.db", clock).start()
    try:
        sync = HistorySync(node.address, fresh.store, fresh.reader, SealedBefore(clock, 30), clock, retention_s=86_400)
        async with grpc.aio.insecure_channel(node.address) as channel:
            stub: Any = gossip_pb2_grpc.GossipStub(channel)
            for _ in range(20):
                assert await sync.round_safely(stub)
                if sync.idle:
                    break
        assert await fresh.query.totals("ended") == {"like": 10}
        assert await fresh.snapshot("ended") == {"like": 10}
    finally:
        await fresh.close()


def entry(stream: str, seq: int, now_ms: int, count: int) -> pb.ForwardedBatch:
    return pb.ForwardedBatch(
        session_id=bytes(16),
        seq=seq,
        stream_id=stream,
        accepted_at_ms=now_ms,
        counts=[common_pb2.ReactionCount(emoji="like", count=count)],
    )


async def send(agg: Aggregator, e: pb.ForwardedBatch) -> None:
    fwd = ForwardStream()
    agg.attach(fwd)
    agg.receive(fwd, pb.EdgeBatch(batch_id=1, entries=[e]))
    await agg.tick()
    ack = fwd.out.get_nowait()
    assert isinstance(ack, pb.EdgeAck) and list(ack.outcomes) == [pb.EdgeAck.APPLIED]
    agg.detach(fwd)


async def test_an_aggregator_evicts_idle_streams_and_reloads_their_slot_on_the_next_commit(
    tmp_path: Path, clock: FakeClock
) -> None:
    cfg = AggregatorConfig(
        node_id="a/agg-0", region="a", db_path=str(tmp_path / "a.db"), window_horizon_s=30, idle_stream_s=IDLE_S
    )
    agg = Aggregator(cfg, clock)
    await agg.start()
    try:
        await send(agg, entry("s", 1, clock.wall_ms(), 5))
        await clock.advance(IDLE_S + SEAL_EVERY_S + 1)
        await send(agg, entry("other", 2, clock.wall_ms(), 1))  # a tick past the seal step: s is idle
        assert ("s", "like") not in agg.state.totals
        assert agg.statistics()["streams_evicted"] == 1
        await send(agg, entry("s", 3, clock.wall_ms(), 2))
        assert agg.state.totals.value(("s", "like")) == 7  # 5 reloaded from disk, + 2: the slot never goes back
    finally:
        await agg.close()
    restarted = Aggregator(dataclasses.replace(cfg), clock)
    await restarted.start()
    try:
        assert restarted.state.totals.value(("s", "like")) == 7  # live within idle_stream_s: loaded at start
    finally:
        await restarted.close()


async def test_a_drained_stream_leaves_memory_once_its_frame_is_out_and_comes_back_drained(node: Node) -> None:
    drains: dict[str, int] = {}
    node.broadcaster.set_drain_lookup(drains.get)
    grow(node.state, "over", {("like", "r1"): 5})
    await node.broadcaster.warm("over")
    drains["over"] = node.broadcaster.drain("over")  # as the node's moderation records it
    drain(node.broadcaster)
    await node.idle_out()
    assert node.broadcaster.statistics().streams_evicted == 1  # not held forever for being drained
    call = node.stub.Subscribe(broadcast_pb2.SubscribeRequest(stream_id="over"))
    frame = await asyncio.wait_for(call.read(), 10)
    call.cancel()
    assert isinstance(frame, Frame) and frame.kind == Frame.SNAPSHOT and frame.drained
    assert {c.emoji: c.count for c in frame.counts} == {"like": 5}


async def test_without_a_drain_lookup_a_drained_stream_stays_in_memory(node: Node) -> None:
    grow(node.state, "over", {("like", "r1"): 5})
    await node.broadcaster.warm("over")
    node.broadcaster.drain("over")
    drain(node.broadcaster)
    await node.idle_out()
    assert node.broadcaster.statistics().streams_evicted == 0
