"""Metrics of running nodes, read over HTTP from /metrics and parsed with prometheus_client's parser.

A region runs on loopback as two Nodes (aggregator; edge + broadcaster), each with its own registry
and /metrics port; taps go through the SDK. The exact lag semantics are proved with a FakeClock on
the gossip protocol's receiving side fed by a scripted peer.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from subprocess import PIPE, STDOUT

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from reactmesh.edge.sdk import ReactionClient, subscribe
from reactmesh.merge.clock import FakeClock
from reactmesh.merge.keyed import KeyedGCounter
from reactmesh.region_node.broadcaster.config import BroadcasterConfig
from reactmesh.region_node.broadcaster.core import Broadcaster
from reactmesh.region_node.metrics.edge import BATCH_OUTCOMES, REJECT_REASONS
from reactmesh.region_node.metrics.node import NodeMetrics
from reactmesh.region_node.state import TOTALS, RegionGossipNode, RegionState
from reactmesh.v1 import common_pb2, gossip_pb2, ingest_pb2, ingest_pb2_grpc
from tests.support.metered import http_get, metered_region, names, scrape, scrape_text, value


async def until(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """Poll an async condition on real sockets; the outcome is asserted, never the timing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"condition not reached within {within} s")
        await asyncio.sleep(0.05)


async def test_ingest_counters_equal_the_taps_sent_through_the_sdk(tmp_path: Path) -> None:
    taps = {("v1", "match-1", "heart"): 7, ("v1", "match-1", "fire"): 3, ("v2", "match-2", "like"): 11}
    async with metered_region(tmp_path) as region:
        for viewer in ("v1", "v2"):
            async with ReactionClient([region.edge], viewer_id=viewer) as client:
                for (v, stream, emoji), n in taps.items():
                    if v == viewer:
                        client.tap(stream, emoji, n=n)
                await client.flush(timeout=10)
                batches = client.statistics().acks_accepted
                assert batches >= 1
        front_addr, agg_addr = region.front.addresses["metrics"], region.aggregator.addresses["metrics"]
        front = await scrape(front_addr)
        total = sum(taps.values())
        assert value(front, "reactmesh_ingest_taps_total", region="a", outcome="accepted") == total
        assert value(front, "reactmesh_ingest_taps_total", outcome="rate_limited") == 0
        assert value(front, "reactmesh_ingest_batches_total", outcome="accepted") == 2
        assert value(front, "reactmesh_ingest_batches_total", outcome="duplicate") == 0
        assert value(front, "reactmesh_edge_inflight_batches") == 0
        assert value(front, "reactmesh_edge_shed_batches_total") == 0
        assert value(front, "reactmesh_edge_admission_limit") >= 32
        assert value(front, "reactmesh_edge_commit_lag_seconds") >= 0

        agg = await scrape(agg_addr)
        assert value(agg, "reactmesh_aggregator_taps_total", region="a") == total
        assert value(agg, "reactmesh_aggregator_entries_total", outcome="applied") == 2
        assert value(agg, "reactmesh_aggregator_commit_duration_seconds_count") >= 1
        assert value(agg, "reactmesh_aggregator_commit_lag_seconds_count") >= 1
        assert value(agg, "reactmesh_aggregator_commit_entries_sum") == 2
        assert value(agg, "reactmesh_aggregator_pending_entries") == 0
        assert value(agg, "reactmesh_gossip_sent_bytes_total", role="aggregator") > 0
        # One registry per node: the aggregator's port serves no edge series and vice versa.
        assert not any(n.startswith(("reactmesh_ingest_", "reactmesh_broadcast_")) for n in names(agg))
        assert not any(n.startswith("reactmesh_aggregator_") for n in names(front))

        async def shown_in_a_frame() -> bool:
            s = await scrape(front_addr)
            # One sample per stream: each stream's growth shows in a frame once.
            return value(s, "reactmesh_broadcast_frame_lag_seconds_count", origin_region="a") == 2

        await until(shown_in_a_frame)
        front = await scrape(front_addr)
        assert value(front, "reactmesh_replication_delta_lag_seconds_count", region="a", origin_region="a") >= 1
        assert value(front, "reactmesh_replication_lag_seconds", origin_region="a") >= 0
        assert value(front, "reactmesh_replication_last_delta_timestamp_seconds", origin_region="a") > 0
        assert value(front, "reactmesh_gossip_received_bytes_total", role="broadcaster") > 0
        assert value(front, "reactmesh_broadcast_frames_emitted_total") >= 2

        async def ticked() -> bool:  # frames follow commits, which may come before the first fixed tick
            return value(await scrape(front_addr), "reactmesh_broadcast_tick_duration_seconds_count") >= 1

        await until(ticked)


