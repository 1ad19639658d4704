"""Partitions that heal: region c is cut off from the other regions under load, then the link heals.

Three regions run as OS processes ("main": edge + aggregator + broadcaster, and "agg1"), each region's load
generator taps the same streams through its own edge, and region c is cut off while load runs everywhere.
Before the heal, region a's broadcaster must be missing taps (the cut is real); after it, every region's
broadcaster must hold exactly the global ground truth: the sum of what every region's clients were acked.

Two separations:
- real network namespaces joined by veth through a hub; the cut makes the hub drop c's packets silently
  (or, in a slow variant, sets c's link down), so c's own clients still reach c's edge from inside c's
  namespace (needs root and ``ip netns``; skipped with the reason otherwise). The default cut lasts
  REACTMESH_PARTITION_CUT_S seconds (6); slow variants cut for 30 s;
- always: TCP delay proxies (40 ms each way) on every inter-region gossip link; the cut resets every
  connection of c's links and refuses new ones (a slow variant stalls them for 30 s instead).

Convergence time after the heal and replication lag (tap acked in a -> visible at each broadcaster) are
printed (``pytest -s``), never asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from reactmesh.bench.delay_proxy import CutMode, DelayProxy, DelayProxyConfig
from reactmesh.region_node.devmesh import RegionPlan, free_port_block
from tests.support.netns import CutHow, RegionNetwork, netns_unavailable
from tests.support.regions import RegionProcesses, ground_truth, region_plans
from tests.support.totals import describe_lags, merged_totals, probe_replication_lag, wait_converged

REGIONS = ("a", "b", "c")
LOAD = {"viewers": 30, "streams": 4, "taps_per_second": 6.0, "stream_prefix": "match"}
LEAD_IN_S = 1.0
# Region c's cut in the default namespace test, in seconds; the suite's time budget keeps it short.
DEFAULT_CUT_S = float(os.environ.get("REACTMESH_PARTITION_CUT_S", "6"))
# The loads stop this long before the heal (or half-way through a shorter cut) and flush, so the ground truth is
# known while c is still cut off and the time to converge after the heal is pure catch-up. A flush that takes
# longer delays the heal.
FLUSH_MARGIN_S = 2.0


async def partition_under_load(
    procs: RegionProcesses,
    plans: Mapping[str, RegionPlan],
    cut: Callable[[], None],
    heal: Callable[[], None],
    cut_s: float,
    label: str,
    visible_during_cut: Sequence[str],
) -> None:
    """Load all regions, cut c for ``cut_s`` seconds, heal, and check exact convergence everywhere.

    ``visible_during_cut``: regions whose broadcaster the test process can query while c is cut off.
    """
    loop = asyncio.get_running_loop()
    loads = [await procs.start_load(r, [p.edge], seed=11 + i, **LOAD) for i, (r, p) in enumerate(plans.items())]
    await asyncio.gather(*(load.started() for load in loads))
    await asyncio.sleep(LEAD_IN_S)
    cut()
    cut_at = loop.time()
    await asyncio.sleep(max(cut_s - FLUSH_MARGIN_S, cut_s / 2))
    for load in loads:
        load.stop()
    summaries = await asyncio.gather(*(load.summary() for load in loads))
    truth = ground_truth(summaries)
    streams = sorted({k.split("/")[0] for k in truth})
    short = {}
    for r in visible_during_cut:
        seen = await merged_totals(plans[r].broadcaster, streams)
        short[r] = sum(truth.values()) - sum(seen.values())
        assert short[r] > 0, f"region {r} saw every tap during the cut: the regions were not separated"
    await asyncio.sleep(max(0.0, cut_at + cut_s - loop.time()))
    heal()
    cut_for = loop.time() - cut_at
    broadcasters = {r: p.broadcaster for r, p in plans.items()}
    converged_s = await wait_converged(broadcasters, truth, within=90.0)
    lags = await probe_replication_lag(plans["a"].edge, broadcasters, samples=10)
    print(
        f"\n[{label}] c cut off for {cut_for:.1f} s; {sum(truth.values())} taps acked "
        f"({', '.join(f'{r}: {s.taps_accepted}' for r, s in zip(plans, summaries, strict=True))}); "
        f"taps missing just before the heal: {short}; "
        f"all regions exact {converged_s:.2f} s after the heal; "
        f"replication lag from a afterwards: {describe_lags(lags)}"
    )


async def run_netns_partition(tmp_path: Path, cut_s: float, how: CutHow = "drop") -> None:
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(
            f"network namespaces unavailable: {reason}. "
            "test_partition_through_delay_proxies_heals_to_exact_ground_truth runs the same scenario"
            " through TCP proxies."
        )
    with RegionNetwork(REGIONS) as net:
        hosts = {r: net.host(r) for r in REGIONS}
        plans = region_plans(REGIONS, hosts, dict.fromkeys(REGIONS, 7100), tmp_path)
        async with RegionProcesses(tmp_path, {r: net.exec_prefix(r) for r in REGIONS}) as procs:
            for r, p in plans.items():
                await procs.add(r, p.process_configs())
            await procs.wait_ready()
            await partition_under_load(
                procs,
                plans,
                lambda: net.cut("c", how),
                lambda: net.heal("c"),
                cut_s,
                f"netns, cut by {how}",
                ("a", "b"),
            )


async def run_proxy_partition(tmp_path: Path, cut_s: float, mode: CutMode = "reset", delay_s: float = 0.04) -> None:
    base = free_port_block(10 * len(REGIONS))
    plans = region_plans(
        REGIONS, dict.fromkeys(REGIONS, "127.0.0.1"), {r: base + 10 * i for i, r in enumerate(REGIONS)}, tmp_path
    )
    links = {
        (x, y): DelayProxy(DelayProxyConfig(target=plans[y].broadcaster, delay_s=delay_s))
        for x in REGIONS
        for y in REGIONS
        if x != y
    }
    c_links = [p for (x, y), p in links.items() if "c" in (x, y)]
    async with contextlib.AsyncExitStack() as stack:
        for proxy in links.values():
            await stack.enter_async_context(proxy)
        procs = await stack.enter_async_context(RegionProcesses(tmp_path))
        for r, p in plans.items():
            via = tuple(links[(r, o)].address for o in REGIONS if o != r)
            await procs.add(r, dataclasses.replace(p, peers=via).process_configs())
        await procs.wait_ready()

        def cut() -> None:
            for proxy in c_links:
                proxy.cut(mode)

        def heal() -> None:
            for proxy in c_links:
                proxy.heal()

        await partition_under_load(
            procs, plans, cut, heal, cut_s, f"proxies, {delay_s * 1000:.0f} ms one way, cut by {mode}", REGIONS
        )


async def test_delay_proxy_delays_each_direction_holds_bytes_while_stalled_and_resets_while_cut() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(1024):
                writer.write(data)
                await writer.drain()
        writer.close()

    loop = asyncio.get_running_loop()
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    target = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server, DelayProxy(DelayProxyConfig(target, delay_s=0.05, reverse_delay_s=0.03)) as proxy:
        host, port = proxy.address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        sent_at = loop.time()
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        assert loop.time() - sent_at >= 0.075  # 50 + 30 ms, less the event loop's 1 ms timer slack

        proxy.cut("stall")
        writer.write(b"held")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(4), 0.2)
        proxy.heal()
        assert await reader.readexactly(4) == b"held"

        proxy.cut("reset")
        with pytest.raises(ConnectionResetError):
            await reader.read(1)
        refused_reader, refused_writer = await asyncio.open_connection(host, int(port))
        refused_writer.write(b"lost")
        with contextlib.suppress(ConnectionResetError):
            assert await refused_reader.read(4) == b""
        proxy.heal()
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"back")
        assert await reader.readexactly(4) == b"back"
        assert proxy.stats.resets >= 2
        writer.close()
        refused_writer.close()


async def test_partition_through_delay_proxies_heals_to_exact_ground_truth(tmp_path: Path) -> None:
    await run_proxy_partition(tmp_path, cut_s=3.0)


@pytest.mark.netns
async def test_partitioned_region_in_network_namespace_heals_to_exact_ground_truth(tmp_path: Path) -> None:
    await run_netns_partition(tmp_path, cut_s=DEFAULT_CUT_S)


@pytest.mark.slow
@pytest.mark.netns
@pytest.mark.parametrize("how", ["drop", "link"])
async def test_region_partitioned_for_30_s_in_network_namespace_heals_to_exact_ground_truth(
    tmp_path: Path, how: CutHow
) -> None:
    await run_netns_partition(tmp_path, cut_s=30.0, how=how)


@pytest.mark.slow
async def test_region_stalled_for_30_s_behind_delay_proxies_heals_to_exact_ground_truth(tmp_path: Path) -> None:
    await run_proxy_partition(tmp_path, cut_s=30.0, mode="stall")
