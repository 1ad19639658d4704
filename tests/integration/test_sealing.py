"""Sealed windows leave memory and live on disk: aggregators stop writing them, broadcasters write them through to
their store, and GetHistory answers exactly across the seal line, after a restart too.

Real Aggregators and Stores (real SQLite files) on a FakeClock; a broadcaster replica fed by the same calls a
gossip session makes (``delta_since`` + ``merge_part``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from reactmesh.merge.clock import FakeClock
from reactmesh.merge.keyed import KeyedGCounter
from reactmesh.region_node.aggregator.config import AggregatorConfig
from reactmesh.region_node.aggregator.core import Aggregator
from reactmesh.region_node.aggregator.pending import ForwardStream
from reactmesh.region_node.aggregator.store import Store
from reactmesh.region_node.query import QueryServicer
from reactmesh.region_node.sqlite import StoreError
from reactmesh.region_node.state import TOTALS, WINDOWS, RegionState
from reactmesh.region_node.windows.digests import HistoryReader
from reactmesh.region_node.windows.sealer import SEAL_EVERY_S, WindowWriter
from reactmesh.v1 import aggregator_pb2 as pb
from reactmesh.v1 import common_pb2

HORIZON_S = 30
START_MS = 1_700_000_000_000  # FakeClock's start, a whole minute
T0 = START_MS // 1000


def entry(sid: bytes, seq: int, accepted_at_ms: int, count: int = 1, stream: str = "s1") -> pb.ForwardedBatch:
    return pb.ForwardedBatch(
        session_id=sid,
        seq=seq,
        stream_id=stream,
        accepted_at_ms=accepted_at_ms,
        counts=[common_pb2.ReactionCount(emoji="like", count=count)],
    )


async def aggregator(path: Path, clock: FakeClock) -> Aggregator:
    cfg = AggregatorConfig(node_id="a/agg-0", region="a", db_path=str(path), window_horizon_s=HORIZON_S)
    agg = Aggregator(cfg, clock)
    await agg.start()
    return agg


async def send(agg: Aggregator, *entries: pb.ForwardedBatch) -> None:
    fwd = ForwardStream()
    agg.attach(fwd)
    agg.receive(fwd, pb.EdgeBatch(batch_id=1, entries=entries))
    await agg.tick()
    ack = fwd.out.get_nowait()
    assert isinstance(ack, pb.EdgeAck)
    assert list(ack.outcomes) == [pb.EdgeAck.APPLIED] * len(entries)
    agg.detach(fwd)


def window_starts(state: RegionState) -> list[int]:
    return sorted({int(k[2]) for k, _ in state.windows.items()})


def stored(path: Path) -> dict[int, int]:
    with sqlite3.connect(path) as conn:
        return {int(s): int(c) for s, c in conn.execute("SELECT start_s, sum(count) FROM windows GROUP BY start_s")}


async def test_aggregator_memory_holds_open_windows_only_and_disk_holds_all(tmp_path: Path, clock: FakeClock) -> None:
    agg = await aggregator(tmp_path / "a.db", clock)
    try:
        sid = bytes(16)
        for i in range(1, 61):  # one tap a second for a minute
            await send(agg, entry(sid, i, clock.wall_ms()))
            await clock.advance(1)
        open_starts = window_starts(agg.state)
        assert open_starts[-1] == T0 + 59
        assert T0 + 60 - HORIZON_S - SEAL_EVERY_S <= open_starts[0] <= T0 + 60 - HORIZON_S
        assert stored(tmp_path / "a.db") == {T0 + i: 1 for i in range(60)}
        assert agg.state.totals.value(("s1", "like")) == 60
        assert agg.statistics()["windows_sealed"] > 0
    finally:
        await agg.close()


async def test_a_batch_accepted_before_the_seal_line_counts_in_the_current_second(
    tmp_path: Path, clock: FakeClock
) -> None:
    agg = await aggregator(tmp_path / "a.db", clock)
    try:
        sid = bytes(16)
        await send(agg, entry(sid, 1, clock.wall_ms(), count=5))
        await clock.advance(HORIZON_S + SEAL_EVERY_S + 1)
        await send(agg, entry(sid, 2, clock.wall_ms()))  # a tick past the seal step: T0 is sealed
        assert T0 not in window_starts(agg.state)
        now_s = clock.wall_ms() // 1000
        # Accepted at T0 (within the 60 s tolerance, but sealed): counted now, and T0's stored slot is untouched.
        await send(agg, entry(sid, 3, START_MS, count=7))
        assert stored(tmp_path / "a.db") == {T0: 5, now_s: 8}
        assert agg.state.totals.value(("s1", "like")) == 13
    finally:
        await agg.close()


async def test_entries_applied_before_a_seal_step_commit_into_the_current_second(
    tmp_path: Path, clock: FakeClock
) -> None:
    agg = await aggregator(tmp_path / "a.db", clock)
    try:
        sid = bytes(16)
        await send(agg, entry(sid, 1, clock.wall_ms(), count=2))
        await clock.advance(HORIZON_S + SEAL_EVERY_S)
        fwd = ForwardStream()
        agg.attach(fwd)
        # Applied while T0 is still open in memory; the next tick seals T0 before this commit's slots are built.
        applied_at_s = clock.wall_ms() // 1000
        old_ms = (applied_at_s - HORIZON_S - 1) * 1000
        agg.receive(fwd, pb.EdgeBatch(batch_id=1, entries=[entry(sid, 2, old_ms, 3)]))
        agg._retention.line.advance()  # the seal line passes the entry's window between apply and commit
        await agg.tick()
        assert isinstance(fwd.out.get_nowait(), pb.EdgeAck)
        assert stored(tmp_path / "a.db") == {T0: 2, applied_at_s: 3}
    finally:
        await agg.close()


async def test_a_restarted_aggregator_reloads_open_windows_only(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "a.db"
    agg = await aggregator(path, clock)
    sid = bytes(16)
    await send(agg, entry(sid, 1, clock.wall_ms()))
    await clock.advance(HORIZON_S + 5)
    await send(agg, entry(sid, 2, clock.wall_ms()))
    await agg.close()
    agg = await aggregator(path, clock)
    try:
        assert window_starts(agg.state) == [T0 + HORIZON_S + 5]
        assert agg.state.totals.value(("s1", "like")) == 2
        assert stored(path) == {T0: 1, T0 + HORIZON_S + 5: 1}
    finally:
        await agg.close()


class Broadcaster:
    """A broadcaster's replica with its history store, writer and Query service, as region_node.node wires them."""

    def __init__(self, state: RegionState, store: Store, reader: HistoryReader, clock: FakeClock) -> None:
        self.state, self.store, self.reader = state, store, reader
        self.writer = WindowWriter(state, store, clock, horizon_s=HORIZON_S, retention_s=86_400)
        self.query = QueryServicer(state, clock, reader, lambda: self.writer.sealed_before_s)
        self.writer.add_seal_listener(self.query.forget_windows_before)

    @classmethod
    async def open(cls, path: Path, clock: FakeClock) -> Broadcaster:
        store = await Store.open(path)
        return cls(RegionState(), store, HistoryReader(str(path)), clock)

    async def close(self) -> None:
        await self.store.close()
        await self.reader.close()


