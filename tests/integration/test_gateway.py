"""The gateway against a real region on loopback (``InProcessMesh``): HTTP and WebSocket clients, real servers.

What they prove: a batch POSTed and resent is counted once, with the edge's own reject reasons; the same tokens
and roles as gRPC (401, 403, and the socket's 4401); one upstream Subscribe per stream however many sockets,
released when the last one leaves; totals, polls and votes over HTTP; frames as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from reactmesh.edge.tokens import Minter, Role
from reactmesh.region_node.devmesh import InProcessMesh, write_dev_key, write_gateway_token
from reactmesh.region_node.gateway.app import Gateway
from tests.support.polling import eventually


def _batch(seq: int, counts: dict[str, int], session: str, viewer: str = "v1", stream: str = "s1") -> dict[str, Any]:
    return {"session_id": session, "viewer_id": viewer, "seq": seq, "stream_id": stream, "counts": counts}


class Viewer:
    """A WebSocket on a gateway stream that keeps what it would display."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.shown: dict[str, int] = {}
        self.polls: dict[str, dict[str, Any]] = {}
        self.kinds: list[str] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for text in self.ws:
            m = json.loads(text)
            if m["type"] != "frame":
                continue
            self.kinds.append(m["kind"])
            if m["kind"] == "snapshot":
                self.shown = dict(m["counts"])
            else:
                for e, n in m["counts"].items():
                    self.shown[e] = self.shown.get(e, 0) + n
            self.polls.update({p["poll_id"]: p for p in m["polls"]})

    async def close(self) -> None:
        await self.ws.close()
        self.task.cancel()


@pytest.fixture
async def region(tmp_path: Path) -> AsyncIterator[tuple[str, Gateway]]:
    async with InProcessMesh(tmp_path, overrides={"gateway": {"idle_release_ms": 0}}) as mesh:
        gateway = mesh.nodes[("a", "main")].gateway
        assert gateway is not None and gateway.address is not None
        yield gateway.address, gateway


async def test_resent_batch_is_counted_once_and_seen_on_the_socket(region: tuple[str, Gateway]) -> None:
    address, _ = region
    session = os.urandom(16).hex()
    async with websockets.connect(f"ws://{address}/v1/streams/s1") as ws, httpx.AsyncClient() as http:
        viewer = Viewer(ws)
        url = f"http://{address}/v1/reactions"
        first = await http.post(url, json=_batch(1, {"heart": 3, "like": 1}, session))
        again = await http.post(url, json=_batch(1, {"heart": 3, "like": 1}, session))
        older = await http.post(url, json=_batch(1, {"heart": 3, "like": 1}, session))
        second = await http.post(url, json=_batch(2, {"heart": 2}, session))
        assert (first.status_code, first.json()["outcome"], first.json()["accepted_taps"]) == (200, "ACCEPTED", 4)
        assert [r.json()["outcome"] for r in (again, older)] == ["DUPLICATE", "DUPLICATE"]
        assert second.json()["outcome"] == "ACCEPTED"
        await eventually(lambda: viewer.shown == {"heart": 5, "like": 1})
        totals = await http.get(f"http://{address}/v1/streams/s1/totals")
        assert totals.json()["totals"] == {"heart": 5, "like": 1}
        assert viewer.kinds[0] == "snapshot"
        await viewer.close()


async def test_bad_batches_get_400_with_the_edges_reject_reason(region: tuple[str, Gateway]) -> None:
    address, _ = region
    session = os.urandom(16).hex()
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        cases = {
            "UNKNOWN_EMOJI": _batch(1, {"nope": 1}, session),
            "BAD_SESSION_ID": _batch(1, {"heart": 1}, "not-hex"),
            "BAD_SEQ": _batch(0, {"heart": 1}, session),
            "BAD_STREAM_ID": _batch(1, {"heart": 1}, session, stream="no spaces"),
            "EMPTY_BATCH": _batch(1, {}, session),
        }
        for reason, body in cases.items():
            r = await http.post("/v1/reactions", json=body)
            assert (r.status_code, r.json().get("reject_reason")) == (400, reason), r.text
        for body in (b"{not json", b"[1, 2]", json.dumps({"seq": "one"}).encode()):
            r = await http.post("/v1/reactions", content=body)
            assert (r.status_code, r.json()["error"]) == (400, "INVALID_ARGUMENT")
        assert (await http.get("/v1/streams/bad%20id/totals")).status_code == 400
        assert (await http.get("/v1/polls/nope")).status_code == 404


