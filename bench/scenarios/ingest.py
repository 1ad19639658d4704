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

Then, in the same run, the same loaders drive the ``max`` phase against ``bench.bare_ingest`` (a grpc.aio server
that parses each ClientBatch and acks it, nothing else) with the mesh stopped: ``bare_max_*`` are its figures
and ``ratio_to_bare`` is reactmesh's max batches/s over the bare server's (issue 16 item 4: target >= 0.7).
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any

import grpc

from reactmesh.bench.common import EDGE_OVERRIDES, BenchMesh, merge_accepted, wait_totals
from reactmesh.bench.procs import CpuMeter, free_port, read_json, run_loop, spawn, stop_process
from reactmesh.bench.report import Options, Report, Target, percentile
from reactmesh.region_node.devmesh import free_port_block

NAME = "ingest"
LOADERS = 2
MAX_UNACKED = 2
LAYOUT = "split"
BARE_RATE_FACTOR = 4
"""The bare server's phase offers this many times the max phase's load, so that it too runs at capacity."""


async def phase(
    edge: str,
    pids: dict[str, int],
    *,
    viewers: int,
    rate: float,
    max_unacked: int,
    warmup: float,
    window: float,
    seed: int,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
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
    meter = CpuMeter({**pids, **{f"loader-{i}": p.pid for i, p in enumerate(procs)}})
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


async def wait_serving(address: str, within: float = 20.0) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        await asyncio.wait_for(channel.channel_ready(), within)


async def one_run(options: Options, seed: int) -> tuple[dict[str, float], dict[str, Any]]:
    quick = options.quick
    window = 3.0 if quick else 5.0
    warmup = 1.5 if quick else 2.0
    base = free_port_block(10)
    figures: dict[str, float] = {}
    extra: dict[str, Any] = {}
    async with BenchMesh(regions=("a",), base_port=base, overrides=EDGE_OVERRIDES, layout=LAYOUT) as mesh:
        edge, pids = mesh.plans["a"].edge, mesh.pids()
        nominal, r1 = await phase(
            edge,
            pids,
            viewers=500 if quick else 1000,
            rate=500.0 if quick else 1000.0,
            max_unacked=1024,
            warmup=warmup,
            window=window,
            seed=seed,
        )
        saturated, r2 = await phase(
            edge,
            pids,
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
    # The gRPC ceiling, in the same run and with the same loaders, after the mesh is gone: a server that only
    # parses and acks each batch (bench.bare_ingest).
    port = free_port()
    server = await spawn("reactmesh.bench.bare_ingest", "--port", str(port))
    try:
        await wait_serving(f"127.0.0.1:{port}")
        bare, _ = await phase(
            f"127.0.0.1:{port}",
            {"bare": server.pid},
            viewers=500 if quick else 1000,
            rate=BARE_RATE_FACTOR * (4000.0 if quick else 8000.0),
            max_unacked=MAX_UNACKED,
            warmup=warmup,
            window=window,
            seed=seed + 200,
        )
    finally:
        await stop_process(server)
    for k, v in bare.items():
        figures[f"bare_max_{k}"] = v
    figures["ratio_to_bare"] = saturated["batches_per_s"] / bare["batches_per_s"]
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
        Target("ingest >= 0.7 x the bare parse-and-ack server", "ratio_to_bare", ">=", 0.7),
    ]
    checks: list[dict[str, Any]] = []
    for i in range(options.runs):
        figures, extra = run_loop(partial(one_run, options, 1000 * (i + 1)))
        report.add_run(figures)
        checks.append(extra)
        print(
            f"  ingest run {i + 1}/{options.runs}: max {figures['max_batches_per_s']:,.0f} batches/s "
            f"(p50 {figures['max_ack_p50_ms']:.0f} ms), nominal {figures['nominal_batches_per_s']:,.0f} "
            f"batches/s p50 {figures['nominal_ack_p50_ms']:.0f} / p99 {figures['nominal_ack_p99_ms']:.0f} ms; "
            f"bare server {figures['bare_max_batches_per_s']:,.0f} batches/s, ratio {figures['ratio_to_bare']:.2f}; "
            f"{extra}"
        )
    for name in report.summary():
        if name.endswith("_per_s"):
            report.units[name] = "taps/s" if "taps" in name else "batches/s"
        elif name.endswith("_ms"):
            report.units[name] = "ms"
        elif name.startswith(("max_cpu_", "bare_max_cpu_")):
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
