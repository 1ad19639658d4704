"""Shared parts of the benchmark scenarios: configuration knobs, a process mesh whose gossip links can be rerouted
(through ``bench.delay_proxy``), and reading its totals. Reports are in ``bench.report``, child processes in
``bench.procs``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from reactmesh.bench.procs import free_port
from reactmesh.region_node.devmesh import ProcessMesh, plan, to_toml

REPO = Path(__file__).resolve().parent.parent

EDGE_OVERRIDES: dict[str, dict[str, Any]] = {"edge": {"rate_per_s": 1000.0, "burst": 5000}}
"""Mesh overrides of every scenario: a simulated viewer sends 10-tap batches several times a second, far
above a human's 10 taps/s, so the edge's per-viewer rate limit is raised (nothing is rate-limited, which
keeps the ground truth exact per (stream, emoji))."""


def env_overrides() -> dict[str, dict[str, Any]]:
    raw = os.environ.get("REACTMESH_BENCH_OVERRIDES", "").strip()
    if not raw:
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"REACTMESH_BENCH_OVERRIDES must be a JSON object of objects, got {raw!r}")
    return data


def merge_overrides(*layers: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Later layers win, field by field; a nested table (e.g. ``edge.shedding``) is merged the same way rather
    than replaced, so ``{"edge": {"shedding": {"target_ms": 50}}}`` keeps a scenario's ``shedding.enabled``."""
    out: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for section, fields in (layer or {}).items():
            _merge_into(out.setdefault(section, {}), fields)
    return out


def _merge_into(target: dict[str, Any], fields: Mapping[str, Any]) -> None:
    for key, value in fields.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge_into(target[key], value)
        elif isinstance(value, Mapping):
            target[key] = {}
            _merge_into(target[key], value)
        else:
            target[key] = value


def prepare_environment() -> None:
    """Apply REACTMESH_BENCH_SWITCH_INTERVAL_S here and, through a generated sitecustomize on PYTHONPATH, in
    every child process (mesh processes inherit the environment)."""
    raw = os.environ.get("REACTMESH_BENCH_SWITCH_INTERVAL_S", "").strip()
    if not raw:
        return
    interval = float(raw)
    sys.setswitchinterval(interval)
    import tempfile

    site = Path(tempfile.mkdtemp(prefix="reactmesh-bench-site-"))
    (site / "sitecustomize.py").write_text(f"import sys\nsys.setswitchinterval({interval!r})\n")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)


@dataclass
class BenchMesh(ProcessMesh):
    """A ProcessMesh whose broadcasters dial the peer addresses given per region (``peers``), so that the
    gossip links between regions can run through delay proxies."""

    peers: Mapping[str, Sequence[str]] | None = None
    metrics: bool = False
    """Serve Prometheus /metrics from each region's broadcaster process (``metrics_addresses``)."""
    metrics_addresses: dict[str, str] = field(default_factory=dict)
    edge_metrics: bool = False
    """Serve /metrics from each region's edge process too (``edge_metrics_addresses``; layout "split")."""
    edge_metrics_addresses: dict[str, str] = field(default_factory=dict)

    async def __aenter__(self) -> BenchMesh:
        if self.data_dir is None:
            import tempfile

            self._tmp = self.data_dir = Path(tempfile.mkdtemp(prefix="reactmesh-bench-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.plans = plan(self.regions, self.base_port, self.data_dir)
        overrides = merge_overrides(self.overrides, env_overrides())
        for r, p in self.plans.items():
            configs = p.split_configs(overrides) if self.layout == "split" else p.process_configs(overrides)
            name = "bcast" if self.layout == "split" else "main"
            if self.peers is not None:
                configs[name]["broadcaster"]["peers"] = list(self.peers.get(r, ()))
            if self.metrics:
                address = f"127.0.0.1:{free_port()}"
                configs[name]["metrics_listen"] = address
                self.metrics_addresses[r] = address
            if self.edge_metrics and "edge" in configs:
                address = f"127.0.0.1:{free_port()}"
                configs["edge"]["metrics_listen"] = address
                self.edge_metrics_addresses[r] = address
            for name, cfg in configs.items():
                (self.data_dir / f"{r}-{name}.toml").write_text(to_toml(cfg))
            for name in configs:
                await self.start(r, name)
        try:
            await self.wait_ready()
        except BaseException:
            await self.stop_all()
            raise
        return self

    def pids(self) -> dict[str, int]:
        return {f"{r}-{name}": p.pid for (r, name), p in self.procs.items() if p.returncode is None}


async def query_totals(address: str, streams: Sequence[str]) -> dict[str, int]:
    """ "stream/emoji" -> total, as the Query service at ``address`` has merged them so far."""
    from reactmesh.v1 import query_pb2, query_pb2_grpc

    out: dict[str, int] = {}
    async with grpc.aio.insecure_channel(address) as channel:
        stub = query_pb2_grpc.QueryStub(channel)
        replies = await asyncio.gather(
            *(stub.GetTotals(query_pb2.GetTotalsRequest(stream_id=s), timeout=10) for s in streams)
        )
        for s, reply in zip(streams, replies, strict=True):
            for c in reply.totals:
                out[f"{s}/{c.emoji}"] = int(c.count)
    return out


async def wait_totals(address: str, expected: Mapping[str, int], within: float) -> tuple[bool, float]:
    """Poll until the totals at ``address`` equal ``expected`` exactly; (matched, seconds waited)."""
    streams = sorted({k.rsplit("/", 1)[0] for k in expected})
    want = {k: v for k, v in expected.items() if v}
    started = time.monotonic()
    while True:
        got = await query_totals(address, streams)
        if got == want:
            return True, time.monotonic() - started
        if time.monotonic() - started > within:
            return False, time.monotonic() - started
        await asyncio.sleep(0.1)


def merge_accepted(results: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for r in results:
        for k, v in r.get("accepted", {}).items():
            total[k] = total.get(k, 0) + int(v)
    return total


def _read_gauges(address: str, names: Sequence[str]) -> dict[str, float]:
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    with urlopen(f"http://{address}/metrics", timeout=5) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in names:
                out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


async def scrape_gauges(address: str, names: Sequence[str]) -> dict[str, float]:
    """The summed values of the samples called ``names`` at a /metrics ``address``."""
    return await asyncio.to_thread(_read_gauges, address, names)
