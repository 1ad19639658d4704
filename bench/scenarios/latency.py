"""latency: tap accepted at the edge -> first frame that includes it, same region and cross-region.

Two regions, a and b, as real processes (``ProcessMesh``, layout "combined"). Their broadcasters gossip
through ``bench.delay_proxy`` proxies that add ``--link-delay-ms`` (default 40) one way, on every link
between the regions. A probe is one tap ("like", count 1) on a probe stream nobody else taps, written as a
ClientBatch on a raw Ingest stream to region a's edge; probes leave at random intervals of 60-140 ms (not
locked to the 100 ms ticks). Two subscribers watch the probe stream: one on region a's broadcaster, one on
region b's. Probe i is included in the first DELTA frame after which the subscriber's displayed total
reaches i (the smoother releases a lone tap at once, so that is its first frame).

Measured interval, per probe and subscriber: from just before the probe's ``write()`` on the Ingest stream
(the edge accepts it a fraction of a millisecond later, on loopback) to the subscriber's ``read()`` returning
that frame. It spans edge validation and forwarding (<= 5 ms flush), the aggregator's group commit (waiting
for its 100 ms tick, then fsync), gossip to the broadcaster (10 ms poll), the broadcaster's 100 ms tick,
and delivery; cross-region adds broadcaster a -> proxy (delay) -> broadcaster b and b's own tick.
``replication_extra`` is, per probe, cross-region minus same-region: how much later region b's viewers see
a tap than region a's (it includes the phase between the two broadcasters' ticks, so it can be below the
link delay). Replication lag proper is read from region b's own Prometheus histogram
``reactmesh_replication_delta_lag_seconds{origin_region="a"}`` (commit at a -> merged at b, per delta),
scraped before and after the loaded phase; its quantiles are bucket upper bounds.

Each run measures two phases on the same mesh: ``idle`` (probes only) and ``loaded`` (a ``bench.loader``
process drives ``LOAD_RATE`` client batches/s into region a meanwhile).
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import grpc

from reactmesh.bench.common import EDGE_OVERRIDES, BenchMesh
from reactmesh.bench.delay_proxy import DelayProxy, DelayProxyConfig
from reactmesh.bench.procs import run_loop, spawn, stop_process
from reactmesh.bench.report import Options, Report, Target, percentile
from reactmesh.region_node.devmesh import free_port_block, plan
from reactmesh.v1 import broadcast_pb2, broadcast_pb2_grpc, common_pb2, ingest_pb2, ingest_pb2_grpc

NAME = "latency"


def link_delay_ms() -> float:
    return float(os.environ.get("REACTMESH_BENCH_LINK_DELAY_MS", "40"))


class Watcher:
    """Subscribes to a stream and records when the displayed total first reaches each probe index."""

    def __init__(self, address: str, stream: str) -> None:
        self.address = address
        self.stream = stream
        self.reached: dict[int, float] = {}
        self.total = 0
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = broadcast_pb2_grpc.BroadcastStub(channel)
            call = stub.Subscribe(broadcast_pb2.SubscribeRequest(stream_id=self.stream))
            async for frame in call:
                now = time.monotonic()
                n = sum(c.count for c in frame.counts)
                if frame.kind == broadcast_pb2.Frame.SNAPSHOT:
                    self.total = n
                    self.ready.set()
                    continue
                before = self.total
                self.total += n
                for i in range(before + 1, self.total + 1):
                    self.reached.setdefault(i, now)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def probe_phase(edge: str, bcasts: dict[str, str], stream: str, probes: int, seed: int) -> dict[str, list[float]]:
    """Send ``probes`` single-tap batches; return per-probe latencies (ms) per watcher and for acks."""
    watchers = {name: Watcher(address, stream) for name, address in bcasts.items()}
    for w in watchers.values():
        w.start()
    await asyncio.wait_for(asyncio.gather(*(w.ready.wait() for w in watchers.values())), 20)
    base = {name: w.total for name, w in watchers.items()}
    rng = random.Random(seed)
    session = rng.randbytes(16)
    sent: dict[int, float] = {}
    acked: dict[int, float] = {}
    queue: asyncio.Queue[ingest_pb2.ClientBatch | None] = asyncio.Queue()

    async def requests() -> Any:
        while (item := await queue.get()) is not None:
            sent[item.seq] = time.monotonic()
            yield item

    async with grpc.aio.insecure_channel(edge) as channel:
        call = ingest_pb2_grpc.IngestStub(channel).Stream(requests())

        async def read_acks() -> None:
            async for ack in call:
                acked[ack.seq] = time.monotonic()

        reader = asyncio.create_task(read_acks())
        for seq in range(1, probes + 1):
            queue.put_nowait(
                ingest_pb2.ClientBatch(
                    session_id=session,
                    viewer_id="latency-probe",
                    seq=seq,
                    stream_id=stream,
                    counts=[common_pb2.ReactionCount(emoji="like", count=1)],
                    client_time_ms=int(time.time() * 1000),
                )
            )
            await asyncio.sleep(rng.uniform(0.06, 0.14))
        for _ in range(200):  # at most 10 s for the last frames
            if all(w.total - base[n] >= probes for n, w in watchers.items()):
                break
            await asyncio.sleep(0.05)
        queue.put_nowait(None)
        await asyncio.wait_for(reader, 10)
    for w in watchers.values():
        await w.close()
    out: dict[str, list[float]] = {"ack": [(acked[s] - sent[s]) * 1000 for s in sent if s in acked]}
    for name, w in watchers.items():
        out[name] = [(w.reached[base[name] + s] - sent[s]) * 1000 for s in sent if base[name] + s in w.reached]
    if "same_region" in out and "cross_region" in out:
        same = {s: w for s, w in zip(sent, out["same_region"], strict=False)}
        cross = {s: w for s, w in zip(sent, out["cross_region"], strict=False)}
        out["replication_extra"] = [cross[s] - same[s] for s in same if s in cross]
    out["lost"] = [float(probes - min(len(out["same_region"]), len(out["cross_region"])))]
    return out


LAG_METRIC = "reactmesh_replication_delta_lag_seconds"


def _scrape(address: str) -> dict[float, float]:
    """Cumulative bucket counts (le -> count) of region b's replication delta lag from origin region a."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    out: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != LAG_METRIC:
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket") and sample.labels.get("origin_region") == "a":
                out[float(sample.labels["le"])] = out.get(float(sample.labels["le"]), 0.0) + sample.value
    return out