def windows(*slots: tuple[int, str, int]) -> KeyedGCounter:
    out = KeyedGCounter()
    for start_s, replica, count in slots:
        out.increment(("s1", "like", start_s), replica, count)
    return out


async def test_broadcaster_writes_through_seals_and_answers_history_exactly(tmp_path: Path, clock: FakeClock) -> None:
    b = await Broadcaster.open(tmp_path / "b.db", clock)
    try:
        b.state.merge(WINDOWS, windows((T0, "r1", 3), (T0 + 1, "r1", 4), (T0 + 1, "r2", 1)))
        b.state.merge(TOTALS, KeyedGCounter().increment(("s1", "like"), "r1", 7))
        await b.writer.step()
        assert stored(tmp_path / "b.db") == {T0: 3, T0 + 1: 5}
        assert await b.query.history("s1", T0, T0 + 60) == (1, {"like": [(T0, 3), (T0 + 1, 5)]})
        await clock.advance(HORIZON_S + SEAL_EVERY_S + 2)
        b.state.merge(WINDOWS, windows((T0 + HORIZON_S + 20, "r1", 2)))
        await b.writer.step()
        assert window_starts(b.state) == [T0 + HORIZON_S + 20]  # T0 and T0+1 left memory
        want = (1, {"like": [(T0, 3), (T0 + 1, 5), (T0 + HORIZON_S + 20, 2)]})
        assert await b.query.history("s1", T0, T0 + 120) == want
        assert await b.query.history("s1", T0, T0 + 120, step_s=60) == (60, {"like": [(T0, 10)]})
        assert await b.query.history("s1", T0, T0 + 120, emojis=["fire"]) == (1, {"fire": []})
    finally:
        await b.close()


