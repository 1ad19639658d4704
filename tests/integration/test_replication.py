"""Gossip sessions over real gRPC on loopback: committed deltas reach the receiver exactly,
resume after a reconnect, restart with full state, and garbage is refused without merging."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from reactmesh.merge.clock import SystemClock
from reactmesh.merge.gossip import GossipConfig, GossipNode
from reactmesh.merge.keyed import KeyedGCounter
from reactmesh.region_node.replication import Dialer, GossipServicer
from reactmesh.region_node.state import DIGESTED, RegionGossipNode, RegionState
from reactmesh.v1 import gossip_pb2, gossip_pb2_grpc
from tests.support.polling import eventually

FAST = GossipConfig(max_keys_per_delta=50, max_inflight_deltas=2, poll_interval_s=0.005, digest_collections=DIGESTED)


async def serve(node: GossipNode) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    GossipServicer(node).add_to_server(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
async def aggregator() -> AsyncIterator[tuple[GossipNode, str]]:
    node = RegionGossipNode("a/agg-0", "a", "aggregator", RegionState(), SystemClock(), FAST)
    server, address = await serve(node)
    yield node, address
    await server.stop(None)


def commit(state: RegionState, replica: str, key: tuple[str | int, ...], n: int) -> None:
    """Add n to replica's slot of key, as an aggregator does after a durable commit."""
    delta = KeyedGCounter()
    delta.increment(key, replica, state.totals.slots(key).get(replica, 0) + n)
    state.merge("totals", delta)


async def test_committed_deltas_reach_the_broadcaster_exactly(aggregator: tuple[GossipNode, str]) -> None:
    agg, address = aggregator
    for i in range(300):  # more keys than one delta may carry
        commit(agg.state, "a/agg-0~1", (f"s{i % 30}", f"e{i}"), i + 1)
    bcast = RegionGossipNode("a/bcast-0", "a", "broadcaster", RegionState(), SystemClock(), FAST)
    dialer = Dialer(bcast, address, SystemClock())
    dialer.start()
    try:
        await eventually(lambda: bcast.state.totals == agg.state.totals)
        commit(agg.state, "a/agg-0~1", ("s1", "e1"), 5)
        await eventually(lambda: bcast.state.totals.value(("s1", "e1")) == 7)
        assert bcast.state.totals == agg.state.totals
        assert agg.stats.deltas_sent >= 300 // FAST.max_keys_per_delta
        assert "a" in bcast.stats.lag_ms
    finally:
        await dialer.close()


async def test_reconnect_of_same_incarnation_resumes_from_acknowledged_state(
    aggregator: tuple[GossipNode, str],
) -> None:
    agg, address = aggregator
    for i in range(100):
        commit(agg.state, "a/agg-0~1", ("s", f"e{i}"), 1)
    bcast = RegionGossipNode("a/bcast-0", "a", "broadcaster", RegionState(), SystemClock(), FAST)
    first = Dialer(bcast, address, SystemClock())
    first.start()
    await eventually(lambda: bcast.state.totals == agg.state.totals)
    await eventually(lambda: all(agg.peers["a/bcast-0"].acked.get(k, 0) == v for k, v in agg.state.versions().items()))
    await first.close()
    sent_before = agg.stats.keys_grown, agg.stats.deltas_sent
    commit(agg.state, "a/agg-0~1", ("s", "e0"), 1)
    second = Dialer(bcast, address, SystemClock())
    second.start()
    try:
        await eventually(lambda: bcast.state.totals.value(("s", "e0")) == 2)
        # Only the one changed key travelled again, in one delta.
        assert agg.stats.deltas_sent == sent_before[1] + 1
    finally:
        await second.close()


