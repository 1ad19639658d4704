"""The aggregator behind a real gRPC server on loopback, with a real SQLite file and a FakeClock.

Ticks are driven explicitly with ``await aggregator.tick()``; the only waiting is for a batch to
cross the socket (``eventually`` on the server's counters), never for a timer.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest

from reactmesh.merge.clock import FakeClock
from reactmesh.merge.errors import ConfigError
from reactmesh.merge.maxmap import MaxMap
from reactmesh.region_node import sqlite as sqlite_module
from reactmesh.region_node.aggregator.config import AggregatorConfig
from reactmesh.region_node.aggregator.core import Aggregator
from reactmesh.region_node.aggregator.pending import CommitFacts
from reactmesh.region_node.aggregator.service import AggregatorService
from reactmesh.region_node.aggregator.store import Store
from reactmesh.region_node.state import TOTALS
from reactmesh.v1 import aggregator_pb2 as pb
from reactmesh.v1 import aggregator_pb2_grpc, common_pb2
from tests.support.polling import eventually

APPLIED, DUPLICATE, REFUSED = pb.EdgeAck.APPLIED, pb.EdgeAck.DUPLICATE, pb.EdgeAck.REFUSED


def session(i: int) -> bytes:
    return bytes([i]) * 16


def entry(
    sid: bytes,
    seq: int,
    stream: str = "s1",
    counts: Iterable[tuple[str, int]] = (("like", 1),),
    accepted_at_ms: int = 0,
) -> pb.ForwardedBatch:
    return pb.ForwardedBatch(
        session_id=sid,
        seq=seq,
        stream_id=stream,
        counts=[common_pb2.ReactionCount(emoji=e, count=n) for e, n in counts],
        accepted_at_ms=accepted_at_ms,
    )


def batch(batch_id: int, *entries: pb.ForwardedBatch) -> pb.EdgeBatch:
    return pb.EdgeBatch(batch_id=batch_id, entries=entries)


class Node:
    """An aggregator served on 127.0.0.1:0, and a channel to it."""

    def __init__(self, aggregator: Aggregator, server: grpc.aio.Server, channel: grpc.aio.Channel) -> None:
        self.agg = aggregator
        self.server = server
        self.channel = channel
        self.stub = aggregator_pb2_grpc.AggregatorStub(channel)
        self.stopped = False

    def forward(self) -> Any:
        return self.stub.Forward()

    async def received(self, applied: int = 0, duplicate: int = 0, refused: int = 0) -> None:
        """Wait until the server has read at least this many entries since start, by outcome."""

        def reached() -> bool:
            s = self.agg.statistics()
            got = (s["pending_entries"] + s["entries_applied"], s["entries_duplicate"], s["entries_refused"])
            return all(g >= w for g, w in zip(got, (applied, duplicate, refused), strict=True))

        await eventually(reached)

    async def stop(self, *, kill: bool = False) -> None:
        """Stop serving. ``kill``: drop everything uncommitted, as kill -9 would (no final tick)."""
        self.stopped = True
        if kill:
            await self.server.stop(None)
            assert self.agg._store is not None
            await self.agg._store.close()  # the file handle a dead process would have lost
        else:
            await self.agg.close()
            await self.server.stop(None)
        await self.channel.close()


@asynccontextmanager
async def serving(config: AggregatorConfig, clock: FakeClock) -> AsyncIterator[Node]:
    node = await start(config, clock)
    try:
        yield node
    finally:
        if not node.stopped:
            await node.stop()


async def start(config: AggregatorConfig, clock: FakeClock) -> Node:
    agg = Aggregator(config, clock)
    await agg.start()
    server = grpc.aio.server()
    AggregatorService(agg).add_to_server(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return Node(agg, server, grpc.aio.insecure_channel(f"127.0.0.1:{port}"))


@pytest.fixture
def config(tmp_path: Path) -> AggregatorConfig:
    return AggregatorConfig(node_id="a/agg-0", region="a", db_path=str(tmp_path / "agg-0.db"))


def total(agg: Aggregator, stream: str = "s1", emoji: str = "like") -> int:
    return agg.state.totals.value((stream, emoji))


async def test_entry_is_applied_once_and_its_resend_is_duplicate(config: AggregatorConfig, clock: FakeClock) -> None:
    async with serving(config, clock) as node:
        call = node.forward()
        await call.write(batch(1, entry(session(1), 1, counts=[("like", 3)])))
        await node.received(applied=1)
        await node.agg.tick()
        assert list((await call.read()).outcomes) == [APPLIED]
        await call.write(batch(2, entry(session(1), 1, counts=[("like", 3)])))
        await node.received(applied=1, duplicate=1)
        await node.agg.tick()
        ack = await call.read()
        assert (ack.batch_id, list(ack.outcomes)) == (2, [DUPLICATE])
        assert total(node.agg) == 3
        stats = node.agg.statistics()
        assert (stats["entries_applied"], stats["entries_duplicate"], stats["taps_applied"]) == (1, 1, 3)


async def test_duplicate_within_one_tick_is_caught(config: AggregatorConfig, clock: FakeClock) -> None:
    async with serving(config, clock) as node:
        call = node.forward()
        await call.write(batch(1, entry(session(1), 1), entry(session(1), 1), entry(session(1), 2)))
        await node.received(applied=2, duplicate=1)
        await node.agg.tick()
        assert list((await call.read()).outcomes) == [APPLIED, DUPLICATE, APPLIED]
        assert total(node.agg) == 2


async def test_no_ack_is_sent_before_the_commit_that_makes_the_entry_durable(
    config: AggregatorConfig, clock: FakeClock
) -> None:
    async with serving(config, clock) as node:
        call = node.forward()
        await call.write(batch(1, entry(session(1), 1)))
        read = asyncio.create_task(call.read())
        await node.received(applied=1)
        for _ in range(20):
            await asyncio.sleep(0)
        assert not read.done()
        assert all(fwd.out.empty() for fwd in node.agg._streams)
        with sqlite3.connect(config.db_path) as db:
            assert db.execute("SELECT count(*) FROM watermarks").fetchone() == (0,)
        await node.agg.tick()
        assert list((await read).outcomes) == [APPLIED]
        with sqlite3.connect(config.db_path) as db:
            assert db.execute("SELECT seq FROM watermarks").fetchall() == [(1,)]


async def test_acks_come_in_batch_order_with_one_outcome_per_entry(config: AggregatorConfig, clock: FakeClock) -> None:
    async with serving(config, clock) as node:
        call = node.forward()
        await call.write(batch(7, entry(session(1), 1), entry(session(2), 1)))
        await call.write(batch(8, entry(session(1), 1), entry(session(3), 1, stream="")))
        await node.received(applied=2, duplicate=1, refused=1)
        await node.agg.tick()
        await call.write(batch(9, entry(session(2), 2)))
        await node.received(applied=3, duplicate=1, refused=1)
        await node.agg.tick()
        acks = [await call.read() for _ in range(3)]
        assert [(a.batch_id, list(a.outcomes)) for a in acks] == [
            (7, [APPLIED, APPLIED]),
            (8, [DUPLICATE, REFUSED]),
            (9, [APPLIED]),
        ]


async def test_half_closed_stream_ends_ok_after_its_last_ack(config: AggregatorConfig, clock: FakeClock) -> None:
    async with serving(config, clock) as node:
        # Half-closed while its batch waits for the commit: the call ends right after that ack.
        call = node.forward()
        await call.write(batch(1, entry(session(1), 1)))
        await call.done_writing()
        await node.received(applied=1)
        await eventually(lambda: all(f.reader is not None and f.reader.done() for f in node.agg._streams))
        await node.agg.tick()
        assert (await call.read()).batch_id == 1
        assert await call.code() == grpc.StatusCode.OK
        # Half-closed with nothing unacked: the call ends at once, no tick needed.
        call = node.forward()
        await call.write(batch(1, entry(session(2), 1)))
        await node.received(applied=2)
        await node.agg.tick()
        assert (await call.read()).batch_id == 1
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.OK


async def test_resent_batch_is_counted_once_after_a_graceful_restart(
    config: AggregatorConfig, clock: FakeClock
) -> None:
    node = await start(config, clock)
    call = node.forward()
    await call.write(batch(1, entry(session(1), 1, counts=[("like", 2)]), entry(session(2), 5)))
    await node.received(applied=2)
    await node.stop()  # close() commits what is pending; say its ack is lost on the way
    replica = node.agg.replica_id

    async with serving(config, clock) as again:
        assert again.agg.replica_id == replica
        assert total(again.agg) == 3
        call = again.forward()
        await call.write(batch(1, entry(session(1), 1, counts=[("like", 2)]), entry(session(2), 5)))
        await again.received(duplicate=2)
        await again.agg.tick()
        assert list((await call.read()).outcomes) == [DUPLICATE, DUPLICATE]
        assert total(again.agg) == 3


async def test_resent_batch_is_counted_once_after_aggregator_kill(config: AggregatorConfig, clock: FakeClock) -> None:
    node = await start(config, clock)
    call = node.forward()
    await call.write(batch(1, entry(session(1), 1, counts=[("like", 4)])))
    await node.received(applied=1)
    await node.agg.tick()
    assert list((await call.read()).outcomes) == [APPLIED]
    # Committed but, say, the ack was lost with the edge: the edge resends to a new process.
    await node.stop(kill=True)

    async with serving(config, clock) as again:
        assert total(again.agg) == 4
        call = again.forward()
        await call.write(batch(1, entry(session(1), 1, counts=[("like", 4)])))
        await again.received(duplicate=1)
        await again.agg.tick()
        assert list((await call.read()).outcomes) == [DUPLICATE]
        assert total(again.agg) == 4


async def test_uncommitted_entries_are_lost_on_kill_and_counted_once_when_resent(
    config: AggregatorConfig, clock: FakeClock
) -> None:
    node = await start(config, clock)
    call = node.forward()
    await call.write(batch(1, entry(session(1), 1, counts=[("like", 4)])))
    await node.received(applied=1)
    assert total(node.agg) == 0  # applied in memory only
    await node.stop(kill=True)  # before any tick: never acked

    async with serving(config, clock) as again:
        assert total(again.agg) == 0
        call = again.forward()
        await call.write(batch(1, entry(session(1), 1, counts=[("like", 4)])))
        await again.received(applied=1)
        await again.agg.tick()
        assert list((await call.read()).outcomes) == [APPLIED]
        assert total(again.agg) == 4
    with sqlite3.connect(config.db_path) as db:
        assert db.execute("SELECT sum(count) FROM counters").fetchone() == (4,)


async def test_state_holds_only_committed_counts(config: AggregatorConfig, clock: FakeClock) -> None:
    facts: list[CommitFacts] = []
    grown: list[tuple[str, list[Any]]] = []
    async with serving(config, clock) as node:
        node.agg.add_commit_listener(facts.append)
        node.agg.state.add_listener(lambda name, _state, keys: grown.append((name, keys)))
        call = node.forward()
        accepted = clock.wall_ms() - 1500
        await call.write(batch(1, entry(session(1), 1, counts=[("like", 2), ("wow", 1)], accepted_at_ms=accepted)))
        await node.received(applied=1)
        assert len(node.agg.state.totals) == 0 and len(node.agg.state.windows) == 0
        assert node.agg.statistics()["pending_entries"] == 1
        await node.agg.tick()
        await call.read()
        assert total(node.agg) == 2 and total(node.agg, emoji="wow") == 1
        assert node.agg.state.windows.value(("s1", "like", accepted // 1000)) == 2
        assert dict(node.agg.state.totals.slots(("s1", "like"))) == {node.agg.replica_id: 2}
        assert sorted(name for name, _ in grown) == ["totals", "watermarks", "windows"]
        [f] = facts
        assert (f.entries, f.taps, f.sessions) == (1, 3, 1)
        assert f.oldest_accepted_at_ms == accepted and f.mean_accepted_at_ms == accepted
        assert f.committed_at_ms == clock.wall_ms() and f.commit_seconds > 0


async def test_window_falls_back_to_the_aggregator_clock_when_accepted_at_is_missing_or_far_off(
    config: AggregatorConfig, clock: FakeClock
) -> None:
    async with serving(config, clock) as node:
        call = node.forward()
        far = clock.wall_ms() - 3_600_000
        await call.write(batch(1, entry(session(1), 1), entry(session(2), 1, accepted_at_ms=far)))
        await node.received(applied=2)
        await node.agg.tick()
        await call.read()
        assert list(node.agg.state.windows.keys()) == [("s1", "like", clock.wall_ms() // 1000)]


async def test_invalid_entries_are_refused_and_not_counted(config: AggregatorConfig, clock: FakeClock) -> None:
    async with serving(replace(config, max_entries_per_batch=4, max_count=100), clock) as node:
        call = node.forward()
        await call.write(
            batch(
                1,
                entry(session(1), 1, stream=""),
                entry(session(2), 1, counts=[("like", 0)]),
                entry(session(3), 1, counts=[]),
                entry(b"short", 1),
            )
        )
        await call.write(
            batch(
                2,
                entry(session(4), 0),
                entry(session(5), 1, counts=[("like", 101)]),
                entry(session(6), 1, counts=[("Bad Emoji", 1)]),
                entry(session(7), 1, stream="s\x1fx"),
            )
        )
        await call.write(batch(3, *(entry(session(10 + i), 1) for i in range(5))))  # more than 4 entries
        await call.write(batch(4, entry(session(8), 2**63)))
        await node.received(refused=14)
        await node.agg.tick()
        acks = [await call.read() for _ in range(4)]
        assert [list(a.outcomes) for a in acks] == [[REFUSED] * 4, [REFUSED] * 4, [REFUSED] * 5, [REFUSED]]
        assert len(node.agg.state.totals) == 0
        assert node.agg.statistics()["sessions_tracked"] == 0


async def test_concurrent_streams_from_several_edges_are_all_counted(
    config: AggregatorConfig, clock: FakeClock
) -> None:
    async with serving(config, clock) as node:
        calls = [node.forward() for _ in range(3)]
        for edge, call in enumerate(calls):
            for b in range(1, 4):
                await call.write(batch(b, *(entry(session(edge * 10 + i), b) for i in range(5))))
        await node.received(applied=45)
        await node.agg.tick()
        for call in calls:
            assert [(await call.read()).batch_id for _ in range(3)] == [1, 2, 3]
        assert total(node.agg) == 45


async def test_garbage_on_the_stream_ends_that_call_and_the_server_keeps_serving(
    config: AggregatorConfig, clock: FakeClock
) -> None:
    async with serving(config, clock) as node:
        raw = node.channel.stream_stream(
            "/reactmesh.v1.Aggregator/Forward", request_serializer=lambda b: b, response_deserializer=lambda b: b
        )()
        await raw.write(b"\xff\xff\xff\xff not an EdgeBatch")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await raw.read()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        call = node.forward()
        await call.write(batch(1, entry(session(1), 1)))
        await node.received(applied=1)
        await node.agg.tick()
        assert list((await call.read()).outcomes) == [APPLIED]


async def test_failed_commit_acks_nothing_and_the_resend_is_applied_again(
    config: AggregatorConfig, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serving(config, clock) as node:
        assert node.agg._store is not None
        store = node.agg._store
        real_commit = store.commit

        async def failing_commit(*args: Any, **kwargs: Any) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        call = node.forward()
        await call.write(batch(1, entry(session(1), 1, counts=[("like", 5)])))
        await node.received(applied=1)
        monkeypatch.setattr(store, "commit", failing_commit)
        with pytest.raises(sqlite3.OperationalError):
            await node.agg.tick()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call.read()
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert total(node.agg) == 0
        assert node.agg.statistics()["sessions_tracked"] == 0
        monkeypatch.setattr(store, "commit", real_commit)

        call = node.forward()
        await call.write(batch(1, entry(session(1), 1, counts=[("like", 5)])))
        await node.received(applied=1)
        await node.agg.tick()
        assert list((await call.read()).outcomes) == [APPLIED]
        assert total(node.agg) == 5
        assert node.agg.statistics()["commit_failures"] == 1


async def test_commit_failing_on_the_writer_thread_midway_acks_nothing_and_writes_nothing(
    config: AggregatorConfig, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_multi_row = sqlite_module.multi_row
    calls = 0

    def failing_multi_row(sql: str, rows: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:  # the watermarks are written, the slots are not yet
            raise RuntimeError("writer thread failed")
        return real_multi_row(sql, rows)

    async with serving(config, clock) as node:
        assert node.agg._store is not None
        call = node.forward()
        await call.write(batch(1, entry(session(1), 1, counts=[("like", 5)])))
        await node.received(applied=1)
        monkeypatch.setattr(sqlite_module, "multi_row", failing_multi_row)
        with pytest.raises(RuntimeError, match="writer thread failed"):
            await node.agg.tick()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call.read()
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert total(node.agg) == 0
        assert await node.agg._store.load_watermarks() == []
        assert len((await node.agg._store.load_collections())[TOTALS]) == 0
        monkeypatch.setattr(sqlite_module, "multi_row", real_multi_row)

        call = node.forward()
        await call.write(batch(1, entry(session(1), 1, counts=[("like", 5)])))
        await node.received(applied=1)
        await node.agg.tick()
        assert list((await call.read()).outcomes) == [APPLIED]
        assert total(node.agg) == 5


async def test_windows_older_than_retention_are_pruned_from_memory_and_disk(
    config: AggregatorConfig, clock: FakeClock
) -> None:
    async with serving(replace(config, window_retention_s=120), clock) as node:
        call = node.forward()
        await call.write(batch(1, entry(session(1), 1)))
        await node.received(applied=1)
        await node.agg.tick()
        await call.read()
        old_window = clock.wall_ms() // 1000
        await clock.advance(130)
        await call.write(batch(2, entry(session(1), 2)))
        await node.received(applied=2)
        await node.agg.tick()
        await call.read()
        new_window = clock.wall_ms() // 1000
        assert list(node.agg.state.windows.keys()) == [("s1", "like", new_window)]
        assert total(node.agg) == 2  # totals are not subject to retention
        with sqlite3.connect(config.db_path) as db:
            assert db.execute("SELECT start_s FROM windows").fetchall() == [(new_window,)]
        assert node.agg.statistics()["windows_expired"] == 1
        assert old_window < new_window


async def test_watermark_of_a_session_silent_beyond_ttl_is_forgotten_at_the_next_floor_step(
    config: AggregatorConfig, clock: FakeClock
) -> None:
    # Committed watermarks live only in the replicated map, so they leave memory (and the store) when its floor,
    # moved in steps of FLOOR_STEP_MS, passes them: after at least the TTL and at most the TTL plus one step.
    cfg = replace(config, watermark_ttl_s=60)
    async with serving(cfg, clock) as node:
        call = node.forward()
        await call.write(batch(1, entry(session(1), 1), entry(session(2), 1)))
        await node.received(applied=2)
        await node.agg.tick()
        await call.read()
        await clock.advance(40)
        await call.write(batch(2, entry(session(2), 2)))
        await node.received(applied=3)
        await node.agg.tick()
        await call.read()
        await clock.advance(30)  # session 1 is past the TTL, but the floor has not stepped yet
        await node.agg.tick()
        assert node.agg.statistics()["sessions_tracked"] == 2
        await clock.advance(30)  # the floor steps to now - TTL, which is session 2's commit time
        await node.agg.tick()
        assert node.agg.statistics()["sessions_tracked"] == 1
        assert node.agg.statistics()["watermarks_expired"] == 1
    with sqlite3.connect(config.db_path) as db:
        assert db.execute("SELECT session_id FROM watermarks").fetchall() == [(session(2),)]


async def test_replica_id_comes_from_the_db_file(tmp_path: Path, config: AggregatorConfig, clock: FakeClock) -> None:
    first = Aggregator(config, clock)
    await first.start()
    await first.close()
    again = Aggregator(config, clock)
    await again.start()
    await again.close()
    other = Aggregator(replace(config, db_path=str(tmp_path / "new-disk.db")), clock)
    await other.start()
    await other.close()
    assert first.replica_id == again.replica_id
    assert first.replica_id.startswith("a/agg-0~")
    assert other.replica_id.startswith("a/agg-0~") and other.replica_id != first.replica_id
    store = await Store.open(config.db_path)
    try:
        assert first.replica_id == f"a/agg-0~{store.node_generation()}"
    finally:
        await store.close()


async def test_run_loop_commits_and_acks_every_tick_of_the_clock(config: AggregatorConfig, clock: FakeClock) -> None:
    config = replace(config, commit_interval_ms=0)
    async with serving(config, clock) as node:
        runner = asyncio.create_task(node.agg.run())
        call = node.forward()
        await call.write(batch(1, entry(session(1), 1)))
        await node.received(applied=1)
        read = asyncio.create_task(call.read())
        await eventually(lambda: clock.pending_sleepers() == 1)
        assert not read.done()
        await clock.advance(config.tick_ms / 1000)
        assert list((await read).outcomes) == [APPLIED]
        await node.stop()
        await runner  # close() ends the loop
    assert node.agg.statistics()["commits"] == 1


async def test_on_demand_a_commit_starts_at_once_and_at_most_one_per_interval(
    config: AggregatorConfig, clock: FakeClock
) -> None:
    config = replace(config, commit_interval_ms=20)
    async with serving(config, clock) as node:
        runner = asyncio.create_task(node.agg.run())
        call = node.forward()
        await call.write(batch(1, entry(session(1), 1)))
        async with asyncio.timeout(5):  # no clock advance: nothing waits for a tick
            assert list((await call.read()).outcomes) == [APPLIED]
        assert node.agg.statistics()["commits"] == 1
        await call.write(batch(2, entry(session(2), 1)))
        await call.write(batch(3, entry(session(3), 1)))
        await node.received(applied=3)
        read = asyncio.create_task(call.read())
        await eventually(lambda: clock.pending_sleepers() == 1)  # the interval since the last commit's start
        for _ in range(20):
            await asyncio.sleep(0)
        assert not read.done()
        await clock.advance(0.02)
        assert list((await read).outcomes) == [APPLIED]
        assert list((await call.read()).outcomes) == [APPLIED]
        assert node.agg.statistics()["commits"] == 2  # batches 2 and 3 in one transaction
        await clock.advance(5.0)  # idle: housekeeping passes, no commit
        assert node.agg.statistics()["commits"] == 2
        await node.stop()
        await runner
    assert node.agg.statistics()["commits"] == 2


async def test_close_commits_and_acks_pending_batches_then_ends_the_call(
    config: AggregatorConfig, clock: FakeClock
) -> None:
    node = await start(config, clock)
    call = node.forward()
    await call.write(batch(1, entry(session(1), 1)))
    await node.received(applied=1)
    await node.agg.close()
    assert list((await call.read()).outcomes) == [APPLIED]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call.read()
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    late = node.forward()
    await late.write(batch(2, entry(session(2), 1)))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await late.read()
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    await node.stop()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("node_id", "agg-0"),
        ("node_id", "b/agg-0"),
        ("node_id", "a/agg~0"),
        ("region", "A!"),
        ("db_path", ":memory:"),
        ("tick_ms", 0),
        ("window_retention_s", 60),
        ("watermark_ttl_s", True),
        ("max_entries_per_batch", 0),
        ("synchronous", "OFF"),
    ],
)
def test_config_names_the_bad_field(config: AggregatorConfig, field: str, value: Any) -> None:
    changes: dict[str, Any] = {field: value}
    with pytest.raises(ConfigError) as err:
        replace(config, **changes)
    assert err.value.field == field


async def test_batch_counted_in_another_region_is_duplicate_after_failover(
    config: AggregatorConfig, clock: FakeClock
) -> None:
    """Watermarks travel with gossip: once another region's watermark for a session reached this
    aggregator, a resend of that session's batches (its client failed over) is not counted again."""
    async with serving(config, clock) as node:
        remote = MaxMap()
        remote.set(session(1), 5)  # region b committed this session's batches up to seq 5
        node.agg.state.merge("watermarks", remote)
        call = node.forward()
        await call.write(batch(1, entry(session(1), 4), entry(session(1), 5), entry(session(1), 6)))
        await node.received(applied=1, duplicate=2)
        await node.agg.tick()
        ack = await call.read()
        assert list(ack.outcomes) == [DUPLICATE, DUPLICATE, APPLIED]
        assert node.agg.state.totals.value(("s1", "like")) == 1
        assert node.agg.state.watermarks.get(session(1)) == 6
        await call.done_writing()