async def scrape_lag(address: str) -> dict[float, float]:
    return await asyncio.to_thread(_scrape, address)


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> tuple[float, float]:
    """(upper bound in ms of the bucket holding quantile ``q`` of the observations between the scrapes, count)."""
    delta = {le: after.get(le, 0.0) - before.get(le, 0.0) for le in after}
    total = delta.get(float("inf"), 0.0)
    if total <= 0:
        return float("nan"), 0.0
    for le in sorted(delta):
        if delta[le] >= q * total:
            return le * 1000, total
    return float("inf"), total


def figures_of(prefix: str, lat: dict[str, list[float]]) -> dict[str, float]:
    f: dict[str, float] = {}
    for name in ("same_region", "cross_region", "replication_extra", "ack"):
        f[f"{prefix}_{name}_p50_ms"] = percentile(lat[name], 0.50)
        f[f"{prefix}_{name}_p99_ms"] = percentile(lat[name], 0.99)
    f[f"{prefix}_probes_missing"] = lat["lost"][0]
    return f


async def one_run(options: Options, i: int) -> dict[str, float]:
    """A fresh mesh per run: the phase between the regions' 100 ms ticks differs from start to start."""
    delay = link_delay_ms()
    probes = 30 if options.quick else 100
    load_rate = 300.0 if options.quick else 2000.0
    base = free_port_block(20)
    regions = ("a", "b")
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="reactmesh-latency-") as tmp:
        plans = plan(regions, base, Path(tmp))
        # One proxy per directed dial: a's broadcaster dials b through a->b, and b dials a through b->a.
        proxies = {
            "a": DelayProxy(DelayProxyConfig(plans["b"].broadcaster, delay / 1000)),
            "b": DelayProxy(DelayProxyConfig(plans["a"].broadcaster, delay / 1000)),
        }
        for p in proxies.values():
            await p.start()
        peers = {r: [proxies[r].address] for r in regions}
        try:
            async with BenchMesh(
                regions=regions,
                base_port=base,
                data_dir=Path(tmp),
                peers=peers,
                overrides=EDGE_OVERRIDES,
                metrics=True,
            ) as mesh:
                metrics_b = mesh.metrics_addresses["b"]
                edge = mesh.plans["a"].edge
                bcasts = {"same_region": mesh.plans["a"].broadcaster, "cross_region": mesh.plans["b"].broadcaster}
                await asyncio.sleep(1.0)  # gossip sessions up
                idle = await probe_phase(edge, bcasts, f"probe-idle-{i}", probes, seed=i)
                figures.update(figures_of("idle", idle))
                loader = await spawn(
                    "reactmesh.bench.loader",
                    "--edge",
                    edge,
                    "--viewers",
                    "500",
                    "--rate",
                    str(load_rate),
                    "--warmup",
                    "0",
                    "--duration",
                    str(probes * 0.1 + 8),
                    "--seed",
                    str(50 + i),
                    "--stream-prefix",
                    f"latload{i}",
                )
                try:
                    await asyncio.sleep(3.0)  # loader started and at rate
                    lag_before = await scrape_lag(metrics_b)
                    loaded = await probe_phase(edge, bcasts, f"probe-loaded-{i}", probes, seed=100 + i)
                    lag_after = await scrape_lag(metrics_b)
                finally:
                    await stop_process(loader)
                figures.update(figures_of("loaded", loaded))
                for q in (0.5, 0.99):
                    bound, deltas = bucket_quantile(lag_before, lag_after, q)
                    figures[f"loaded_replication_delta_lag_p{round(q * 100)}_le_ms"] = bound
                figures["loaded_replication_deltas"] = deltas
        finally:
            for p in proxies.values():
                await p.close()
    return figures