async def test_restarted_receiver_gets_full_state_again(aggregator: tuple[GossipNode, str]) -> None:
    agg, address = aggregator
    for i in range(120):
        commit(agg.state, "a/agg-0~1", ("s", f"e{i}"), 2)
    for _ in range(2):  # the second node is the same broadcaster after a restart: new incarnation, empty state
        bcast = RegionGossipNode("a/bcast-0", "a", "broadcaster", RegionState(), SystemClock(), FAST)
        dialer = Dialer(bcast, address, SystemClock())
        dialer.start()
        try:
            await eventually(lambda b=bcast: b.state.totals == agg.state.totals)  # type: ignore[misc]
        finally:
            await dialer.close()


async def test_broadcaster_does_not_push_its_state_to_aggregators(aggregator: tuple[GossipNode, str]) -> None:
    agg, address = aggregator
    bcast = RegionGossipNode("a/bcast-0", "a", "broadcaster", RegionState(), SystemClock(), FAST)
    commit(bcast.state, "b/agg-0~9", ("s", "like"), 3)
    commit(agg.state, "a/agg-0~1", ("s", "like"), 1)
    dialer = Dialer(bcast, address, SystemClock())
    dialer.start()
    try:
        await eventually(lambda: bcast.state.totals.value(("s", "like")) == 4)
        assert agg.state.totals.value(("s", "like")) == 1
    finally:
        await dialer.close()