async def test_subscribers_and_frames_sent_are_counted(tmp_path: Path) -> None:
    async with metered_region(tmp_path) as region:
        address = region.front.addresses["metrics"]
        frames = subscribe("match-1", broadcaster_addresses=[region.broadcaster])
        assert isinstance(frames, AsyncGenerator)
        first = await anext(frames)
        assert first.kind == first.SNAPSHOT

        async def subscribed(n: int) -> bool:
            return value(await scrape(address), "reactmesh_broadcast_subscribers", region="a") == n

        await until(lambda: subscribed(1))
        s = await scrape(address)
        assert value(s, "reactmesh_broadcast_snapshots_sent_total") == 1
        assert value(s, "reactmesh_broadcast_frames_sent_total") == 1
        assert value(s, "reactmesh_broadcast_subscriber_queue_depth_max") == 0
        await frames.aclose()
        await until(lambda: subscribed(0))


async def test_rejected_rate_limited_and_duplicate_batches_are_labelled_by_outcome(tmp_path: Path) -> None:
    async with metered_region(tmp_path, edge={"rate_per_s": 0.001, "burst": 5}) as region:
        async with ReactionClient([region.edge], viewer_id="greedy") as client:
            client.tap("match-1", "heart", n=8)  # 5 counted, 3 over the burst
            await client.flush(timeout=10)
            client.tap("match-1", "heart", n=2)  # no tokens left: the whole batch is rate limited
            await client.flush(timeout=10)
            client.tap("match-1", "not_an_emoji")  # valid for the SDK, unknown to the edge
            await client.flush(timeout=10)
        batch = ingest_pb2.ClientBatch(
            session_id=b"s" * 16,
            viewer_id="resender",
            seq=1,
            stream_id="match-1",
            counts=[common_pb2.ReactionCount(emoji="like", count=1)],
        )
        async with grpc.aio.insecure_channel(region.edge) as channel:
            stub = ingest_pb2_grpc.IngestStub(channel)
            assert (await stub.Send(batch, timeout=10)).outcome == ingest_pb2.BatchAck.ACCEPTED
            assert (await stub.Send(batch, timeout=10)).outcome == ingest_pb2.BatchAck.DUPLICATE

        s = await scrape(region.front.addresses["metrics"])
        assert value(s, "reactmesh_ingest_taps_total", outcome="accepted") == 5 + 1
        assert value(s, "reactmesh_ingest_taps_total", outcome="rate_limited") == 3 + 2
        assert value(s, "reactmesh_ingest_batches_total", outcome="accepted") == 2
        assert value(s, "reactmesh_ingest_batches_total", outcome="rate_limited") == 1
        assert value(s, "reactmesh_ingest_batches_total", outcome="duplicate") == 1
        assert value(s, "reactmesh_ingest_batches_total", outcome="rejected", reason="unknown_emoji") == 1
        assert value(s, "reactmesh_ingest_batches_total", outcome="rejected") == 1
        outcomes = {x.labels["outcome"] for x in s if x.name == "reactmesh_ingest_batches_total"}
        assert outcomes == set(BATCH_OUTCOMES)
        reasons = {x.labels["reason"] for x in s if x.name == "reactmesh_ingest_batches_total"}
        assert reasons == {"", *REJECT_REASONS}, "every reason is exported from the start, and only those"


