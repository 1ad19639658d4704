"""converge: three regions; cut region c off under load for N seconds, heal, time until all agree exactly.

Regions a, b and c as real processes (``ProcessMesh``, layout "combined"). Every gossip link between
regions runs through its own ``bench.delay_proxy`` proxy (one per directed dial, ``--link-delay-ms`` one way,
default 40). One ``bench.loader`` process per region taps into that region's edge. A run:

1. loaders start; after 2 s the four proxies touching c are cut (open connections reset, new ones refused:
   c's broadcaster and a's and b's lose each other, as after a network partition);
2. the loaders keep tapping during the partition and stop 1.5 s before its end, then flush (every batch
   acked in its own region); their acked taps per (stream, emoji) are the ground truth;
3. after N seconds (``REACTMESH_BENCH_PARTITION_S``, default 30; quick 3) the proxies heal;
4. the three broadcasters' Query totals for every stream are polled back to back; the figure is the time
   from the heal to the first poll at which all three equal the ground truth exactly.

The mesh is reused across runs (state only grows). The time includes the gossip dialers' reconnect backoff
(capped at 2 s with full jitter) and the resync of what the partition held back.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from reactmesh.bench.common import EDGE_OVERRIDES, BenchMesh, merge_accepted, query_totals
from reactmesh.bench.delay_proxy import DelayProxy, DelayProxyConfig
from reactmesh.bench.procs import read_json, run_loop, spawn
from reactmesh.bench.report import Options, Report, Target
from reactmesh.bench.scenarios.latency import link_delay_ms
from reactmesh.region_node.devmesh import free_port_block, plan

NAME = "converge"
REGIONS = ("a", "b", "c")
CUT = "c"
STREAMS_PER_REGION = 8
RATE_PER_REGION = 200.0


def partition_s(quick: bool) -> float:
    return 3.0 if quick else float(os.environ.get("REACTMESH_BENCH_PARTITION_S", "30"))


async def converge_once(
    mesh: BenchMesh, proxies: dict[tuple[str, str], DelayProxy], expected_before: dict[str, int], run_no: int, n: float
) -> tuple[dict[str, float], dict[str, int]]:
    pre = 2.0
    start_at = time.time() + 1.0
    loaders = [
        await spawn(
            "reactmesh.bench.loader",
            "--edge",
            mesh.plans[r].edge,
            "--viewers",
            "100",
            "--rate",
            str(RATE_PER_REGION),
            "--streams",
            str(STREAMS_PER_REGION),
            "--stream-prefix",
            f"conv-{r}",
            "--start-at",
            str(start_at),
            "--warmup",
            "0",
            "--duration",
            str(pre + n - 1.5),
            "--cooldown",
            "0",
            "--seed",
            str(run_no * 10 + i),
        )
        for i, r in enumerate(REGIONS)
    ]
    await asyncio.sleep(max(0.0, start_at + pre - time.time()))
    cut_links = [p for (src, dst), p in proxies.items() if CUT in (src, dst)]
    for p in cut_links:
        p.cut()
    cut_at = time.monotonic()
    results = [await read_json(p, n + 120) for p in loaders]
    expected = dict(expected_before)
    for k, v in merge_accepted(results).items():
        expected[k] = expected.get(k, 0) + v
    await asyncio.sleep(max(0.0, cut_at + n - time.monotonic()))
    # Before healing, c must not have the others' latest counts (else the cut did not hold).
    streams = sorted({k.rsplit("/", 1)[0] for k in expected})
    c_before = await query_totals(mesh.plans[CUT].broadcaster, streams)
    isolated = c_before != expected
    for p in cut_links:
        p.heal()
    healed = time.monotonic()
    partition = healed - cut_at
    polls = 0
    converged = float("nan")
    while time.monotonic() - healed < 60:
        got = await asyncio.gather(*(query_totals(mesh.plans[r].broadcaster, streams) for r in REGIONS))
        polls += 1
        if all(g == expected for g in got):
            converged = time.monotonic() - healed
            break
    figures = {
        "converge_s": converged,
        "partition_s": partition,
        "taps_during_run": float(sum(r["taps_accepted"] for r in results)),
        "polls": float(polls),
        "c_was_isolated": float(isolated),
    }
    return figures, expected


async def all_runs(options: Options, report: Report) -> None:
    delay = link_delay_ms() / 1000
    n = partition_s(options.quick)
    base = free_port_block(30)
    with tempfile.TemporaryDirectory(prefix="reactmesh-converge-") as tmp:
        plans = plan(REGIONS, base, Path(tmp))
        proxies = {
            (src, dst): DelayProxy(DelayProxyConfig(plans[dst].broadcaster, delay))
            for src in REGIONS
            for dst in REGIONS
            if src != dst
        }
        for p in proxies.values():
            await p.start()
        peers = {r: [proxies[(r, d)].address for d in REGIONS if d != r] for r in REGIONS}
        expected: dict[str, int] = {}
        try:
            async with BenchMesh(
                regions=REGIONS, base_port=base, data_dir=Path(tmp), peers=peers, overrides=EDGE_OVERRIDES
            ) as mesh:
                await asyncio.sleep(1.0)
                for i in range(options.runs):
                    figures, expected = await converge_once(mesh, proxies, expected, i, n)
                    report.add_run(figures)
                    print(
                        f"  converge run {i + 1}/{options.runs}: partition {figures['partition_s']:.1f} s, "
                        f"agreed {figures['converge_s']:.2f} s after heal",
                        flush=True,
                    )
        finally:
            for p in proxies.values():
                await p.close()


def run(options: Options) -> Report:
    report = Report(NAME, "converge: three regions agree after a partition heals", options)
    report.params = {
        "regions": 3,
        "cut_region": CUT,
        "partition_s": partition_s(options.quick),
        "link_delay_ms_one_way": link_delay_ms(),
        "load_batches_per_s_per_region": RATE_PER_REGION,
        "streams_per_region": STREAMS_PER_REGION,
    }
    report.units = {
        "converge_s": "s",
        "partition_s": "s",
        "taps_during_run": "taps",
        "polls": "polls",
        "c_was_isolated": "1 = yes",
    }
    report.targets = [Target("converge <= 2 s after a 30 s partition", "converge_s", "<=", 2.0)]
    run_loop(partial(all_runs, options, report))
    extra: dict[str, Any] = {"converge_s_each_run": [r.get("converge_s") for r in report.runs]}
    report.extra.update(extra)
    report.notes.append(
        "converge_s: heal -> first poll where the Query totals of all three broadcasters equal the acked taps "
        "exactly (NaN if not within 60 s). c_was_isolated = 1 means c's totals differed from the truth just "
        "before the heal, i.e. the partition held."
    )
    return report