async def test_one_upstream_per_stream_fans_out_and_is_released_when_the_last_socket_leaves(
    region: tuple[str, Gateway],
) -> None:
    address, gateway = region
    sockets = [await websockets.connect(f"ws://{address}/v1/streams/s2") for _ in range(3)]
    other = await websockets.connect(f"ws://{address}/v1/streams/s3")
    viewers = [Viewer(ws) for ws in sockets]
    async with httpx.AsyncClient() as http:
        r = await http.post(
            f"http://{address}/v1/reactions", json=_batch(1, {"fire": 7}, os.urandom(16).hex(), stream="s2")
        )
        assert r.status_code == 200
    await eventually(lambda: all(v.shown == {"fire": 7} for v in viewers))
    late = Viewer(await websockets.connect(f"ws://{address}/v1/streams/s2"))
    await eventually(lambda: late.shown == {"fire": 7})  # the snapshot made by the gateway, no upstream call
    assert late.kinds == ["snapshot"]
    stats = gateway.statistics()
    assert (stats["upstreams_opened"], stats["upstreams"], stats["sockets"]) == (2, 2, 5)
    for v in [*viewers, late]:
        await v.close()
    await eventually(lambda: gateway.statistics()["upstreams"] == 1)  # s3 still watched
    await other.close()
    await eventually(lambda: gateway.statistics()["upstreams"] == 0)
    assert gateway.statistics()["upstreams_released"] == 2


async def test_polls_are_created_read_and_voted_over_http_and_seen_on_the_socket(region: tuple[str, Gateway]) -> None:
    address, _ = region
    async with (
        websockets.connect(f"ws://{address}/v1/streams/s4") as ws,
        httpx.AsyncClient(base_url=f"http://{address}") as http,
    ):
        viewer = Viewer(ws)
        made = await http.post("/v1/polls", json={"stream_id": "s4", "question": "Who wins?", "options": ["A", "B"]})
        assert made.status_code == 200, made.text
        poll_id = made.json()["poll_id"]
        voted = await http.post(f"/v1/polls/{poll_id}/votes", json={"viewer_id": "v9", "option": 1})
        assert voted.json()["poll"]["tallies"] == [0, 1]
        assert (await http.get(f"/v1/polls/{poll_id}")).json()["tallies"] == [0, 1]
        bad = await http.post(f"/v1/polls/{poll_id}/votes", json={"viewer_id": "v9", "option": 7})
        assert bad.status_code == 400
        await eventually(lambda: viewer.polls.get(poll_id, {}).get("tallies") == [0, 1])
        await viewer.close()


async def test_the_gateway_applies_the_same_tokens_and_roles_as_grpc(tmp_path: Path) -> None:
    key = write_dev_key(tmp_path / "auth.key")
    token_file = write_gateway_token(key, tmp_path / "gateway.token")
    overrides = {
        "auth": {"enabled": True, "key_file": str(key)},
        "gateway": {"upstream_token_file": str(token_file)},
    }
    minter = Minter(key)
    async with InProcessMesh(tmp_path, overrides=overrides) as mesh:
        gateway = mesh.nodes[("a", "main")].gateway
        assert gateway is not None
        address = gateway.address
        session = os.urandom(16).hex()
        mine = {"Authorization": f"Bearer {minter.mint('v1')}"}
        async with httpx.AsyncClient(base_url=f"http://{address}") as http:
            assert (await http.post("/v1/reactions", json=_batch(1, {"heart": 1}, session))).status_code == 401
            forged = {"Authorization": "Bearer not.a.token"}
            assert (
                await http.post("/v1/reactions", json=_batch(1, {"heart": 1}, session), headers=forged)
            ).status_code == 401
            as_other = await http.post(
                "/v1/reactions", json=_batch(1, {"heart": 1}, session, viewer="v2"), headers=mine
            )
            assert as_other.status_code == 403
            ok = await http.post("/v1/reactions", json=_batch(1, {"heart": 2}, session), headers=mine)
            assert ok.json()["outcome"] == "ACCEPTED"
            poll = {"stream_id": "s1", "question": "?", "options": ["x", "y"]}
            assert (await http.post("/v1/polls", json=poll, headers=mine)).status_code == 403  # a viewer
            host = {"Authorization": f"Bearer {minter.mint('h1', roles=(Role.HOST,), streams=('s1',))}"}
            assert (await http.post("/v1/polls", json=poll, headers=host)).status_code == 200
            assert (await http.get("/v1/streams/s1/totals")).status_code == 401

        async with websockets.connect(f"ws://{address}/v1/streams/s1") as ws:
            refusal = json.loads(await ws.recv())
            assert (refusal["type"], refusal["status"]) == ("error", 401)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        token = minter.mint("v1")
        async with websockets.connect(f"ws://{address}/v1/streams/s1?access_token={token}") as ws:
            viewer = Viewer(ws)
            await eventually(lambda: viewer.shown == {"heart": 2})
            await viewer.close()
        protocols = ["reactmesh.v1", f"bearer.{token}"]
        async with websockets.connect(f"ws://{address}/v1/streams/s1", subprotocols=protocols) as ws:  # type: ignore[arg-type]
            assert ws.subprotocol == "reactmesh.v1"
            first = json.loads(await ws.recv())
            while first["type"] != "frame":  # the stream's comments come on the same socket
                first = json.loads(await ws.recv())
            assert first["kind"] == "snapshot"
