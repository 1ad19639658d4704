"""Aggregator commit cadence on a saturated event loop (issue 16 item 2).

``python -m reactmesh.bench.commit_saturation [--runs N] [--quick]``

A real ``Store`` (WAL, synchronous=FULL, in a temporary directory) commits every 100 ms, like the aggregator's
tick loop, a batch the size of a loaded tick (2,000 watermarks, 400 totals slots, 200 windows), while ``BUSY``
coroutines keep the event loop saturated: each burns ``SPIN_MS`` of CPU and yields, as the edge's and the
Forward handlers' per-batch work does under load. Two ways of running the transaction alternate in every run,
so their ratio is measured under the same machine load:

- ``per-row``: the old ``write_transaction``, one await (one hop through the event loop to aiosqlite's thread
  and back) per statement (BEGIN, each executemany, COMMIT), and each executemany one SQLite step per row.
- ``one-call``: today's ``write_transaction``: the whole transaction as one call on aiosqlite's thread, and
  each upsert a few multi-row statements (``region_node.sqlite.multi_row``).

Prints, per mode, the median over runs of commits/s and of the commit duration p50/p99 (``Store.commit`` from
call to return), with each run's figures and the one-call/per-row ratio of each run. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from reactmesh.region_node import sqlite
from reactmesh.region_node.aggregator import store as store_module
from reactmesh.region_node.aggregator.store import Slot, Store
from reactmesh.region_node.sqlite import Statement, rollback_quietly
from reactmesh.region_node.state import TOTALS, WINDOWS

TICK_S = 0.1
BUSY = 40
SPIN_MS = 1.0
SESSIONS = 2000
TOTALS_KEYS = 400
WINDOW_KEYS = 200


async def stepwise_transaction(conn: aiosqlite.Connection, lock: asyncio.Lock, statements: Sequence[Statement]) -> int:
    """The write_transaction this replaces (before issue 16): one event-loop hop per statement."""

    async def run() -> int:
        async with lock:
            await conn.execute("BEGIN IMMEDIATE")
            changed = 0
            try:
                for sql, rows in statements:
                    cur = await conn.executemany(sql, rows)
                    changed += max(cur.rowcount, 0)
                await conn.execute("COMMIT")
            except BaseException:
                await rollback_quietly(conn)
                raise
            return changed

    return await asyncio.shield(asyncio.ensure_future(run()))


MODES: dict[str, Callable[..., Any]] = {
    "per-row": stepwise_transaction,
    "one-call": sqlite.write_transaction,
}


def percentile(xs: Sequence[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


async def busy(stop: asyncio.Event, spin_ms: float) -> None:
    spin = spin_ms / 1000
    while not stop.is_set():
        until = time.perf_counter() + spin
        while time.perf_counter() < until:
            pass
        await asyncio.sleep(0)


async def one_mode(mode: str, seconds: float, tick: int, load: tuple[int, float]) -> dict[str, float]:
    setattr(store_module, "write_transaction", MODES[mode])  # noqa: B010 (the Store looks it up there)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = await Store.open(Path(tmp) / "agg.db")
            try:
                stop = asyncio.Event()
                spinners = [asyncio.create_task(busy(stop, load[1])) for _ in range(load[0])]
                durations: list[float] = []
                started = time.monotonic()
                n = tick
                while time.monotonic() - started < seconds:
                    await asyncio.sleep(TICK_S)
                    n += 1
                    wm = {i.to_bytes(8, "big"): n for i in range(SESSIONS)}
                    slots: list[Slot] = [(TOTALS, (f"s{i % 20}", f"e{i}"), "r0", n) for i in range(TOTALS_KEYS)]
                    slots += [(WINDOWS, (f"s{i % 20}", f"e{i}", n // 10), "r0", n) for i in range(WINDOW_KEYS)]
                    t0 = time.perf_counter()
                    await store.commit(wm, slots, n)
                    durations.append(time.perf_counter() - t0)
                elapsed = time.monotonic() - started
                stop.set()
                await asyncio.gather(*spinners)
            finally:
                await store.close()
    finally:
        setattr(store_module, "write_transaction", MODES["one-call"])  # noqa: B010
    return {
        "commits_per_s": len(durations) / elapsed,
        "commit_p50_ms": percentile(durations, 0.5) * 1000,
        "commit_p99_ms": percentile(durations, 0.99) * 1000,
    }


async def main_async(runs: int, seconds: float, load: tuple[int, float] = (BUSY, SPIN_MS)) -> dict[str, Any]:
    per_run: list[dict[str, dict[str, float]]] = []
    for r in range(runs):
        order = list(MODES) if r % 2 == 0 else list(reversed(MODES))
        row = {mode: await one_mode(mode, seconds, r * 1000, load) for mode in order}
        per_run.append(row)
        print(json.dumps({"run": r, **row}), flush=True)
    summary: dict[str, Any] = {}
    for mode in MODES:
        for fig in per_run[0][mode]:
            summary[f"{mode}.{fig}"] = statistics.median(run[mode][fig] for run in per_run)
    summary["commits_ratio_one_call_to_per_row"] = statistics.median(
        run["one-call"]["commits_per_s"] / run["per-row"]["commits_per_s"] for run in per_run
    )
    return {"params": {"busy": load[0], "spin_ms": load[1], "seconds": seconds, "runs": runs}, "summary": summary}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reactmesh.bench.commit_saturation")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--seconds", type=float, default=5.0, help="per mode and run")
    p.add_argument("--busy", type=int, default=BUSY, help="coroutines keeping the event loop busy")
    p.add_argument("--spin-ms", type=float, default=SPIN_MS, help="CPU each of them burns before it yields")
    p.add_argument("--quick", action="store_true", help="one short run (checks that it works)")
    args = p.parse_args(argv)
    runs, seconds = (1, 0.5) if args.quick else (args.runs, args.seconds)
    result = asyncio.run(main_async(runs, seconds, (args.busy, args.spin_ms)))
    print(json.dumps(result["params"]))
    for k, v in result["summary"].items():
        print(f"{k:45s} {v:9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
