"""Exactly once under real failures: OS processes on loopback, SIGKILLed mid-load and restarted.

The ground truth is what the clients were acked (ACCEPTED, or DUPLICATE of an earlier send); once
every batch is acked, the broadcaster's merged totals must equal it per (stream, emoji).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from reactmesh.region_node.cli.load import drive
from reactmesh.region_node.devmesh import ProcessMesh, free_port_block
from tests.support.totals import converge_to

STREAMS = 4


async def run_with_faults(tmp_path: Path, kills: list[tuple[float, str]]) -> None:
    """Drive 40 viewers for 4 s, SIGKILL and restart the named processes at the given pauses."""
    async with ProcessMesh(regions=("a",), base_port=free_port_block(10), data_dir=tmp_path, layout="split") as mesh:
        plan = mesh.plans["a"]
        load = asyncio.create_task(
            drive(
                [plan.edge],
                viewers=40,
                streams=STREAMS,
                duration_s=4.0,
                taps_per_second=8.0,
                stream_prefix="match",
                seed=7,
                flush_timeout_s=90,
            )
        )
        for at, name in kills:
            await asyncio.sleep(at)
            mesh.kill("a", name)
            assert await mesh.wait("a", name) == -9
            await asyncio.sleep(0.3)
            await mesh.start("a", name)
        summary = await load
        assert summary.taps_rate_limited == 0, "the ground truth below assumes no rate limiting"
        if any(name == "edge" for _, name in kills):
            assert summary.reconnects > 0, "the edge kill did not hit the clients"
        truth = Counter({k: v for k, v in summary.accepted.items() if v})
        assert sum(truth.values()) == summary.taps_sent
        await converge_to(plan.broadcaster, truth)


@pytest.mark.slow
async def test_totals_equal_accepted_taps_after_aggregator_sigkill(tmp_path: Path) -> None:
    await run_with_faults(tmp_path, [(1.2, "agg0"), (1.0, "agg1")])


@pytest.mark.slow
async def test_totals_equal_accepted_taps_after_edge_sigkill(tmp_path: Path) -> None:
    await run_with_faults(tmp_path, [(1.5, "edge")])


async def test_totals_equal_accepted_taps_after_sigkill_of_edge_and_aggregator(tmp_path: Path) -> None:
    await run_with_faults(tmp_path, [(1.0, "agg0"), (0.8, "edge")])
