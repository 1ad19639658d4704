"""A real Prometheus scrapes a running region and serves its reactmesh_ series back over the query API.

Prometheus (Debian package ``prometheus``; skipped when the binary is missing) runs as a plain process
on a loopback port with a temporary data dir, scraping both nodes of the region every second and
evaluating k8s/monitoring/prometheus-rules.yaml every second. The test polls the HTTP API until the
series are there: the first sample is queryable only some seconds after start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from reactmesh.edge.sdk import ReactionClient
from tests.ops.test_alert_rules import ALERTS, RULES
from tests.support.metered import http_get, metered_region

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="prometheus not installed: apt-get install -y --no-install-recommends prometheus",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def prometheus(tmp_path: Path, targets: list[str]) -> AsyncIterator[str]:
    """A Prometheus scraping ``targets`` every second; yields its "host:port" once it is ready."""
    shutil.copy(RULES, tmp_path / RULES.name)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {RULES.name}\n"
        f"scrape_configs:\n  - job_name: reactmesh\n    static_configs:\n      - targets: {json.dumps(targets)}\n"
    )
    address = f"127.0.0.1:{_free_port()}"
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address={address}",
            stdout=out,
            stderr=out,
        )
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while True:
            if proc.returncode is not None:
                raise AssertionError(f"prometheus exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                status, _ = await http_get(address, "/-/ready")
                if status == 200:
                    break
            if loop.time() > deadline:
                raise AssertionError(f"prometheus not ready:\n{log.read_text()[-3000:]}")
            await asyncio.sleep(0.1)
        yield address
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def api(address: str, path: str, **params: str) -> Any:
    status, body = await http_get(address, f"{path}?{urllib.parse.urlencode(params)}" if params else path)
    assert status == 200, body
    reply = json.loads(body)
    assert reply["status"] == "success", reply
    return reply["data"]


async def query(address: str, promql: str) -> dict[str, float]:
    """Instant query: {"label=value,..." without name, job and instance: value} of every returned series."""
    data = await api(address, "/api/v1/query", query=promql)
    out: dict[str, float] = {}
    for series in data["result"]:
        labels = {k: v for k, v in series["metric"].items() if k not in ("__name__", "job", "instance")}
        out[",".join(f"{k}={v}" for k, v in sorted(labels.items()))] = float(series["value"][1])
    return out


async def test_prometheus_scrapes_reactmesh_series_including_aggregator_lag(tmp_path: Path) -> None:
    async with metered_region(tmp_path) as region:
        async with ReactionClient([region.edge], viewer_id="v1") as client:
            client.tap("match-1", "heart", n=12)
            client.tap("match-1", "fire", n=5)
            await client.flush(timeout=10)
        targets = [region.front.addresses["metrics"], region.aggregator.addresses["metrics"]]
        async with prometheus(tmp_path, targets) as address:
            wanted = {
                "taps": 'sum(reactmesh_ingest_taps_total{region="a",outcome="accepted"})',
                "commit lag": 'sum(reactmesh_aggregator_commit_lag_seconds_count{region="a"})',
                "frame lag": 'sum(reactmesh_broadcast_frame_lag_seconds_count{region="a",origin_region="a"})',
                "replication lag": 'sum(reactmesh_replication_delta_lag_seconds_count{origin_region="a"})',
                "targets up": 'sum(up{job="reactmesh"})',
            }
            got: dict[str, dict[str, float]] = {}
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while True:
                got = {name: await query(address, q) for name, q in wanted.items()}
                if all(got.values()) and got["targets up"][""] == 2:
                    break
                if loop.time() > deadline:
                    raise AssertionError(f"series not returned by prometheus within 30 s: {got}")
                await asyncio.sleep(0.5)
            assert got["taps"][""] == 17
            assert got["commit lag"][""] >= 1
            assert got["frame lag"][""] >= 1

            # Per-series labels survive the scrape; a lag quantile is computable from the stored buckets.
            lag_buckets = await query(address, 'reactmesh_aggregator_commit_lag_seconds_bucket{le="+Inf"}')
            assert list(lag_buckets) == ["le=+Inf,region=a"]
            median = await query(
                address, "histogram_quantile(0.5, sum by (le) (reactmesh_aggregator_commit_lag_seconds_bucket))"
            )
            assert 0 <= median[""] <= 10
            names = await api(address, "/api/v1/label/__name__/values")
            assert len([n for n in names if n.startswith("reactmesh_")]) >= 40

            # The alert rules load and evaluate against the real series without errors.
            groups = (await api(address, "/api/v1/rules"))["groups"]
            rules = [r for g in groups for r in g["rules"]]
            assert {r["name"] for r in rules} == ALERTS
            deadline = loop.time() + 10
            while not all(r.get("lastEvaluation", "").startswith("2") for r in rules):
                assert loop.time() < deadline, rules
                await asyncio.sleep(0.5)
                rules = [r for g in (await api(address, "/api/v1/rules"))["groups"] for r in g["rules"]]
            assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
            assert all(r["state"] == "inactive" for r in rules), "a healthy region raises no alert"
