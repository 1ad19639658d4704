"""The gateway's probes against two scripted upstreams (a grpc.health.v1 server each for edge and broadcaster).

What they prove: ``/readyz`` is 200 only while both upstreams report SERVING and the upstream token file holds a
token, and names what is wrong otherwise (503); ``/healthz`` stays 200 whatever the upstreams do, so a kubelet
liveness probe never restarts a gateway for a broadcaster's outage.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from reactmesh.edge.auth import Authorizer
from reactmesh.region_node.gateway.app import Gateway
from reactmesh.region_node.gateway.config import GatewayConfig

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class Upstream:
    server: grpc.aio.Server
    health: Any
    address: str


async def upstream() -> Upstream:
    server = grpc.aio.server()
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await health.set("", SERVING)
    return Upstream(server, health, f"127.0.0.1:{port}")


@pytest.fixture
async def probes(tmp_path: Path) -> AsyncIterator[tuple[Upstream, Upstream, Path, httpx.AsyncClient]]:
    edge, bcast = await upstream(), await upstream()
    token = tmp_path / "token"
    token.write_text("a.gateway.token\n")
    config = GatewayConfig(
        listen="127.0.0.1:0", edge=edge.address, broadcaster=bcast.address, upstream_token_file=str(token)
    )
    gateway = Gateway(config, Authorizer.disabled())
    address = await gateway.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://{address}", timeout=5) as http:
            yield edge, bcast, token, http
    finally:
        await gateway.close(1.0)
        for u in (edge, bcast):
            await u.server.stop(0)


async def test_ready_only_while_both_upstreams_serve_and_the_token_is_there_and_alive_regardless(
    probes: tuple[Upstream, Upstream, Path, httpx.AsyncClient],
) -> None:
    edge, bcast, _, http = probes
    ready = await http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "upstreams": {"edge": "SERVING", "broadcaster": "SERVING"}}

    await bcast.health.set("", NOT_SERVING)
    not_ready = await http.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["upstreams"] == {"edge": "SERVING", "broadcaster": "NOT_SERVING"}
    assert not_ready.json()["problems"] == ["broadcaster: NOT_SERVING"]
    assert (await http.get("/healthz")).status_code == 200
    await bcast.health.set("", SERVING)
    assert (await http.get("/readyz")).status_code == 200

    await edge.server.stop(0)
    gone = await http.get("/readyz")
    assert gone.status_code == 503
    assert gone.json()["upstreams"]["edge"] in {"UNAVAILABLE", "DEADLINE_EXCEEDED"}
    assert (await http.get("/healthz")).json() == {"status": "serving"}


async def test_a_missing_or_empty_upstream_token_makes_the_gateway_unready(
    probes: tuple[Upstream, Upstream, Path, httpx.AsyncClient],
) -> None:
    _, _, token, http = probes
    token.write_text("\n")
    empty = await http.get("/readyz")
    assert empty.status_code == 503
    assert empty.json()["problems"] == [f"upstream token {token} is empty"]
    token.unlink()
    missing = await http.get("/readyz")
    assert missing.status_code == 503 and "unreadable" in missing.json()["problems"][0]
    assert missing.json()["upstreams"] == {"edge": "SERVING", "broadcaster": "SERVING"}
    token.write_text("a.gateway.token\n")
    assert (await http.get("/readyz")).status_code == 200