_UNITS = ("seconds", "bytes")
_TIME_WORDS = re.compile(r"(^|_)(lag|latency|duration|delay|time|timestamp)(_|$)")


def _family_kinds(text: str) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text)}


async def test_metric_names_follow_prometheus_conventions(tmp_path: Path) -> None:
    async with metered_region(tmp_path) as region:
        async with ReactionClient([region.edge], viewer_id="v1") as client:
            client.tap("match-1", "heart")
            await client.flush(timeout=10)
        texts = [await scrape_text(region.front.addresses["metrics"])]
        texts.append(await scrape_text(region.aggregator.addresses["metrics"]))
    kinds: dict[str, str] = {}
    samples: list[Sample] = []
    for text in texts:
        kinds.update(_family_kinds(text))
        samples += [s for f in text_string_to_metric_families(text) for s in f.samples]
    ours = {n: k for n, k in kinds.items() if n.startswith("reactmesh_")}
    assert len(ours) >= 40
    for name, kind in ours.items():
        assert re.fullmatch(r"reactmesh_[a-z0-9_]+", name), name
        assert "_ms" not in name and "milli" not in name, f"{name}: use base units"
        if _TIME_WORDS.search(name):
            assert name.endswith("_seconds"), f"{name}: times are in seconds"
        if kind == "counter":
            assert any(s.name == f"{name}_total" for s in samples), f"counter {name} must be exposed as _total"
        else:
            assert not name.endswith("_total"), f"{name}: only counters end in _total"
        if kind == "histogram":
            # Series labelled by origin_region appear with their first observation.
            infinite = [s.value for s in samples if s.name == f"{name}_bucket" and s.labels["le"] == "+Inf"]
            counts = [s.value for s in samples if s.name == f"{name}_count"]
            assert infinite == counts, f"{name}: the +Inf bucket is the count"
            assert counts or name.endswith("_lag_seconds"), f"{name}: a region histogram exists from the start"
    for s in samples:
        if s.name.startswith("reactmesh_"):
            assert s.labels.get("region") == "a", f"{s.name} carries the region label"
    for basic in ("process_cpu_seconds_total", "process_resident_memory_bytes", "python_info"):
        assert any(s.name == basic for s in samples), basic


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian package prometheus)")
async def test_scrape_passes_promtool_check_metrics(tmp_path: Path) -> None:
    async with metered_region(tmp_path) as region:
        async with ReactionClient([region.edge], viewer_id="v1") as client:
            client.tap("match-1", "heart")
            await client.flush(timeout=10)
        texts = [await scrape_text(region.front.addresses["metrics"])]
        texts.append(await scrape_text(region.aggregator.addresses["metrics"]))
    for text in texts:
        lint = await asyncio.create_subprocess_exec(
            "promtool", "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=STDOUT
        )
        out, _ = await asyncio.wait_for(lint.communicate(text.encode()), 30)
        assert lint.returncode == 0, out.decode()