async def test_undecodable_delta_ends_the_session_and_merges_nothing(aggregator: tuple[GossipNode, str]) -> None:
    agg, address = aggregator
    async with grpc.aio.insecure_channel(address) as channel:
        call = gossip_pb2_grpc.GossipStub(channel).Exchange()
        await call.write(gossip_pb2.GossipMessage(hello=gossip_pb2.Hello(node_id="x", region="x", role="aggregator")))
        hello = await call.read()
        assert hello.hello.node_id == "a/agg-0"
        good = KeyedGCounter()
        good.increment(("s", "like"), "x~1", 5)
        await call.write(
            gossip_pb2.GossipMessage(
                delta=gossip_pb2.Delta(
                    seq=1,
                    parts=[
                        gossip_pb2.Part(collection="totals", envelope=good.encode()),
                        gossip_pb2.Part(collection="totals", envelope=b"\xff\x00garbage"),
                    ],
                )
            )
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call.read()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert agg.state.totals.value(("s", "like")) == 0


async def test_a_part_of_a_collection_this_node_does_not_hold_is_skipped_and_the_rest_merged(
    aggregator: tuple[GossipNode, str],
) -> None:
    agg, address = aggregator
    async with grpc.aio.insecure_channel(address) as channel:
        call = gossip_pb2_grpc.GossipStub(channel).Exchange()
        await call.write(gossip_pb2.GossipMessage(hello=gossip_pb2.Hello(node_id="x", region="x", role="aggregator")))
        await call.read()
        good = KeyedGCounter()
        good.increment(("s", "like"), "x~1", 5)
        newer = gossip_pb2.Part(collection="from_a_newer_release", envelope=b"\x01whatever it holds")
        parts = [newer, gossip_pb2.Part(collection="totals", envelope=good.encode())]
        await call.write(gossip_pb2.GossipMessage(delta=gossip_pb2.Delta(seq=1, parts=parts)))
        await eventually(lambda: agg.state.totals.value(("s", "like")) == 5)
        assert agg.stats.unknown_parts == 1
        call.cancel()


async def test_replayed_and_reordered_deltas_change_nothing(aggregator: tuple[GossipNode, str]) -> None:
    agg, address = aggregator
    d1, d2 = KeyedGCounter(), KeyedGCounter()
    source = KeyedGCounter()
    d1.merge(source.increment(("s", "like"), "b/agg-0~1", 3))
    d2.merge(source.increment(("s", "like"), "b/agg-0~1", 4))
    # An aggregator accepts merges from peers too (role policy only decides who sends).
    async with grpc.aio.insecure_channel(address) as channel:
        call = gossip_pb2_grpc.GossipStub(channel).Exchange()
        await call.write(gossip_pb2.GossipMessage(hello=gossip_pb2.Hello(node_id="b", region="b", role="broadcaster")))
        await call.read()
        for seq, d in [(2, d2), (1, d1), (2, d2), (1, d1)]:
            part = gossip_pb2.Part(collection="totals", envelope=d.encode())
            await call.write(gossip_pb2.GossipMessage(delta=gossip_pb2.Delta(seq=seq, parts=[part])))
            ack = await call.read()
            while not ack.HasField("delta_ack"):  # the peer may send its own digests or pings in between
                ack = await call.read()
            assert ack.delta_ack.seq == seq
        await call.done_writing()
    assert agg.state.totals.value(("s", "like")) == 7


async def test_digest_exchange_repairs_what_acknowledged_deltas_missed(aggregator: tuple[GossipNode, str]) -> None:
    agg, address = aggregator
    for i in range(40):
        commit(agg.state, "a/agg-0~1", ("s", f"e{i}"), i + 1)
    config = GossipConfig(poll_interval_s=0.005, digest_interval_s=0.05, digest_buckets=16, digest_collections=DIGESTED)
    bcast = RegionGossipNode("a/bcast-0", "a", "broadcaster", RegionState(), SystemClock(), config)
    dialer = Dialer(bcast, address, SystemClock())
    dialer.start()
    try:
        await eventually(lambda: bcast.state.totals == agg.state.totals)
        # The receiver loses keys it had acknowledged (as after a local bug or pruning mistake):
        # no delta will carry them again, only anti-entropy can.
        lost = bcast.state.totals.prune(lambda key: key[1] in ("e3", "e17"))
        assert lost == 2
        await eventually(lambda: bcast.state.totals == agg.state.totals)
        assert agg.stats.digest_repairs >= 1
        assert bcast.stats.digests_sent >= 1
    finally:
        await dialer.close()


async def test_broadcaster_sends_aggregators_only_session_watermarks(aggregator: tuple[GossipNode, str]) -> None:
    agg, address = aggregator
    bcast = RegionGossipNode("a/bcast-0", "a", "broadcaster", RegionState(), SystemClock(), FAST)
    remote_session = b"\x07" * 16
    bcast.state.merge("watermarks", bcast.state.watermarks.copy().set(remote_session, 42))
    commit(bcast.state, "b/agg-0~9", ("s", "like"), 3)
    dialer = Dialer(bcast, address, SystemClock())
    dialer.start()
    try:
        await eventually(lambda: agg.state.watermarks.get(remote_session) == 42)
        assert len(agg.state.totals) == 0
    finally:
        await dialer.close()


async def test_relayed_deltas_keep_their_origin_region_and_commit_time(aggregator: tuple[GossipNode, str]) -> None:
    agg, address = aggregator  # region "a"
    relay = RegionGossipNode("r/bcast-0", "r", "broadcaster", RegionState(), SystemClock(), FAST)
    relay_server, relay_address = await serve(relay)
    final = RegionGossipNode("z/bcast-0", "z", "broadcaster", RegionState(), SystemClock(), FAST)
    lags: list[tuple[str, int]] = []
    final.lag_observers.append(lambda region, lag: lags.append((region, lag)))
    dialers = [Dialer(relay, address, SystemClock()), Dialer(final, relay_address, SystemClock())]
    for d in dialers:
        d.start()
    try:
        commit(agg.state, "a/agg-0~1", ("s", "like"), 2)
        await eventually(lambda: final.state.totals.value(("s", "like")) == 2)
        assert {region for region, _ in lags} == {"a"}
        # The growth is stamped with the commit time in region a at every hop, not a relay's send time.
        _, committed_ms, _ = agg._origins[-1]
        assert relay._origins[-1][1:] == (committed_ms, "a")
        assert final._origins[-1][1:] == (committed_ms, "a")
    finally:
        for d in dialers:
            await d.close()
        await relay_server.stop(None)
