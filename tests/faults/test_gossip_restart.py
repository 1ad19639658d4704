"""Gossip survives kill -9: broadcasters and aggregators SIGKILLed and restarted under load in three regions.

A restarted aggregator recovers its counts from SQLite; a restarted broadcaster starts empty with a new
incarnation and gets its region's counts again from the aggregators and the other regions' from its peers
(which send full state to a new incarnation). Taps made in a and c before b's broadcaster died reach it again
only from those peers, so exact equality with the global ground truth at every broadcaster proves both paths.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from reactmesh.region_node.devmesh import free_port_block
from tests.support.regions import RegionProcesses, ground_truth, region_plans
from tests.support.totals import wait_converged

REGIONS = ("a", "b", "c")
LOAD = {"viewers": 30, "streams": 4, "taps_per_second": 6.0, "stream_prefix": "match"}


async def run_with_kills(tmp_path: Path, kills: list[tuple[float, str, str, float]], duration: float) -> None:
    """Regions a and c run "main" + "agg1", region b one process per role; the load runs ``duration`` seconds.

    ``kills``: (at seconds after the load started, region, process, seconds down); each process is SIGKILLed,
    left dead, then restarted from the same config and data files.
    """
    base = free_port_block(10 * len(REGIONS))
    ports = {r: base + 10 * i for i, r in enumerate(REGIONS)}
    plans = region_plans(REGIONS, dict.fromkeys(REGIONS, "127.0.0.1"), ports, tmp_path)
    async with RegionProcesses(tmp_path) as procs:
        for r, p in plans.items():
            await procs.add(r, p.split_configs() if r == "b" else p.process_configs())
        await procs.wait_ready()
        loads = [await procs.start_load(r, [p.edge], seed=31 + i, **LOAD) for i, (r, p) in enumerate(plans.items())]
        await asyncio.gather(*(load.started() for load in loads))
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def crash(at: float, region: str, name: str, down_s: float) -> None:
            await asyncio.sleep(max(0.0, started + at - loop.time()))
            procs.kill(region, name)
            assert await procs.wait(region, name) == -9
            await asyncio.sleep(down_s)
            await procs.start(region, name)
            await procs.wait_ready_one(region, name)

        await asyncio.gather(*(crash(*k) for k in kills))
        await asyncio.sleep(max(0.0, started + duration - loop.time()))
        for load in loads:
            load.stop()
        summaries = await asyncio.gather(*(load.summary() for load in loads))
        truth = ground_truth(summaries)
        broadcasters = {r: p.broadcaster for r, p in plans.items()}
        converged_s = await wait_converged(broadcasters, truth, within=60.0)
        print(
            f"\n[restart] {sum(truth.values())} taps acked; kills {[(r, n) for _, r, n, _ in kills]}; "
            f"reconnects {sum(s.reconnects for s in summaries)}; all regions exact {converged_s:.2f} s after the "
            f"last ack"
        )


async def test_every_region_converges_exactly_after_broadcaster_and_aggregator_sigkill(tmp_path: Path) -> None:
    # b's broadcaster dies first; b's agg1 dies while it is down; both come back during the load.
    await run_with_kills(tmp_path, [(1.0, "b", "bcast", 0.8), (1.4, "b", "agg1", 0.6)], duration=3.5)


@pytest.mark.slow
async def test_every_region_converges_exactly_after_repeated_sigkills_in_every_region(tmp_path: Path) -> None:
    await run_with_kills(
        tmp_path,
        [
            (1.0, "b", "bcast", 0.5),
            (1.5, "a", "main", 1.0),  # edge, agg0 and broadcaster of region a at once
            (2.0, "c", "agg1", 0.5),
            (3.5, "b", "bcast", 0.3),
            (4.0, "b", "agg0", 0.5),
            (5.0, "c", "main", 0.5),
        ],
        duration=7.0,
    )
