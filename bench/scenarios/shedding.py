"""shedding: the edge past capacity, with load shedding (``edge.admission``) on and, in the same run, off.

One region as real processes (``ProcessMesh``, layout "split", as the ingest scenario) and the same loaders
(``bench.loader``: ReactionClients, 10 taps per batch, Zipf-skewed streams). Each run, on a mesh with the
default ``[edge.shedding]``:

- ``capacity`` (on a mesh with ``shedding.enabled = false``): closed loop (``CAPACITY_MAX_UNACKED`` unacked
  batches per viewer) at more load than the machine takes; its acked batches/s is the capacity C of this run.
- ``over``: open loop at twice C (each viewer may have ``OVER_MAX_UNACKED`` batches unacked, so a queue can
  grow). Figures: acked batches/s, the ack latency of acked batches from their last send (``attempt``: the
  issue's "acked batches keep ack p99 <= 300 ms") and from their close (``e2e``: with the retry-after waits),
  and the RETRY acks the clients got.
- ``spike`` (the incident "10x spike"): nominal load (C / 5) for a while, ten times nominal for
  ``SPIKE_S`` seconds (extra loaders), then nominal again; latencies from close per half-second bucket of
  the nominal loaders give the p99 before, during and after the spike, and ``recovery_s``: from the spike's
  end to the first bucket whose p99 is back under twice the p99 before it.

Every phase first connects its viewers (the loaders' ``--join``: one acked batch each, so that every Ingest
stream is open and read) and starts the load once all have: the figures measure queueing under load, not how
fast a CPU-bound server picks up new streams (seconds; BENCHMARKS.md "Issue 16, item 3"). How long joining
took is reported apart (``*join*``).

The ``over`` phase also runs on the mesh without shedding (``noshed_over_*``): what the same overload does
when the edge admits everything up to its memory bound. After each mesh the broadcaster's
totals must equal the taps acked to the loaders, per (stream, emoji): shedding loses and double-counts nothing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from reactmesh.bench.common import (
    EDGE_OVERRIDES,
    BenchMesh,
    merge_accepted,
    merge_overrides,
    scrape_gauges,
    wait_totals,
)
from reactmesh.bench.procs import CpuMeter, CpuQuota, pin, read_json, run_loop, spawn
from reactmesh.bench.report import Options, Report, Target, percentile
from reactmesh.region_node.devmesh import free_port_block

NAME = "shedding"
LOADERS = 2
LAYOUT = "split"
OVER_MAX_UNACKED = 64
CAPACITY_MAX_UNACKED = 8
SPIKE_FACTOR = 10
BUCKET_S = 0.5
JOIN_TIMEOUT_S = 120.0
MESH_CPUS = {0}
LOADER_CPUS = {1}
"""The mesh and the loaders on separate cores (where the machine has two): the loaders cost about as much per
batch as the mesh, and an overload generated on the mesh's own core would measure the loaders' queues."""
MESH_CORES = float(os.environ.get("REACTMESH_BENCH_MESH_CORES", "0.5"))
"""CPU the whole mesh may use (a cgroup quota, where the machine allows one): small enough that the loaders,
on their own core, can offer twice the mesh's capacity."""


def constrain(pids: Iterable[int], tag: str) -> tuple[CpuQuota | None, bool]:
    """Pin the mesh to MESH_CPUS and put it under a MESH_CORES quota; (the quota or None, pinned)."""
    pids = list(pids)
    pinned = pin(pids, MESH_CPUS)
    quota = CpuQuota.create(f"reactmesh-bench-{os.getpid()}-{tag}", MESH_CORES)
    if quota is not None:
        quota.add(pids)
    return quota, pinned


@dataclass(frozen=True)
class Group:
    """Loaders that start together: ``rate`` batches/s each, tapping from ``offset`` s after the phase start."""

    viewers: int
    rate: float
    max_unacked: int
    offset: float
    warmup: float
    window: float
    cooldown: float = 0.5


GAUGES = (
    "reactmesh_edge_admission_limit",
    "reactmesh_edge_commit_lag_seconds",
    "reactmesh_edge_commit_lag_base_seconds",
    "reactmesh_edge_inflight_batches",
    "reactmesh_edge_loop_lag_seconds",
    "reactmesh_edge_inbound_wait_seconds",
    "reactmesh_edge_ack_backlog",
    "reactmesh_edge_ack_write_wait_seconds",
)