def run(options: Options) -> Report:
    report = Report(NAME, "latency: tap accepted -> first frame including it", options)
    report.params = {"layout": "combined", "regions": 2, "tick_ms": 100, "probe_gap_ms": "uniform 60-140"}
    report.params.update(
        {
            "link_delay_ms_one_way": link_delay_ms(),
            "probes_per_phase": 30 if options.quick else 100,
            "loaded_rate": 300.0 if options.quick else 2000.0,
        }
    )
    for i in range(options.runs):
        figures = run_loop(partial(one_run, options, i))
        report.add_run(figures)
        print(
            f"  latency run {i + 1}/{options.runs}: same p50/p99 "
            f"{figures['idle_same_region_p50_ms']:.0f}/{figures['idle_same_region_p99_ms']:.0f} ms idle, "
            f"{figures['loaded_same_region_p50_ms']:.0f}/{figures['loaded_same_region_p99_ms']:.0f} ms "
            f"loaded; cross p50/p99 {figures['idle_cross_region_p50_ms']:.0f}/"
            f"{figures['idle_cross_region_p99_ms']:.0f} ms idle, {figures['loaded_cross_region_p50_ms']:.0f}"
            f"/{figures['loaded_cross_region_p99_ms']:.0f} ms loaded",
            flush=True,
        )
    for name in report.summary():
        report.units[name] = "ms" if name.endswith("_ms") else ("deltas" if name.endswith("deltas") else "probes")
    report.targets = [
        Target("same region p50 <= 100 ms (loaded)", "loaded_same_region_p50_ms", "<=", 100),
        Target("same region p99 <= 200 ms (loaded)", "loaded_same_region_p99_ms", "<=", 200),
        Target("replication lag p99 <= 300 ms, 40 ms links", "loaded_replication_delta_lag_p99_le_ms", "<=", 300),
    ]
    report.notes.append(
        "Interval: probe ClientBatch written to region a's edge -> subscriber read() returns the first frame "
        "including it (same_region: a's broadcaster; cross_region: b's). replication_extra = cross - same, per "
        f"probe. Link delay {report.params['link_delay_ms_one_way']} ms one way (REACTMESH_BENCH_LINK_DELAY_MS)."
    )
    report.notes.append(
        "loaded_replication_delta_lag_*_le_ms: from region b's own histogram reactmesh_replication_delta_lag_seconds"
        "{origin_region=a} (per merged gossip delta: merged at b minus the commit time, at region a's "
        "aggregator, of the oldest update in it; a's broadcaster relays Delta.origin_time_ms unchanged), "
        "observations between the start and end of the loaded phase; the value is the upper bound of the bucket "
        "holding the quantile (buckets 5, 10, 25, 50, 100, 250, 500 ms...)."
    )
    return report
