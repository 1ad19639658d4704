"""History survives a partition longer than the horizon, and a restart: real region processes on loopback.

Three regions ("main": edge + aggregator + broadcaster with a history store, and "agg1") gossip through TCP delay
proxies, with a 10 s window horizon. Region c is cut off while every region taps, for longer than the horizon plus
the seal step, so the windows c counted during the cut are sealed (out of memory, beyond delta gossip) everywhere
before the heal. After the heal, every region's GetHistory must be identical and sum to the exact ground truth, and
the repair must have come from history sync (rows fetched). Then region a's main process is killed with SIGKILL and
restarted: its open and sealed windows answer the same history again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TypeVar

import grpc
import pytest

from reactmesh.bench.delay_proxy import DelayProxy, DelayProxyConfig
from reactmesh.region_node.devmesh import RegionPlan, free_port_block
from reactmesh.region_node.windows.sealer import SEAL_EVERY_S
from reactmesh.v1 import query_pb2, query_pb2_grpc
from tests.support.metered import scrape_text
from tests.support.polling import settled
from tests.support.regions import RegionProcesses, ground_truth, region_plans
from tests.support.totals import wait_converged

pytestmark = pytest.mark.slow

REGIONS = ("a", "b", "c")
HORIZON_S = 10
CUT_S = HORIZON_S + SEAL_EVERY_S + 6
LOAD = {"viewers": 20, "streams": 3, "taps_per_second": 5.0, "stream_prefix": "hist"}
OVERRIDES = {
    "aggregator": {"window_horizon_s": HORIZON_S},
    "broadcaster": {"window_horizon_s": HORIZON_S, "history": {"interval_s": 0.5}},
}

History = dict[str, list[tuple[int, int]]]
T = TypeVar("T")


async def histories(address: str, streams: Iterable[str], start_s: int, end_s: int) -> dict[str, History]:
    out: dict[str, History] = {}
    async with grpc.aio.insecure_channel(address) as channel:
        stub = query_pb2_grpc.QueryStub(channel)
        for s in streams:
            reply = await stub.GetHistory(
                query_pb2.GetHistoryRequest(stream_id=s, start_s=start_s, end_s=end_s), timeout=5
            )
            out[s] = {x.emoji: [(p.start_s, p.count) for p in x.points] for x in reply.series}
    return out


def sums(h: Mapping[str, History]) -> Counter[str]:
    return Counter({f"{s}/{e}": sum(c for _, c in pts) for s, series in h.items() for e, pts in series.items()})


def metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


async def test_history_converges_after_a_partition_longer_than_the_horizon_and_survives_kill_9(
    tmp_path: Path,
) -> None:
    base = free_port_block(10 * len(REGIONS))
    plans = region_plans(
        REGIONS, dict.fromkeys(REGIONS, "127.0.0.1"), {r: base + 10 * i for i, r in enumerate(REGIONS)}, tmp_path
    )
    links = {
        (x, y): DelayProxy(DelayProxyConfig(target=plans[y].broadcaster, delay_s=0.02))
        for x in REGIONS
        for y in REGIONS
        if x != y
    }
    c_links = [p for (x, y), p in links.items() if "c" in (x, y)]
    start_s = int(time.time()) - 5
    async with contextlib.AsyncExitStack() as stack:
        for proxy in links.values():
            await stack.enter_async_context(proxy)
        procs = await stack.enter_async_context(RegionProcesses(tmp_path))
        routed: dict[str, RegionPlan] = {}
        for r, p in plans.items():
            routed[r] = dataclasses.replace(p, peers=tuple(links[(r, o)].address for o in REGIONS if o != r))
            await procs.add(r, routed[r].process_configs(OVERRIDES))
        await procs.wait_ready()

        for proxy in c_links:
            proxy.cut("reset")
        loads = [await procs.start_load(r, [p.edge], seed=31 + i, **LOAD) for i, (r, p) in enumerate(plans.items())]
        await asyncio.gather(*(load.started() for load in loads))
        await asyncio.sleep(4.0)
        for load in loads:
            load.stop()
        truth = ground_truth(await asyncio.gather(*(load.summary() for load in loads)))
        streams = sorted({k.split("/")[0] for k in truth})
        await asyncio.sleep(CUT_S - 4.0)  # every window of the load is sealed everywhere before the heal
        for proxy in c_links:
            proxy.heal()

        broadcasters = {r: p.broadcaster for r, p in plans.items()}
        await wait_converged(broadcasters, truth, within=60.0)
        end_s = int(time.time()) + 5

        async def same_everywhere() -> dict[str, History]:
            got = {r: await histories(a, streams, start_s, end_s) for r, a in broadcasters.items()}
            for r, h in got.items():
                assert sums(h) == truth, f"region {r}: history sums {sums(h)} != truth {truth}"
            assert got["a"] == got["b"] == got["c"]
            return got["a"]

        history = await settled(same_everywhere, within=60.0)
        fetched = {
            r: metric(await scrape_text(f"127.0.0.1:{base + 10 * i + 5}"), "reactmesh_history_sync_rows_fetched_total")
            for i, r in enumerate(REGIONS)
        }
        # c's windows reached a and b, and theirs reached c, only by history repair: they were sealed before the heal.
        assert all(n > 0 for n in fetched.values()), f"history sync repaired nothing: {fetched}"

        procs.kill("a", "main")
        await procs.wait("a", "main")
        await procs.start("a", "main")
        await procs.wait_ready_one("a", "main")

        async def same_after_restart() -> None:
            assert await histories(plans["a"].broadcaster, streams, start_s, end_s) == history

        await settled(same_after_restart, within=30.0)
        print(f"\n[history] {sum(truth.values())} taps, cut {CUT_S} s > horizon {HORIZON_S} s; rows fetched {fetched}")