async def test_metrics_endpoint_answers_only_metrics_and_stops_with_the_node(tmp_path: Path) -> None:
    async with metered_region(tmp_path) as region:
        address = region.front.addresses["metrics"]
        status, body = await http_get(address, "/nope")
        assert status == 404
        status, body = await http_get(address, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert status == 200 and body.rstrip().endswith(b"# EOF")
    host, _, port = address.rpartition(":")
    with pytest.raises(OSError):
        await asyncio.open_connection(host, int(port))


class _ScriptedPeer:
    """The far end of one gossip session, played by the test: it feeds messages, collects replies."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[object] = asyncio.Queue()
        self.sent: list[gossip_pb2.GossipMessage] = []

    async def read(self) -> object:
        return await self.inbox.get()

    async def write(self, message: gossip_pb2.GossipMessage) -> None:
        self.sent.append(message)

    def acked(self) -> list[int]:
        return [m.delta_ack.seq for m in self.sent if m.WhichOneof("body") == "delta_ack"]

    async def deliver(self, message: gossip_pb2.GossipMessage) -> None:
        """Hand ``message`` to the session and let it run until it has acked it (no clock time passes)."""
        await self.inbox.put(message)
        for _ in range(100):
            if message.delta.seq in self.acked():
                return
            await asyncio.sleep(0)
        raise AssertionError("the session did not ack the delta")


def _delta(seq: int, origin_time_ms: int, stream: str, emoji: str, count: int) -> gossip_pb2.GossipMessage:
    part = KeyedGCounter()
    part.increment((stream, emoji), "b/agg-0~1", count)
    return gossip_pb2.GossipMessage(
        delta=gossip_pb2.Delta(
            seq=seq,
            parts=[gossip_pb2.Part(collection=TOTALS, envelope=part.encode())],
            origin_time_ms=origin_time_ms,
            origin_region="b",
        )
    )


async def test_replication_and_frame_lag_measure_from_the_deltas_origin_time() -> None:
    clock = FakeClock()
    metrics = NodeMetrics("a", clock)
    replica = RegionState()
    broadcaster = Broadcaster(BroadcasterConfig(), clock, replica, hooks=metrics.broadcast_hooks)
    gossip = RegionGossipNode("a/bcast-0", "a", "broadcaster", replica, clock)
    metrics.watch_broadcaster(broadcaster, gossip, [])
    peer = _ScriptedPeer()
    session = asyncio.create_task(gossip.run_session(peer, dialer=False))
    hello = gossip_pb2.Hello(node_id="b/bcast-0", region="b", role="broadcaster", incarnation=9)
    await peer.inbox.put(gossip_pb2.GossipMessage(hello=hello))
    # Shipped 250 ms ago; merged now.
    await peer.deliver(_delta(1, clock.wall_ms() - 250, "match-1", "heart", 40))
    await clock.advance(0.1)
    # A later delta for the same stream before any frame: the oldest one's origin counts.
    await peer.deliver(_delta(2, clock.wall_ms() - 50, "match-1", "heart", 60))
    await clock.advance(0.1)

    def sample(name: str, **labels: str) -> float:
        return sum(v for n, lb, v in metrics.samples() if n == name and all(lb.get(k) == x for k, x in labels.items()))

    assert sample("reactmesh_replication_delta_lag_seconds_count", origin_region="b") == 2
    assert sample("reactmesh_replication_delta_lag_seconds_sum", origin_region="b") == pytest.approx(0.25 + 0.05)
    assert sample("reactmesh_replication_lag_seconds", region="a", origin_region="b") == pytest.approx(0.05)
    assert sample("reactmesh_replication_last_delta_timestamp_seconds", origin_region="b") == (
        pytest.approx((clock.wall_ms() - 100) / 1000)
    )
    assert sample("reactmesh_broadcast_frame_lag_seconds_count") == 0

    assert broadcaster.tick() == 1
    # First frame showing the growth: 250 ms before the first merge + 200 ms of fake time since.
    assert sample("reactmesh_broadcast_frame_lag_seconds_count", origin_region="b") == 1
    assert sample("reactmesh_broadcast_frame_lag_seconds_sum", origin_region="b") == pytest.approx(0.45)
    assert sample("reactmesh_broadcast_frame_lag_seconds_bucket", origin_region="b", le="0.5") == 1
    assert sample("reactmesh_broadcast_frame_lag_seconds_bucket", origin_region="b", le="0.25") == 0
    # The smoother spreads the rest over later frames: they show no new growth, so no new samples.
    await clock.advance(0.1)
    assert broadcaster.tick() == 1
    assert sample("reactmesh_broadcast_frame_lag_seconds_count") == 1
    assert sample("reactmesh_broadcast_tick_duration_seconds_count") == 2
    assert sample("reactmesh_broadcast_frames_emitted_total") == 2
    assert peer.acked() == [1, 2]

    await peer.inbox.put(None)
    await asyncio.wait_for(session, 5)
