"""Gateway pieces without a network: socket queues, wire forms, config errors, the OpenAPI document."""

from __future__ import annotations

import json
import re

import pytest
import websockets
from starlette.routing import Route, WebSocketRoute

from reactmesh.edge.auth import Authorizer
from reactmesh.merge.errors import ConfigError
from reactmesh.region_node.gateway.app import Gateway
from reactmesh.region_node.gateway.config import GatewayConfig
from reactmesh.region_node.gateway.frames import SocketQueue, WireFrame
from reactmesh.region_node.gateway.openapi import document
from reactmesh.region_node.gateway.wire import ack_json
from reactmesh.v1 import ingest_pb2

BatchAck = ingest_pb2.BatchAck


def delta(seq: int, counts: dict[str, int], polls: dict[str, dict[str, object]] | None = None) -> WireFrame:
    return WireFrame("s", "delta", 1, seq, counts, polls or {})


def drain(queue: SocketQueue) -> list[dict[str, object]]:
    out = []
    queue.close()
    while queue.depth:
        text = queue._frames.popleft()[1].encode()
        out.append(json.loads(text))
    return out


def test_a_slow_socket_gets_fewer_bigger_frames_with_exact_sums_and_shared_frames_untouched() -> None:
    queue = SocketQueue("s", limit=4)
    shared = [delta(i, {"heart": 1, "fire": i % 2}, {"p": {"tallies": [i]}}) for i in range(1, 101)]
    for f in shared:
        queue.put(f)
    frames = drain(queue)
    assert len(frames) == 4
    assert sum(f["counts"]["heart"] for f in frames) == 100  # type: ignore[index]
    assert sum(f["counts"].get("fire", 0) for f in frames) == 50  # type: ignore[union-attr]
    assert sum(f["coalesced"] for f in frames) == 100  # type: ignore[misc]
    assert frames[-1]["seq"] == 100 and frames[-1]["polls"] == [{"tallies": [100]}]
    assert queue.coalesced == 96
    assert all(f.counts["heart"] == 1 for f in shared)  # what other sockets share is never changed


def test_a_snapshot_replaces_what_a_socket_had_queued() -> None:
    queue = SocketQueue("s", limit=8)
    queue.put(delta(1, {"heart": 4}))
    queue.put(WireFrame("s", "snapshot", 2, 1, {"heart": 9}, {}))
    queue.put(delta(2, {"heart": 1}))
    assert [(f["kind"], f["counts"]) for f in drain(queue)] == [("snapshot", {"heart": 9}), ("delta", {"heart": 1})]


def test_acks_map_to_http_statuses_with_retry_after_in_whole_seconds() -> None:
    assert ack_json(BatchAck(seq=3, outcome=BatchAck.ACCEPTED, accepted_taps=5))[0] == 200
    assert ack_json(BatchAck(seq=3, outcome=BatchAck.DUPLICATE))[1]["outcome"] == "DUPLICATE"
    status, body, headers = ack_json(BatchAck(seq=3, outcome=BatchAck.RETRY, retry_after_ms=1200))
    assert (status, headers["Retry-After"], body["retry_after_ms"]) == (429, "2", 1200)
    status, body, _ = ack_json(BatchAck(seq=3, outcome=BatchAck.REJECTED, reject_reason=BatchAck.VIEWER_MUTED))
    assert (status, body["reject_reason"]) == (400, "VIEWER_MUTED")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("listen", "nowhere"),
        ("edge", ""),
        ("queue_frames", 0),
        ("backoff_max_ms", 1),
        ("reactions", ("Heart",)),
        ("upstream_token_file", ""),
        ("websocket_deflate", "yes"),
    ],
)
def test_gateway_config_errors_name_the_field(field: str, value: object) -> None:
    kwargs: dict[str, object] = {"listen": "127.0.0.1:0", "edge": "127.0.0.1:1", "broadcaster": "127.0.0.1:2"}
    kwargs[field] = value
    with pytest.raises(ConfigError) as err:
        GatewayConfig(**kwargs)  # type: ignore[arg-type]
    assert err.value.field == f"gateway.{field}"


async def test_the_openapi_document_names_every_http_route_of_the_api() -> None:
    config = GatewayConfig(listen="127.0.0.1:0", edge="127.0.0.1:1", broadcaster="127.0.0.1:2")
    gateway = Gateway(config, Authorizer.disabled())
    doc = gateway.app.routes
    served = {
        re.sub(r":\w+}", "}", r.path)  # OpenAPI has no converters: {comment_id:path} is {comment_id}
        for r in doc
        if isinstance(r, Route) and r.path.startswith("/v1/") and "openapi" not in r.path
    }
    served -= {"/v1/config"}
    paths = document(config.reactions)["paths"]
    assert served == set(paths)
    assert any(isinstance(r, WebSocketRoute) and r.path == "/v1/streams/{stream_id}" for r in doc)
    await gateway.close()


@pytest.mark.parametrize("deflate", [False, True])
async def test_permessage_deflate_is_negotiated_only_when_configured(deflate: bool) -> None:
    config = GatewayConfig(
        listen="127.0.0.1:0", edge="127.0.0.1:1", broadcaster="127.0.0.1:2", websocket_deflate=deflate
    )
    gateway = Gateway(config, Authorizer.disabled())
    address = await gateway.start()
    try:
        async with websockets.connect(f"ws://{address}/v1/streams/s1") as ws:  # the client offers deflate
            assert ws.response is not None
            agreed = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
            assert ("permessage-deflate" in agreed) is deflate
    finally:
        await gateway.close(grace=0.1)