async def test_committed_watermarks_are_held_once_in_the_replicated_map(
    config: AggregatorConfig, clock: FakeClock
) -> None:
    async with serving(config, clock) as node:
        call = node.forward()
        await call.write(batch(1, *(entry(session(i), 1) for i in range(20))))
        await node.received(applied=20)
        await node.agg.tick()
        await call.read()
        assert node.agg._wm == {}  # only uncommitted watermarks live outside state.watermarks
        assert len(node.agg.state.watermarks.keys()) == 20
        await call.write(batch(2, entry(session(3), 1)))
        await node.received(applied=20, duplicate=1)


async def test_a_later_stamped_lower_watermark_from_elsewhere_does_not_let_a_resend_count_twice(
    config: AggregatorConfig, clock: FakeClock
) -> None:
    async with serving(config, clock) as node:
        # Another region committed seq 1 of this session with a clock an hour ahead of ours.
        ahead = MaxMap()
        ahead.set(session(1), 1, stamp=clock.wall_ms() + 3_600_000)
        node.agg.state.merge("watermarks", ahead)
        call = node.forward()
        await call.write(batch(1, entry(session(1), 2)))
        await node.received(applied=1)
        await node.agg.tick()
        await call.read()
        assert node.agg.state.watermarks.get(session(1)) == 2
        await call.write(batch(2, entry(session(1), 2)))  # the resend of a batch whose ack was lost
        await node.received(applied=1, duplicate=1)
        await node.agg.tick()
        assert list((await call.read()).outcomes) == [DUPLICATE]
        assert total(node.agg) == 1
