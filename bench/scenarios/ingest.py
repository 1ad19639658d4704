"""ingest: simulated viewers through the SDK -> edge -> aggregator -> commit -> ack, end to end on one machine.

One region as real processes (``ProcessMesh``, layout "split": edge, agg-0, agg-1 and broadcaster each in its
own process) and ``LOADERS`` load-generator processes (``bench.loader``: ReactionClients over shared
channels, one Ingest stream per viewer session, Zipf-skewed streams with a 30% hot stream, 10 taps per
batch). Each run has two phases on the same mesh, measured over the same wall-clock window in every loader:

- ``nominal``: an open-loop offered load well under capacity; its ack latency is what a viewer sees.
- ``max``: more offered load than the machine can take, with each viewer allowed ``MAX_UNACKED`` unacked
  batches (the SDK's backpressure), so the system runs at capacity without an unbounded queue; its accepted
  batches/s is the throughput figure.

Ack latency: from the moment the SDK closes a batch (its ``client_time_ms``) to the BatchAck's arrival in
the SDK; it includes the client's queueing, the edge, the aggregator's group commit (<= 100 ms tick + fsync)
and the way back. The edge's per-viewer rate limit is raised (``rate_per_s`` 1000) because each simulated
viewer sends 10-tap batches several times a second. After both phases the broadcaster's totals must equal
the taps acked to the loaders, per (stream, emoji).
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any

from reactmesh.bench.common import EDGE_OVERRIDES, BenchMesh, merge_accepted, wait_totals
from reactmesh.bench.procs import CpuMeter, read_json, run_loop, spawn
from reactmesh.bench.report import Options, Report, Target, percentile
from reactmesh.region_node.devmesh import free_port_block

NAME = "ingest"
LOADERS = 2
MAX_UNACKED = 2
LAYOUT = "split"


async def phase(
    mesh: BenchMesh, *, viewers: int, rate: float, max_unacked: int, warmup: float, window: float, seed: int
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    edge = mesh.plans["a"].edge
    start_at = time.time() + 1.5  # loaders need a moment to create their clients
    procs = [
        await spawn(
            "reactmesh.bench.loader",
            "--edge",
            edge,
            "--viewers",
            str(viewers),
            "--rate",
            str(rate),
            "--max-unacked",
            str(max_unacked),
            "--start-at",
            str(start_at),
            "--warmup",
            str(warmup),
            "--duration",
            str(window),
            "--seed",
            str(seed + i),
            "--stream-prefix",
            f"ingest{seed}",
        )
        for i in range(LOADERS)
    ]
    meter = CpuMeter({**mesh.pids(), **{f"loader-{i}": p.pid for i, p in enumerate(procs)}})
    await asyncio.sleep(max(0.0, start_at + warmup - time.time()))
    meter.start()
    await asyncio.sleep(window)
    cores = meter.stop()
    results = [await read_json(p, 180) for p in procs]
    latencies = [x for r in results for x in r["latencies_ms"]]
    batches = sum(r["window_batches"] for r in results)
    taps = sum(r["window_taps"] for r in results)
    figures = {
        "offered_batches_per_s": rate * LOADERS,
        "batches_per_s": batches / window,
        "taps_per_s": taps / window,
        "ack_p50_ms": percentile(latencies, 0.50),
        "ack_p99_ms": percentile(latencies, 0.99),
    }
    for name, c in cores.items():
        figures[f"cpu_{name}"] = c
    figures["cpu_total"] = sum(cores.values())
    return figures, results


async def one_run(options: Options, seed: int) -> tuple[dict[str, float], dict[str, Any]]:
    quick = options.quick
    window = 3.0 if quick else 5.0
    warmup = 1.5 if quick else 2.0
    base = free_port_block(10)
    figures: dict[str, float] = {}
    extra: dict[str, Any] = {}
    async with BenchMesh(regions=("a",), base_port=base, overrides=EDGE_OVERRIDES, layout=LAYOUT) as mesh:
        nominal, r1 = await phase(
            mesh,
            viewers=500 if quick else 1000,
            rate=500.0 if quick else 1000.0,
            max_unacked=1024,
            warmup=warmup,
            window=window,
            seed=seed,
        )
        saturated, r2 = await phase(
            mesh,
            viewers=500 if quick else 1000,
            rate=4000.0 if quick else 8000.0,
            max_unacked=MAX_UNACKED,
            warmup=warmup,
            window=window,
            seed=seed + 100,
        )
        expected = merge_accepted([*r1, *r2])
        if any(k.endswith("/*") for k in expected):
            extra["totals_checked"] = "skipped: some batches were partly rate-limited"
        else:
            matched, waited = await wait_totals(mesh.plans["a"].broadcaster, expected, 20.0)
            extra["totals_match"] = matched
            extra["totals_settle_s"] = round(waited, 2)
        extra["resent_batches"] = sum(r["batches_resent"] for r in [*r1, *r2])
        extra["reconnects"] = sum(r["reconnects"] for r in [*r1, *r2])
        extra["rejected_batches"] = sum(r["batches_rejected"] for r in [*r1, *r2])
        extra["unacked_after_flush"] = sum(r["batches_unacked"] for r in [*r1, *r2])
    for k, v in nominal.items():
        if not k.startswith("cpu_"):
            figures[f"nominal_{k}"] = v
    for k, v in saturated.items():
        figures[f"max_{k}"] = v
    return figures, extra


def run(options: Options) -> Report:
    report = Report(NAME, "ingest: end to end through the SDK, one region on this machine", options)
    report.params = {
        "layout": LAYOUT,
        "loaders": LOADERS,
        "taps_per_batch": 10,
        "streams": 50,
        "hot_share": 0.3,
        "max_phase_max_unacked_per_viewer": MAX_UNACKED,
        "edge_rate_per_s": 1000.0,
        "aggregator": "tick_ms=100, synchronous=FULL",
    }
    report.targets = [
        Target("ingest >= 20k client batches/s", "max_batches_per_s", ">=", 20_000),
        Target("ingest >= 200k taps/s", "max_taps_per_s", ">=", 200_000),
    ]
    checks: list[dict[str, Any]] = []
    for i in range(options.runs):
        figures, extra = run_loop(partial(one_run, options, 1000 * (i + 1)))
        report.add_run(figures)
        checks.append(extra)
        print(
            f"  ingest run {i + 1}/{options.runs}: max {figures['max_batches_per_s']:,.0f} batches/s "
            f"(p50 {figures['max_ack_p50_ms']:.0f} ms), nominal {figures['nominal_batches_per_s']:,.0f} "
            f"batches/s p50 {figures['nominal_ack_p50_ms']:.0f} / p99 {figures['nominal_ack_p99_ms']:.0f} ms; {extra}"
        )
    for name in report.summary():
        if name.endswith("_per_s"):
            report.units[name] = "taps/s" if "taps" in name else "batches/s"
        elif name.endswith("_ms"):
            report.units[name] = "ms"
        elif name.startswith("max_cpu_"):
            report.units[name] = "cores"
    report.extra["checks"] = checks
    bad = [c for c in checks if c.get("totals_match") is False]
    report.notes.append(
        "Exactly once: after every run the broadcaster's totals equalled the taps acked to the clients."
        if not bad
        else f"Totals did NOT match the acked taps in {len(bad)} run(s): {bad}"
    )
    report.notes.append(
        "max_cpu_* is each process's CPU (cores) during the max phase's window; the loaders share the machine's "
        "2 cores with the mesh."
    )
    return report
