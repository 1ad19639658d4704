"""memory: bytes per active session watermark and per counter slot, at 100k sessions and 10k streams.

Measured in a fresh subprocess per figure set (``python -m reactmesh.bench.scenarios.memory child``), on a real
``Aggregator`` with its SQLite store, fed through ``receive`` and committed with ``tick()``:

1. sessions: ``SESSIONS`` sessions each send one batch (seq 1, one stream, one emoji), committed. The memory
   growth divided by ``SESSIONS`` is the cost of one active session: its entry in the replicated
   watermark map (the only place a committed watermark is held) and the 16-byte session id itself.
2. slots: ``STREAMS`` streams x 6 emojis get one batch each from sessions already known (so no new
   session is created), committed. Growth divided by the new G-counter keys (totals (stream, emoji) plus
   windows (stream, emoji, second)) is the cost of one counter slot held by one replica.

Growth is measured twice, in separate children: with ``tracemalloc`` (Python allocations only, exact) and
as the change of the process's resident set size (what the OS sees, including allocator slack; no
tracemalloc running). The EdgeBatch messages are built before the baseline and acks are drained before
each measurement, so neither counts.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from reactmesh.bench.procs import emit_result, read_json, rss_bytes, run_loop, spawn
from reactmesh.bench.report import Options, Report
from reactmesh.edge.config import DEFAULT_REACTIONS
from reactmesh.merge.clock import SystemClock
from reactmesh.region_node.aggregator.config import AggregatorConfig
from reactmesh.region_node.aggregator.core import Aggregator
from reactmesh.region_node.aggregator.pending import ForwardStream
from reactmesh.v1 import aggregator_pb2, common_pb2

NAME = "memory"
SESSIONS = 100_000
STREAMS = 10_000
EDGE_BATCH = 1000


def edge_batches(entries: list[aggregator_pb2.ForwardedBatch]) -> list[aggregator_pb2.EdgeBatch]:
    out = []
    for i in range(0, len(entries), EDGE_BATCH):
        out.append(aggregator_pb2.EdgeBatch(batch_id=i // EDGE_BATCH + 1, entries=entries[i : i + EDGE_BATCH]))
    return out


async def child(sessions: int, streams: int, traced: bool) -> dict[str, Any]:
    now_ms = time.time_ns() // 1_000_000
    ids = [os.urandom(16) for _ in range(sessions)]
    phase1 = edge_batches(
        [
            aggregator_pb2.ForwardedBatch(
                session_id=s,
                seq=1,
                stream_id="mem-0",
                accepted_at_ms=now_ms,
                counts=[common_pb2.ReactionCount(emoji="like", count=1)],
            )
            for s in ids
        ]
    )
    phase2 = edge_batches(
        [
            aggregator_pb2.ForwardedBatch(
                session_id=ids[i % sessions],
                seq=2 + i // sessions,
                stream_id=f"mem-{i + 1}",
                accepted_at_ms=now_ms,
                counts=[common_pb2.ReactionCount(emoji=e, count=1) for e in DEFAULT_REACTIONS],
            )
            for i in range(streams)
        ]
    )
    with tempfile.TemporaryDirectory(prefix="reactmesh-memory-") as tmp:
        agg = Aggregator(
            AggregatorConfig(node_id="a/mem-0", region="a", db_path=str(Path(tmp) / "agg.db")), SystemClock()
        )
        await agg.start()
        fwd = ForwardStream()

        async def feed(batches: list[aggregator_pb2.EdgeBatch]) -> None:
            for b in batches:
                agg.receive(fwd, b)
            await agg.tick()
            while not fwd.out.empty():
                fwd.out.get_nowait()

        def measure() -> int:
            gc.collect()
            if traced:
                return tracemalloc.get_traced_memory()[0]
            return rss_bytes(os.getpid())

        # Warm up caches (name caches, SQLite statements, KeyedGCounter internals) with one small batch.
        await feed(
            edge_batches(
                [
                    aggregator_pb2.ForwardedBatch(
                        session_id=os.urandom(16),
                        seq=1,
                        stream_id="warm",
                        accepted_at_ms=now_ms,
                        counts=[common_pb2.ReactionCount(emoji="like", count=1)],
                    )
                ]
            )
        )
        if traced:
            tracemalloc.start()
        m0 = measure()
        keys0 = len(agg.state.totals) + len(agg.state.windows)
        await feed(phase1)
        m1 = measure()
        keys1 = len(agg.state.totals) + len(agg.state.windows)
        await feed(phase2)
        m2 = measure()
        keys2 = len(agg.state.totals) + len(agg.state.windows)
        sessions_tracked = int(agg.statistics()["sessions_tracked"])
        db_bytes = _dir_bytes(tmp)
        await agg.close()
    return {
        "session_bytes": (m1 - m0) / sessions,
        "new_keys_phase1": keys1 - keys0,
        "slot_bytes": (m2 - m1) / max(1, keys2 - keys1),
        "new_slots": keys2 - keys1,
        "sessions_tracked": sessions_tracked,
        "db_bytes": db_bytes,
    }


def _dir_bytes(path: str) -> int:
    return sum(p.stat().st_size for p in Path(path).iterdir())


def run(options: Options) -> Report:
    sessions = 20_000 if options.quick else SESSIONS
    streams = 2_000 if options.quick else STREAMS
    report = Report(NAME, f"memory: {sessions:,} sessions / {streams:,} streams in one aggregator", options)
    report.params = {"sessions": sessions, "streams": streams, "emojis_per_stream": len(DEFAULT_REACTIONS)}
    report.units = {
        "bytes_per_session_tracemalloc": "bytes",
        "bytes_per_session_rss": "bytes",
        "bytes_per_slot_tracemalloc": "bytes",
        "bytes_per_slot_rss": "bytes",
        "sqlite_bytes_per_session": "bytes",
    }
    for i in range(options.runs):
        figures: dict[str, float] = {}
        for mode in ("tracemalloc", "rss"):
            r = run_loop(partial(_spawn_child, sessions, streams, mode))
            figures[f"bytes_per_session_{mode}"] = r["session_bytes"]
            figures[f"bytes_per_slot_{mode}"] = r["slot_bytes"]
            report.extra["new_slots"] = r["new_slots"]
            report.extra["sessions_tracked"] = r["sessions_tracked"]
            figures["sqlite_bytes_per_session"] = r["db_bytes"] / sessions
        report.add_run(figures)
        print(f"  memory run {i + 1}/{options.runs}: " + ", ".join(f"{k}={v:,.0f}" for k, v in figures.items()))
    report.notes.append(
        "A session costs its entry in the replicated watermark map (one dict slot, one int) and its 16-byte id; "
        "a slot is one (key, replica) of the totals or per-second windows KeyedGCounter. RSS "
        "includes allocator slack; tracemalloc counts Python objects only. sqlite_bytes_per_session is the "
        "database and WAL size after both phases divided by the sessions (an upper bound: slots are in it too)."
    )
    return report


async def _spawn_child(sessions: int, streams: int, mode: str) -> dict[str, Any]:
    proc = await spawn(
        "reactmesh.bench.scenarios.memory",
        "child",
        "--sessions",
        str(sessions),
        "--streams",
        str(streams),
        "--mode",
        mode,
    )
    return await read_json(proc, 300)


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m reactmesh.bench.scenarios.memory child")
    p.add_argument("--sessions", type=int, default=SESSIONS)
    p.add_argument("--streams", type=int, default=STREAMS)
    p.add_argument("--mode", choices=("tracemalloc", "rss"), default="tracemalloc")
    args = p.parse_args(argv)
    result = asyncio.run(child(args.sessions, args.streams, args.mode == "tracemalloc"))
    emit_result(result)
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    raise SystemExit(main(sys.argv[2:]))
