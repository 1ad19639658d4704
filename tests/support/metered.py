"""Operations tests (metrics, alert rules, a real Prometheus) and their shared harness.

``metered_region`` runs one region on loopback as two Nodes with their own /metrics: an aggregator
node and a front node (edge + broadcaster, gossiping from the aggregator), as Kubernetes runs them.
``scrape`` reads a /metrics endpoint over real HTTP and parses it with prometheus_client's parser.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from reactmesh.merge.clock import Clock
from reactmesh.region_node.config import from_mapping
from reactmesh.region_node.node import Node


@dataclass
class Region:
    aggregator: Node
    front: Node

    @property
    def edge(self) -> str:
        return self.front.addresses["edge"]

    @property
    def broadcaster(self) -> str:
        return self.front.addresses["broadcaster"]


@asynccontextmanager
async def metered_region(
    tmp_path: Path, region: str = "a", *, edge: Mapping[str, Any] | None = None, clock: Clock | None = None
) -> AsyncIterator[Region]:
    """An aggregator node and an edge+broadcaster node, each with metrics on 127.0.0.1 port 0."""
    agg = Node(
        from_mapping(
            {
                "region": region,
                "metrics_listen": "127.0.0.1:0",
                "aggregator": {
                    "listen": "127.0.0.1:0",
                    "node_id": f"{region}/agg-0",
                    "db_path": str(tmp_path / f"{region}-agg-0.db"),
                },
            }
        ),
        frozenset({"aggregator"}),
        clock,
    )
    await agg.start()
    source = agg.addresses["aggregator"]
    front = Node(
        from_mapping(
            {
                "region": region,
                "metrics_listen": "127.0.0.1:0",
                "edge": {"listen": "127.0.0.1:0", "aggregators": [source], **(edge or {})},
                "broadcaster": {"listen": "127.0.0.1:0", "node_id": f"{region}/bcast-0", "sources": [source]},
            }
        ),
        frozenset({"edge", "broadcaster"}),
        clock,
    )
    try:
        await front.start()
        yield Region(agg, front)
    finally:
        await front.stop(grace=1.0)
        await agg.stop(grace=1.0)


async def http_get(address: str, path: str = "/metrics", headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    """One HTTP GET (urllib, in a thread): (status, body)."""

    def get() -> tuple[int, bytes]:
        request = urllib.request.Request(f"http://{address}{path}", headers=dict(headers or {}))
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                return int(reply.status), bytes(reply.read())
        except urllib.error.HTTPError as error:
            return int(error.code), bytes(error.read())

    return await asyncio.to_thread(get)


async def scrape_text(address: str) -> str:
    status, body = await http_get(address)
    assert status == 200, body
    return body.decode()


async def scrape(address: str) -> list[Sample]:
    """Every sample served at http://address/metrics (Prometheus text format)."""
    text = await scrape_text(address)
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels`` (0 when none)."""
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def names(samples: list[Sample]) -> set[str]:
    return {s.name for s in samples}