async def run_groups(
    edge: str,
    pids: dict[str, int],
    groups: list[Group],
    seed: int,
    tag: str,
    probe: Callable[[], Awaitable[dict[str, float]]] | None = None,
) -> tuple[list[list[dict[str, Any]]], dict[str, float]]:
    """Run every group's loaders against ``edge``; their results per group, and CPU (cores) in group 0's window,
    with the medians of ``probe()``'s values taken every half second in that window (prefixed ``gauge:``), and
    ``join_s``: how long it took until every loader's viewers were connected (``--join``).

    Every viewer joins first (one acked batch, so its stream is open and read); the load starts once all have."""
    start_dir = tempfile.mkdtemp(prefix="reactmesh-bench-start-")
    start_file = os.path.join(start_dir, "origin")
    procs = []
    for g, group in enumerate(groups):
        procs.append(
            [
                await spawn(
                    "reactmesh.bench.loader",
                    "--edge",
                    edge,
                    "--viewers",
                    str(group.viewers),
                    "--rate",
                    str(group.rate),
                    "--max-unacked",
                    str(group.max_unacked),
                    "--join",
                    "--start-file",
                    start_file,
                    "--start-at",
                    str(group.offset),
                    "--warmup",
                    str(group.warmup),
                    "--duration",
                    str(group.window),
                    "--cooldown",
                    str(group.cooldown),
                    "--seed",
                    str(seed + 10 * g + i),
                    "--stream-prefix",
                    f"{tag}{seed}",
                    "--bucket-s",
                    str(BUCKET_S),
                )
                for i in range(LOADERS)
            ]
        )
    loader_pids = [p.pid for group in procs for p in group]
    pin(loader_pids, LOADER_CPUS)
    joining = time.monotonic()
    for proc in (p for group in procs for p in group):
        await wait_joined(proc, JOIN_TIMEOUT_S)
    join_s = time.monotonic() - joining
    origin = time.time() + 0.3
    write_origin(start_file, origin)
    first = groups[0]
    all_pids = {**pids, **{f"loader-{i}": p.pid for i, p in enumerate(procs[0])}}
    meter = CpuMeter(all_pids)
    await asyncio.sleep(max(0.0, origin + first.offset + first.warmup - time.time()))
    pin(loader_pids, LOADER_CPUS)  # again, for threads started since
    meter.start()
    samples: list[dict[str, float]] = []
    end = time.monotonic() + first.window
    while probe is not None and time.monotonic() < end - 0.5:
        await asyncio.sleep(0.5)
        samples.append(await probe())
    await asyncio.sleep(max(0.0, end - time.monotonic()))
    cores = meter.stop()
    for name in {k for sample in samples for k in sample}:
        cores[f"gauge:{name}"] = statistics.median(sample.get(name, float("nan")) for sample in samples)
    results = [[await read_json(p, 240) for p in group] for group in procs]
    shutil.rmtree(start_dir, ignore_errors=True)
    cores["join_s"] = join_s
    return results, cores


def write_origin(path: str, origin: float) -> None:
    """Write the start origin all at once (loaders poll ``path``; a rename is atomic)."""
    with open(f"{path}.tmp", "w") as f:
        f.write(repr(origin))
    os.replace(f"{path}.tmp", path)


async def wait_joined(proc: Any, within: float) -> None:
    """Wait for a loader's ``joined`` line (its viewers are connected)."""
    assert proc.stdout is not None
    async with asyncio.timeout(within):
        while True:
            line = await proc.stdout.readline()
            if not line:
                raise RuntimeError(f"loader {proc.pid} exited before its viewers joined")
            if line.strip() == b"joined":
                return


def window_figures(results: list[dict[str, Any]], window: float, prefix: str) -> dict[str, float]:
    e2e = [x for r in results for x in r["latencies_ms"]]
    attempt = [x for r in results for x in r["attempt_latencies_ms"]]
    tap = [x for r in results for x in r["tap_latencies_ms"]]
    return {
        f"{prefix}offered_batches_per_s": sum(r["offered_batches_per_s"] for r in results),
        f"{prefix}batches_per_s": sum(r["window_batches"] for r in results) / window,
        f"{prefix}taps_per_s": sum(r["window_taps"] for r in results) / window,
        f"{prefix}tap_ack_p50_ms": percentile(tap, 0.50),
        f"{prefix}tap_ack_p99_ms": percentile(tap, 0.99),
        f"{prefix}attempt_ack_p50_ms": percentile(attempt, 0.50),
        f"{prefix}attempt_ack_p99_ms": percentile(attempt, 0.99),
        f"{prefix}e2e_ack_p50_ms": percentile(e2e, 0.50),
        f"{prefix}e2e_ack_p99_ms": percentile(e2e, 0.99),
        f"{prefix}retry_acks": float(sum(r["acks_retry"] for r in results)),
        f"{prefix}retry_pauses": float(sum(r["retry_pauses"] for r in results)),
        f"{prefix}reconnects": float(sum(r["reconnects"] for r in results)),
        f"{prefix}loader_loop_lag_p99_ms": max(r["loop_lag_p99_ms"] for r in results),
        f"{prefix}join_p99_ms": 1000 * max(r["join_p99_s"] for r in results),
    }