async def test_a_late_delta_for_a_sealed_window_is_stored_and_marks_its_bucket_changed(
    tmp_path: Path, clock: FakeClock
) -> None:
    b = await Broadcaster.open(tmp_path / "b.db", clock)
    try:
        b.state.merge(WINDOWS, windows((T0, "r1", 3)))
        await b.writer.step()
        await clock.advance(HORIZON_S + SEAL_EVERY_S + 1)
        await b.writer.step()
        assert window_starts(b.state) == []
        head = b.store.changed_head
        b.state.merge(WINDOWS, windows((T0, "r1", 2), (T0, "r2", 6)))  # after a partition: one stale, one new slot
        await b.writer.step()
        assert stored(tmp_path / "b.db") == {T0: 9}  # slot-wise max: r1 keeps 3
        assert b.store.changed_head == head + 1
        page = await b.reader.changes_page(head, 10)
        assert [(d.minute, d.stream) for d in page.buckets] == [(T0 // 60, "s1")]
        await clock.advance(SEAL_EVERY_S)
        await b.writer.step()
        assert window_starts(b.state) == []  # and it left memory again
        assert b.writer.stats["late_windows"] == 1
    finally:
        await b.close()


async def test_history_after_a_restart_merges_disk_and_memory_slot_by_slot(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "b.db"
    b = await Broadcaster.open(path, clock)
    b.state.merge(WINDOWS, windows((T0, "r1", 5), (T0 + 50, "r1", 4), (T0 + 50, "r2", 2)))
    await b.writer.step()
    await clock.advance(40)
    await b.writer.step()
    await b.close()
    b = await Broadcaster.open(path, clock)  # a new, empty replica over the same file
    try:
        # Gossip brings r1's newer slot of the open window back first; r2's is still only on disk.
        b.state.merge(WINDOWS, windows((T0 + 50, "r1", 6)))
        assert await b.query.history("s1", T0, T0 + 60) == (1, {"like": [(T0, 5), (T0 + 50, 8)]})
    finally:
        await b.close()


async def test_a_failed_write_keeps_windows_in_memory_until_written(tmp_path: Path, clock: FakeClock) -> None:
    b = await Broadcaster.open(tmp_path / "b.db", clock)
    try:
        b.state.merge(WINDOWS, windows((T0, "r1", 3)))
        await b.store.close()
        await clock.advance(HORIZON_S + SEAL_EVERY_S + 1)
        with pytest.raises(StoreError):
            await b.writer.step()
        b.writer.seal()
        assert window_starts(b.state) == [T0]  # not on disk yet: kept
        assert b.writer.dirty == 1 and b.writer.stats["write_failures"] == 1
    finally:
        await b.reader.close()
