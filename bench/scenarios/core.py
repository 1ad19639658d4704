"""core: the aggregator's counting core against the Redis-Lua design, on the same entries, in the same run.

Ours: a real ``region_node.aggregator.core.Aggregator`` (real SQLite file, synchronous=FULL, its own ``run()``
loop committing every 100 ms) is fed serialized EdgeBatches of 1024 client-batch entries as fast as it
takes them: each is parsed (``EdgeBatch.FromString``, as the gRPC layer would) and handed to ``Aggregator.receive``
(dedupe by session watermark, increment, per-second window), yielding to the loop between EdgeBatches as
the Forward reader does. The clock is shifted so the run starts at the entries' ``accepted_at_ms``, so
both sides put every entry in the same window. Time runs until the ack of the last EdgeBatch, which is
sent only after the commit that made it durable.

Redis: a fresh ``redis-server`` per run gets the same entries as pre-encoded EVALSHA commands of
``bench.redis_baseline.SCRIPT`` (one per client batch), pipelined two EdgeBatches deep; time runs until
the last reply. It runs twice: without persistence (Redis at its fastest) and with ``appendfsync everysec``.

Entries: ``sessions`` sessions numbering their batches 1, 2, 3...; 2% of entries are resends of a
session's previous batch (duplicates both sides must drop); streams Zipf(1) with a 30% hot stream; 1-3
emojis and 10 taps per entry. Both sides' totals are compared after each run: they must be equal.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import tempfile
import time
from functools import partial
from pathlib import Path

from reactmesh.bench import redis_baseline
from reactmesh.bench.common import env_overrides
from reactmesh.bench.loader import batch_patterns, stream_of
from reactmesh.bench.procs import run_loop
from reactmesh.bench.report import Options, Report, Target
from reactmesh.merge.clock import SystemClock
from reactmesh.region_node.aggregator.config import AggregatorConfig
from reactmesh.region_node.aggregator.core import Aggregator
from reactmesh.region_node.aggregator.pending import ForwardStream
from reactmesh.v1 import aggregator_pb2, common_pb2

NAME = "core"
EDGE_BATCH = 1024


class ShiftedClock(SystemClock):
    """The system clock with wall time shifted so that now reads ``wall_ms_now``."""

    def __init__(self, wall_ms_now: int) -> None:
        self._shift = wall_ms_now - time.time_ns() // 1_000_000

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self._shift


def build_entries(n: int, sessions: int, streams: int, seed: int, now_ms: int) -> list[list[redis_baseline.Entry]]:
    rng = random.Random(seed)
    ids = [rng.randbytes(16) for _ in range(sessions)]
    stream_of_session = [f"s-{stream_of(rng, streams, 0.3)}" for _ in range(sessions)]
    patterns = batch_patterns(rng, 10, 64)
    seqs = [0] * sessions
    out: list[list[redis_baseline.Entry]] = []
    batch: list[redis_baseline.Entry] = []
    for i in range(n):
        s = rng.randrange(sessions)
        if seqs[s] and rng.random() < 0.02:
            seq = seqs[s]  # a resend of the previous batch: a duplicate
        else:
            seq = seqs[s] = seqs[s] + 1
        acc = now_ms + i * 1000 // 200_000  # entries spread as if they arrived at 200k/s
        batch.append((ids[s], seq, stream_of_session[s], acc, patterns[rng.randrange(64)]))
        if len(batch) == EDGE_BATCH:
            out.append(batch)
            batch = []
    if batch:
        out.append(batch)
    return out


def serialize(batches: list[list[redis_baseline.Entry]]) -> list[bytes]:
    out = []
    for i, batch in enumerate(batches):
        msg = aggregator_pb2.EdgeBatch(batch_id=i + 1)
        for session, seq, stream, acc, counts in batch:
            msg.entries.append(
                aggregator_pb2.ForwardedBatch(
                    session_id=session,
                    seq=seq,
                    stream_id=stream,
                    accepted_at_ms=acc,
                    counts=[common_pb2.ReactionCount(emoji=e, count=c) for e, c in counts],
                )
            )
        out.append(msg.SerializeToString())
    return out


async def run_ours(payloads: list[bytes], start_ms: int, db: Path) -> tuple[float, int, dict[str, int], int]:
    """(seconds, entries applied, totals "stream/emoji" -> count, commits)."""
    config = AggregatorConfig(node_id="a/core-0", region="a", db_path=str(db), **env_overrides().get("aggregator", {}))
    agg = Aggregator(config, ShiftedClock(start_ms))
    await agg.start()
    fwd = ForwardStream()
    applied = 0
    acks = 0
    done = asyncio.get_running_loop().create_future()

    async def drain() -> None:
        nonlocal applied, acks
        while acks < len(payloads):
            ack = await fwd.out.get()
            assert isinstance(ack, aggregator_pb2.EdgeAck)
            applied += sum(1 for o in ack.outcomes if o == aggregator_pb2.EdgeAck.APPLIED)
            acks += 1
        done.set_result(None)

    drainer = asyncio.create_task(drain())
    ticker = asyncio.create_task(agg.run())
    await asyncio.sleep(0)
    started = time.perf_counter()
    parse = aggregator_pb2.EdgeBatch.FromString
    apply = agg.receive
    for data in payloads:
        apply(fwd, parse(data))
        await asyncio.sleep(0)
    await done
    seconds = time.perf_counter() - started
    commits = int(agg.statistics()["commits"])
    totals = {f"{k[0]}/{k[1]}": v for k, v in agg.state.totals.items()}
    await agg.close()
    ticker.cancel()
    drainer.cancel()
    for t in (ticker, drainer):
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t
    return seconds, applied, totals, commits


def run(options: Options) -> Report:
    report = Report(NAME, "core: counting core entries/s, ours vs Redis-Lua", options)
    entries = 60_000 if options.quick else 300_000
    sessions = 5_000 if options.quick else 20_000
    streams = 1_000
    report.params = {
        "entries": entries,
        "sessions": sessions,
        "streams": streams,
        "edge_batch_entries": EDGE_BATCH,
        "taps_per_entry": 10,
        "duplicate_share": 0.02,
        "aggregator": "tick_ms=100, synchronous=FULL (fsync per commit)",
    }
    start_ms = time.time_ns() // 1_000_000
    batches = build_entries(entries, sessions, streams, seed=7, now_ms=start_ms)
    payloads = serialize(batches)
    missing = redis_baseline.available()
    if missing:
        report.notes.append(f"Redis baseline skipped: {missing}.")
    report.units = {
        "ours_entries_per_s": "entries/s",
        "ours_taps_per_s": "taps/s",
        "ours_commits_per_s": "commits/s",
        "redis_entries_per_s": "entries/s",
        "redis_aof_everysec_entries_per_s": "entries/s",
        "ratio_vs_redis": "x",
        "ratio_vs_redis_aof_everysec": "x",
    }
    report.targets = [Target("core >= 10x Redis-Lua", "ratio_vs_redis", ">=", 10.0)]
    mismatches = 0
    for i in range(options.runs):
        with tempfile.TemporaryDirectory(prefix="reactmesh-core-") as tmp:
            ours = partial(run_ours, payloads, start_ms, Path(tmp) / "agg.db")
            seconds, applied, ours_totals, commits = run_loop(ours)
        figures = {
            "ours_entries_per_s": entries / seconds,
            "ours_taps_per_s": applied * 10 / seconds,
            "ours_commits_per_s": commits / seconds,
        }
        if not missing:
            for persistence, key in (("none", "redis_entries_per_s"), ("everysec", "redis_aof_everysec_entries_per_s")):
                with redis_baseline.RedisServer(persistence) as server:
                    sha = redis_baseline.load_script(server)
                    encoded = redis_baseline.encode_batches(sha, batches)
                    r_seconds, r_applied = redis_baseline.run_entries(server, encoded)
                    r_totals = redis_baseline.totals(server, {e[2] for b in batches for e in b})
                figures[key] = entries / r_seconds
                if r_applied != applied or r_totals != ours_totals:
                    mismatches += 1
            figures["ratio_vs_redis"] = figures["ours_entries_per_s"] / figures["redis_entries_per_s"]
            figures["ratio_vs_redis_aof_everysec"] = (
                figures["ours_entries_per_s"] / figures["redis_aof_everysec_entries_per_s"]
            )
        report.add_run(figures)
        print(f"  core run {i + 1}/{options.runs}: " + ", ".join(f"{k}={v:,.1f}" for k, v in figures.items()))
    report.extra["applied_entries"] = applied
    report.extra["totals_mismatches"] = mismatches
    if not missing:
        report.notes.append(
            "Both sides counted the same totals in every run."
            if mismatches == 0
            else f"Totals differed between ours and Redis in {mismatches} run(s)."
        )
    report.notes.append(
        "Ours: parse + dedupe + increment + window in Python on the event loop; commits (watermarks, slots, windows "
        "in one SQLite transaction, fsynced) run on aiosqlite's thread every 100 ms. Redis: one Lua call per client "
        "batch (HGET/HSET watermark, 2 HINCRBY per emoji), single-threaded."
    )
    return report
