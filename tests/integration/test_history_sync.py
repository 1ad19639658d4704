"""History anti-entropy over real gRPC on loopback: stored (sealed) windows converge between stores by digests and
paged rows, each round bounded, newest minutes first; late writes spread by the change feed; a replaced store or a
peer that comes back starts a full sweep. Also the stored-history schema: migration and bucket digests.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from reactmesh.merge.clock import FakeClock
from reactmesh.region_node.aggregator.store import SCHEMA_VERSION, Store
from reactmesh.region_node.replication import GossipServicer
from reactmesh.region_node.state import WINDOWS, RegionGossipNode, RegionState
from reactmesh.region_node.windows.digests import HistoryReader, bucket_hash
from reactmesh.region_node.windows.sealer import SealedBefore
from reactmesh.region_node.windows.sync import HistorySync, HistorySyncConfig
from reactmesh.v1 import gossip_pb2, gossip_pb2_grpc

START_MS = 1_700_000_000_000
T0 = START_MS // 1000  # a whole minute
M0 = T0 // 60
HORIZON_S = 30


def slots(
    stream: str, replica: str, *windows: tuple[int, str, int]
) -> list[tuple[str, tuple[str, str, int], str, int]]:
    return [(WINDOWS, (stream, emoji, start_s), replica, count) for start_s, emoji, count in windows]


def dump(path: Path) -> list[tuple[str, int, str, str, int]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT stream, start_s, emoji, replica, count FROM windows ORDER BY 1, 2, 3, 4")
        return [tuple(r) for r in rows]  # type: ignore[misc]


@dataclass
class Peer:
    """A node's history store served over Gossip on loopback."""

    store: Store
    reader: HistoryReader
    server: grpc.aio.Server
    address: str
    path: Path

    @classmethod
    async def start(cls, path: Path, clock: FakeClock) -> Peer:
        store = await Store.open(path)
        reader = HistoryReader(str(path))
        node = RegionGossipNode("a/agg-0", "a", "aggregator", RegionState(), clock)
        server = grpc.aio.server()
        GossipServicer(node, reader).add_to_server(server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return cls(store, reader, server, f"127.0.0.1:{port}", path)

    async def stop(self) -> None:
        await self.server.stop(None)
        await self.store.close()
        await self.reader.close()


@dataclass
class Puller:
    store: Store
    reader: HistoryReader
    sync: HistorySync
    channel: grpc.aio.Channel
    stub: gossip_pb2_grpc.GossipAsyncStub
    path: Path

    async def rounds(self, n: int) -> None:
        for _ in range(n):
            await self.sync.round_safely(self.stub)

    async def until_idle(self, limit: int = 200) -> int:
        for i in range(1, limit + 1):
            assert await self.sync.round_safely(self.stub)
            if self.sync.idle:
                return i
        raise AssertionError(f"not idle after {limit} rounds: {self.sync.stats}")

    async def close(self) -> None:
        await self.channel.close()
        await self.store.close()
        await self.reader.close()


@pytest.fixture
async def peer(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Peer]:
    p = await Peer.start(tmp_path / "peer.db", clock)
    yield p
    await p.stop()


async def puller(path: Path, address: str, clock: FakeClock, config: HistorySyncConfig | None = None) -> Puller:
    store = await Store.open(path)
    reader = HistoryReader(str(path))
    line = SealedBefore(clock, HORIZON_S)
    sync = HistorySync(address, store, reader, line, clock, retention_s=86_400, config=config)
    channel = grpc.aio.insecure_channel(address)
    return Puller(store, reader, sync, channel, gossip_pb2_grpc.GossipStub(channel), path)  # type: ignore[arg-type]


async def fill(store: Store, streams: int, minutes: int, replica: str = "a/agg-0~1") -> None:
    for m in range(minutes):
        for s in range(streams):
            start = T0 - (m + 1) * 60
            await store.commit(
                {}, slots(f"s{s}", replica, (start, "like", m + s + 1), (start + 7, "fire", 2)), START_MS
            )


async def test_a_new_store_gets_all_sealed_history_in_bounded_rounds(
    tmp_path: Path, clock: FakeClock, peer: Peer
) -> None:
    await fill(peer.store, streams=5, minutes=6)
    await clock.advance(HORIZON_S + 60)  # everything written is sealed at the puller
    cfg = HistorySyncConfig(page_buckets=4, max_rows_per_round=3)
    p = await puller(tmp_path / "new.db", peer.address, clock, cfg)
    try:
        rounds = await p.until_idle()
        assert dump(p.path) == dump(peer.path)
        assert p.sync.stats.rows_fetched == 60
        assert rounds >= 60 // 3  # bounded: at most 3 rows per round
        assert p.sync.stats.full_sweeps == 1
    finally:
        await p.close()


async def test_sweeps_go_newest_minute_first(tmp_path: Path, clock: FakeClock, peer: Peer) -> None:
    await fill(peer.store, streams=2, minutes=5)
    await clock.advance(HORIZON_S + 60)
    p = await puller(tmp_path / "new.db", peer.address, clock, HistorySyncConfig(page_buckets=2))
    try:
        await p.rounds(1)  # one page of 2 buckets: the newest minute's two streams
        with sqlite3.connect(p.path) as conn:
            got = {int(s) // 60 for (s,) in conn.execute("SELECT start_s FROM windows")}
        assert got == {M0 - 1}
    finally:
        await p.close()


async def test_equal_stores_exchange_digests_only(tmp_path: Path, clock: FakeClock, peer: Peer) -> None:
    await fill(peer.store, streams=3, minutes=2)
    await clock.advance(HORIZON_S + 60)
    p = await puller(tmp_path / "copy.db", peer.address, clock)
    try:
        await p.until_idle()
        fetched = p.sync.stats.rows_fetched
        p.sync._connected = False  # as after a reconnect: a full sweep again
        await p.until_idle()
        assert p.sync.stats.rows_fetched == fetched
        assert p.sync.stats.buckets_compared >= 12
    finally:
        await p.close()


async def test_only_differing_replicas_of_a_bucket_are_fetched(tmp_path: Path, clock: FakeClock, peer: Peer) -> None:
    await peer.store.commit({}, slots("s", "r1", (T0 - 60, "like", 5)) + slots("s", "r2", (T0 - 60, "like", 1)), 0)
    await clock.advance(HORIZON_S + 60)
    p = await puller(tmp_path / "mine.db", peer.address, clock)
    try:
        await p.store.commit({}, slots("s", "r1", (T0 - 60, "like", 9)), 0)  # newer here
        await p.until_idle()
        assert dump(p.path) == [("s", T0 - 60, "like", "r1", 9), ("s", T0 - 60, "like", "r2", 1)]
        assert p.sync.stats.rows_fetched == 2  # r1 (differs; the max keeps 9) and r2
    finally:
        await p.close()


async def test_a_late_write_after_the_sweep_arrives_by_the_change_feed(
    tmp_path: Path, clock: FakeClock, peer: Peer
) -> None:
    await fill(peer.store, streams=2, minutes=2)
    await clock.advance(HORIZON_S + 60)
    p = await puller(tmp_path / "b.db", peer.address, clock)
    try:
        await p.until_idle()
        sealed = clock.wall_ms() // 1000 - HORIZON_S
        # The peer learns of a window long sealed (say, after a partition healed): it is marked changed.
        await peer.store.commit({}, slots("s0", "r9", (T0 - 90, "like", 4)), 0, sealed_before_s=sealed)
        await p.until_idle()
        assert dump(p.path) == dump(peer.path)
        assert ("s0", T0 - 90, "like", "r9", 4) in dump(p.path)
    finally:
        await p.close()


async def test_each_newly_sealed_minute_is_swept_once(tmp_path: Path, clock: FakeClock, peer: Peer) -> None:
    p = await puller(tmp_path / "b.db", peer.address, clock)
    try:
        await p.until_idle()
        # Written while open (say, by delta gossip the puller missed); sealed a minute and a horizon later.
        await peer.store.commit({}, slots("s", "r1", (T0 + 5, "like", 3)), 0)
        await p.until_idle()
        assert dump(p.path) == []
        await clock.advance(60 + HORIZON_S)
        await p.until_idle()
        assert dump(p.path) == [("s", T0 + 5, "like", "r1", 3)]
    finally:
        await p.close()


async def test_a_peer_that_is_down_fails_rounds_and_is_swept_again_when_back(tmp_path: Path, clock: FakeClock) -> None:
    peer = await Peer.start(tmp_path / "peer.db", clock)
    await fill(peer.store, streams=1, minutes=1)
    await clock.advance(HORIZON_S + 60)
    address = peer.address
    p = await puller(tmp_path / "b.db", address, clock, HistorySyncConfig(rpc_timeout_s=2))
    try:
        await p.until_idle()
        await peer.server.stop(None)
        assert not await p.sync.round_safely(p.stub)
        assert p.sync.stats.failures == 1
        server = grpc.aio.server()
        node = RegionGossipNode("a/agg-0", "a", "aggregator", RegionState(), clock)
        GossipServicer(node, peer.reader).add_to_server(server)
        server.add_insecure_port(address)
        await server.start()
        peer.server = server
        await peer.store.commit({}, slots("s9", "r1", (T0 - 120, "like", 1)), 0)  # written while we were apart
        await asyncio.wait_for(p.channel.channel_ready(), 30)
        await p.until_idle()
        assert p.sync.stats.full_sweeps == 2
        assert dump(p.path) == dump(peer.path)
    finally:
        await p.close()
        await peer.stop()


async def test_history_calls_reject_bad_requests(clock: FakeClock, peer: Peer) -> None:
    async with grpc.aio.insecure_channel(peer.address) as channel:
        stub = gossip_pb2_grpc.GossipStub(channel)
        bad = [
            stub.HistoryDigests(gossip_pb2.HistoryDigestsRequest(limit=5)),
            stub.HistoryDigests(
                gossip_pb2.HistoryDigestsRequest(range=gossip_pb2.HistoryRange(minute_lo=5, minute_hi=1), limit=5)
            ),
            stub.HistoryDigests(gossip_pb2.HistoryDigestsRequest(changes=gossip_pb2.HistoryChanges(), limit=5000)),
            stub.HistoryRows(gossip_pb2.HistoryRowsRequest(replica="r", limit=10)),
            stub.HistoryRows(
                gossip_pb2.HistoryRowsRequest(bucket=gossip_pb2.HistoryBucketRef(stream_id="s", minute=1), limit=0)
            ),
        ]
        for call in bad:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_node_without_stored_history_says_so(clock: FakeClock) -> None:
    server = grpc.aio.server()
    GossipServicer(RegionGossipNode("a/b", "a", "broadcaster", RegionState(), clock)).add_to_server(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await gossip_pb2_grpc.GossipStub(channel).HistoryDigests(
                    gossip_pb2.HistoryDigestsRequest(changes=gossip_pb2.HistoryChanges(), limit=0)
                )
            assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        await server.stop(None)


# -- the stored-history schema -------------------------------------------------------------


async def test_bucket_digests_are_per_replica_and_see_any_slot_change(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.db")
    reader = HistoryReader(str(tmp_path / "s.db"))
    try:
        await store.commit(
            {}, slots("s", "r1", (T0, "like", 1), (T0 + 1, "like", 2)) + slots("s", "r2", (T0, "x", 3)), 0
        )
        d = await reader.digests([(M0, "s")])
        assert d[(M0, "s")] == {
            "r1": bucket_hash([(T0, "like", 1), (T0 + 1, "like", 2)]),
            "r2": bucket_hash([(T0, "x", 3)]),
        }
        await store.commit({}, slots("s", "r1", (T0 + 1, "like", 3)), 0)
        after = await reader.digests([(M0, "s"), (M0 + 1, "s")])
        assert after[(M0, "s")]["r1"] != d[(M0, "s")]["r1"] and after[(M0, "s")]["r2"] == d[(M0, "s")]["r2"]
        assert after[(M0 + 1, "s")] == {}
        rows, more = await reader.rows((M0, "s"), "r1", None, 1)
        assert rows == [(T0, "like", 1)] and more
        rows, more = await reader.rows((M0, "s"), "r1", (T0, "like"), 5)
        assert rows == [(T0 + 1, "like", 3)] and not more
    finally:
        await store.close()
        await reader.close()


async def test_a_version_1_store_is_migrated_and_keeps_its_windows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            """
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
            CREATE TABLE watermarks (session_id BLOB PRIMARY KEY, seq INTEGER NOT NULL CHECK (seq >= 0),
              updated_ms INTEGER NOT NULL) WITHOUT ROWID;
            CREATE TABLE counters (collection TEXT NOT NULL, key TEXT NOT NULL, replica TEXT NOT NULL,
              count INTEGER NOT NULL CHECK (count >= 0), PRIMARY KEY (collection, key, replica)) WITHOUT ROWID;
            CREATE TABLE windows (stream TEXT NOT NULL, emoji TEXT NOT NULL, start_s INTEGER NOT NULL,
              replica TEXT NOT NULL, count INTEGER NOT NULL CHECK (count >= 0),
              PRIMARY KEY (stream, emoji, start_s, replica)) WITHOUT ROWID;
            CREATE INDEX windows_by_start ON windows (start_s);
            INSERT INTO meta VALUES ('schema_version', '1'), ('generation', '00000000000000aa');
            """
        )
        conn.execute("INSERT INTO windows VALUES ('s', 'like', ?, 'r1', 4)", (T0,))
        conn.execute("INSERT INTO windows VALUES ('s', 'fire', ?, 'r1', 2)", (T0 + 61,))
    store = await Store.open(path)
    try:
        assert store.node_generation() == "00000000000000aa"
        assert dump(path) == [("s", T0, "like", "r1", 4), ("s", T0 + 61, "fire", "r1", 2)]
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
                str(SCHEMA_VERSION),
            )
            assert sorted(conn.execute("SELECT minute, stream, replica FROM window_buckets")) == [
                (M0, "s", "r1"),
                (M0 + 1, "s", "r1"),
            ]
        assert await store.window_counts("s", T0, T0 + 120) == [("fire", T0 + 61, 2), ("like", T0, 4)]
    finally:
        await store.close()