def bucket_p99(results: list[dict[str, Any]], begin: float, end: float) -> float:
    """The worst per-bucket p99 of the loaders over buckets starting in [begin, end) (s from the origin)."""
    worst = float("nan")
    for r in results:
        for start, acks, _p50, p99 in r["buckets"]:
            if begin <= start < end and acks:
                worst = p99 if worst != worst else max(worst, p99)
    return worst


def spike_figures(results: list[dict[str, Any]], spike_at: float, spike_s: float, end: float) -> dict[str, float]:
    before = bucket_p99(results, 1.0, spike_at)
    during = bucket_p99(results, spike_at, spike_at + spike_s)
    after_end = spike_at + spike_s
    recovery = float("nan")
    t = after_end
    while t < end:
        p99 = bucket_p99(results, t, t + BUCKET_S)
        if p99 == p99 and p99 <= 2 * before:
            recovery = t - after_end
            break
        t += BUCKET_S
    return {
        "spike_p99_before_ms": before,
        "spike_p99_during_ms": during,
        "spike_p99_after_ms": bucket_p99(results, after_end + 2.0, end),
        "spike_recovery_s": recovery,
    }


async def check_totals(mesh: BenchMesh, results: list[dict[str, Any]]) -> dict[str, Any]:
    expected = merge_accepted(results)
    if any(k.endswith("/*") for k in expected):
        return {"totals_checked": "skipped: some batches were partly rate-limited"}
    matched, waited = await wait_totals(mesh.plans["a"].broadcaster, expected, 30.0)
    return {"totals_match": matched, "totals_settle_s": round(waited, 2)}


async def one_run(options: Options, seed: int) -> tuple[dict[str, float], dict[str, Any]]:
    quick = options.quick
    viewers = 300 if quick else 1000
    warmup, window = (1.0, 2.0) if quick else (2.0, 5.0)
    spike_at, spike_s, tail = (2.0, 2.0, 3.0) if quick else (4.0, 4.0, 6.0)
    figures: dict[str, float] = {}
    extra: dict[str, Any] = {}
    off = merge_overrides(EDGE_OVERRIDES, {"edge": {"shedding": {"enabled": False}}})
    async with BenchMesh(regions=("a",), base_port=free_port_block(10), overrides=off, layout=LAYOUT) as mesh:
        edge, pids = mesh.plans["a"].edge, mesh.pids()
        quota, extra["pinned"] = constrain(pids.values(), "off")
        extra["quota_cores"] = MESH_CORES if quota is not None else None
        high = 4000.0 if quick else 8000.0
        (capacity,), joined = await run_groups(
            edge, pids, [Group(viewers, high, CAPACITY_MAX_UNACKED, 0.0, warmup, window)], seed, "cap"
        )
        c = sum(r["window_batches"] for r in capacity) / window
        figures["capacity_batches_per_s"] = c
        figures["capacity_taps_per_s"] = sum(r["window_taps"] for r in capacity) / window
        figures["capacity_ack_p99_ms"] = percentile([x for r in capacity for x in r["attempt_latencies_ms"]], 0.99)
        figures["capacity_join_s"] = joined["join_s"]
        figures["capacity_join_p99_ms"] = 1000 * max(r["join_p99_s"] for r in capacity)
        (noshed,), _ = await run_groups(
            edge, pids, [Group(viewers, c, OVER_MAX_UNACKED, 0.0, warmup, window)], seed + 100, "noshed"
        )
        figures.update(window_figures(noshed, window, "noshed_over_"))
        extra["shedding_off"] = await check_totals(mesh, [*capacity, *noshed])
        if quota is not None:
            quota.close()
    async with BenchMesh(
        regions=("a",), base_port=free_port_block(10), overrides=EDGE_OVERRIDES, layout=LAYOUT, edge_metrics=True
    ) as mesh:
        edge, pids = mesh.plans["a"].edge, mesh.pids()
        quota, _ = constrain(pids.values(), "on")
        probe = partial(scrape_gauges, mesh.edge_metrics_addresses["a"], GAUGES)
        (over,), cores = await run_groups(
            edge, pids, [Group(viewers, c, OVER_MAX_UNACKED, 0.0, warmup, window)], seed + 200, "over", probe
        )
        figures.update(window_figures(over, window, "over_"))
        figures["over_cpu_edge"] = cores.get("a-edge", float("nan"))
        figures["over_admission_limit"] = cores.get("gauge:reactmesh_edge_admission_limit", float("nan"))
        figures["over_inflight"] = cores.get("gauge:reactmesh_edge_inflight_batches", float("nan"))
        figures["over_commit_lag_ms"] = 1000 * cores.get("gauge:reactmesh_edge_commit_lag_seconds", float("nan"))
        figures["over_commit_lag_base_ms"] = 1000 * cores.get(
            "gauge:reactmesh_edge_commit_lag_base_seconds", float("nan")
        )
        for name in ("inbound_wait", "ack_write_wait", "loop_lag"):
            figures[f"over_edge_{name}_ms"] = 1000 * cores.get(f"gauge:reactmesh_edge_{name}_seconds", float("nan"))
        nominal = c / 5
        total = spike_at + spike_s + tail
        (base, spike), _ = await run_groups(
            edge,
            pids,
            [
                Group(viewers, nominal / LOADERS, OVER_MAX_UNACKED, 0.0, 0.0, total),
                Group(viewers, nominal * (SPIKE_FACTOR - 1) / LOADERS, OVER_MAX_UNACKED, spike_at, 0.0, spike_s, 0.0),
            ],
            seed + 300,
            "spike",
        )
        figures.update(spike_figures(base, spike_at, spike_s, total))
        figures["spike_retry_acks"] = float(sum(r["acks_retry"] for r in [*base, *spike]))
        extra["shedding_on"] = await check_totals(mesh, [*over, *base, *spike])
        if quota is not None:
            quota.close()
    figures["over_goodput_ratio"] = figures["over_batches_per_s"] / c
    # Taps are what counts: a shed viewer's taps coalesce into fewer, bigger batches.
    figures["over_tap_goodput_ratio"] = figures["over_taps_per_s"] / figures["capacity_taps_per_s"]
    return figures, extra


def run(options: Options) -> Report:
    report = Report(NAME, "shedding: past capacity, with the edge's load shedding on and off", options)
    report.params = {
        "layout": LAYOUT,
        "loaders_per_group": LOADERS,
        "taps_per_batch": 10,
        "over": "open loop at 2 x the run's measured capacity",
        "over_max_unacked_per_viewer": OVER_MAX_UNACKED,
        "spike": f"nominal = capacity / 5, then {SPIKE_FACTOR}x nominal",
        "edge_rate_per_s": 1000.0,
        "shedding": "defaults (target_ms 150, interval_ms 100, floor retry_after_ms 500)",
    }
    report.targets = [
        Target(
            "acked batches' ack p99 <= 300 ms at 2x capacity (from last send)", "over_attempt_ack_p99_ms", "<=", 300
        ),
        Target("acked batches' ack p99 <= 300 ms during a 10x spike (from close)", "spike_p99_during_ms", "<=", 300),
    ]
    checks: list[dict[str, Any]] = []
    for i in range(options.runs):
        figures, extra = run_loop(partial(one_run, options, 1000 * (i + 1)))
        report.add_run(figures)
        checks.append(extra)
        print(
            f"  shedding run {i + 1}/{options.runs}: capacity {figures['capacity_batches_per_s']:,.0f} batches/s; "
            f"2x: acked {figures['over_batches_per_s']:,.0f}/s, attempt p99 {figures['over_attempt_ack_p99_ms']:.0f} "
            f"ms, e2e p99 {figures['over_e2e_ack_p99_ms']:.0f} ms, {figures['over_retry_acks']:.0f} RETRY; "
            f"without shedding: acked {figures['noshed_over_batches_per_s']:,.0f}/s, "
            f"p99 {figures['noshed_over_attempt_ack_p99_ms']:.0f} ms; spike p99 "
            f"{figures['spike_p99_before_ms']:.0f}/{figures['spike_p99_during_ms']:.0f}/"
            f"{figures['spike_p99_after_ms']:.0f} ms, recovery {figures['spike_recovery_s']:.1f} s; {extra}"
        )
    for name in report.summary():
        if name.endswith("taps_per_s"):
            report.units[name] = "taps/s"
        elif name.endswith("_per_s"):
            report.units[name] = "batches/s"
        elif name.endswith("_ms"):
            report.units[name] = "ms"
        elif name.endswith("_s"):
            report.units[name] = "s"
        elif name.startswith("over_cpu_"):
            report.units[name] = "cores"
    report.extra["checks"] = checks
    bad = [c for c in checks if any(c[k].get("totals_match") is False for k in ("shedding_on", "shedding_off"))]
    report.notes.append(
        "Exactly once: after every mesh the broadcaster's totals equalled the taps acked to the clients."
        if not bad
        else f"Totals did NOT match the acked taps in {len(bad)} run(s): {bad}"
    )
    return report
