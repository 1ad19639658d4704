"""Live comments through the gateway: HTTP routes, "comments" messages on the stream sockets, slow-socket lanes.

What they prove: a comment POSTed and resent with its client_key is stored once and reaches every socket of the
stream through one upstream WatchComments; a socket that joins later gets the recent comments and the pin as a
snapshot; likes, deletes, pins and unpins reach the sockets; history pages over GET; bad bodies are 400 and a
viewer over the post limit is 429 with Retry-After; a broken WatchComments is resumed after the last comment id
with no second snapshot; a slow socket's comment lane merges (never into reaction frames) and says ``gap`` when
it had to drop comments.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import grpc
import httpx
import pytest
import websockets

from reactmesh.edge.auth import Authorizer
from reactmesh.region_node.devmesh import InProcessMesh
from reactmesh.region_node.gateway.app import Gateway
from reactmesh.region_node.gateway.config import GatewayConfig
from reactmesh.region_node.gateway.frames import MERGED_COMMENTS, CommentWire, SocketQueue, WireFrame
from reactmesh.v1 import broadcast_pb2, broadcast_pb2_grpc, comments_pb2, comments_pb2_grpc
from tests.support.polling import eventually


class Chat:
    """A WebSocket on a gateway stream that keeps the comments it would display (by id, in arrival order)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.comments: dict[str, dict[str, Any]] = {}
        self.pinned: dict[str, Any] | None = None
        self.messages: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for text in self.ws:
            m = json.loads(text)
            if m["type"] != "comments":
                continue
            self.messages.append(m)
            if m["snapshot"]:
                self.comments = {}
            for c in m["comments"]:
                self.comments[c["comment_id"]] = c
            for gone in m["deleted_ids"]:
                self.comments.pop(gone, None)
            if "pinned" in m:
                self.pinned = m["pinned"]

    def texts(self) -> list[str]:
        return [c["text"] for c in self.comments.values()]

    async def close(self) -> None:
        await self.ws.close()
        self.task.cancel()


@pytest.fixture
async def region(tmp_path: Path) -> AsyncIterator[tuple[str, Gateway]]:
    overrides = {"gateway": {"idle_release_ms": 0}, "broadcaster": {"comments": {"post_burst": 3}}}
    async with InProcessMesh(tmp_path, overrides=overrides) as mesh:
        gateway = mesh.nodes[("a", "main")].gateway
        assert gateway is not None and gateway.address is not None
        yield gateway.address, gateway


async def test_a_comment_resent_is_stored_once_and_reaches_every_socket_through_one_upstream(
    region: tuple[str, Gateway],
) -> None:
    address, gateway = region
    chats = [Chat(await websockets.connect(f"ws://{address}/v1/streams/c1")) for _ in range(3)]
    await eventually(lambda: all(c.messages for c in chats))  # the late-joiner snapshot, empty
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        body = {"viewer_id": "ana", "text": "what a catch!", "client_key": "k-1"}
        first = await http.post("/v1/streams/c1/comments", json=body)
        again = await http.post("/v1/streams/c1/comments", json=body)
        assert first.status_code == 200, first.text
        assert (first.json()["duplicate"], again.json()["duplicate"]) == (False, True)
        comment_id = first.json()["comment"]["comment_id"]
        assert again.json()["comment"]["comment_id"] == comment_id
        reply = await http.post(
            "/v1/streams/c1/comments", json={"viewer_id": "ben", "text": "unreal", "reply_to": comment_id}
        )
        assert reply.json()["comment"]["reply_to"] == comment_id
        await eventually(lambda: all(c.texts() == ["what a catch!", "unreal"] for c in chats))
        stats = gateway.statistics()
        assert (stats["comment_upstreams_opened"], stats["sockets"]) == (1, 3)

        page = await http.get("/v1/streams/c1/comments", params={"limit": 1})
        assert [c["text"] for c in page.json()["comments"]] == ["unreal"]  # newest first
        older = await http.get("/v1/streams/c1/comments", params={"limit": 1, "before": page.json()["next_before"]})
        assert [c["comment_id"] for c in older.json()["comments"]] == [comment_id]
    for c in chats:
        await c.close()


async def test_a_late_socket_gets_the_recent_comments_and_pin_and_follows_likes_deletes_and_unpins(
    region: tuple[str, Gateway],
) -> None:
    address, _ = region
    early = Chat(await websockets.connect(f"ws://{address}/v1/streams/c2"))
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        ids = []
        for i, text in enumerate(("one", "two", "three")):
            r = await http.post("/v1/streams/c2/comments", json={"viewer_id": f"v{i}", "text": text})
            ids.append(r.json()["comment"]["comment_id"])
        pinned = await http.put("/v1/streams/c2/pin", json={"comment_id": ids[1]})
        assert pinned.json()["pinned"]["text"] == "two"
        await eventually(lambda: early.pinned is not None and len(early.comments) == 3)

        late = Chat(await websockets.connect(f"ws://{address}/v1/streams/c2"))
        await eventually(lambda: bool(late.messages))
        assert late.messages[0]["snapshot"] and late.texts() == ["one", "two", "three"]
        assert late.pinned is not None and late.pinned["comment_id"] == ids[1]

        assert "/" in ids[0]  # the node id: sent escaped, as a page's encodeURIComponent does
        liked = await http.post(f"/v1/streams/c2/comments/{quote(ids[0], safe='')}/likes", json={"viewer_id": "fan"})
        assert liked.status_code == 200, (liked.status_code, liked.text)
        assert liked.json() == {"likes": 1}
        assert (await http.delete(f"/v1/streams/c2/comments/{ids[2]}")).status_code == 200
        assert (await http.delete("/v1/streams/c2/pin")).json() == {"pinned": None}
        for chat in (early, late):
            await eventually(lambda chat=chat: chat.texts() == ["one", "two"] and chat.pinned is None)
        history = (await http.get("/v1/streams/c2/comments")).json()
        assert [c["text"] for c in history["comments"]] == ["two", "one"] and history["pinned"] is None
        assert history["comments"][1]["likes"] == 1
    await early.close()
    await late.close()


async def test_bad_comment_requests_are_400_and_a_viewer_over_the_limit_is_429(region: tuple[str, Gateway]) -> None:
    address, _ = region
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        for body in ([1], {"viewer_id": "v", "text": 5}, {"viewer_id": "v", "text": ""}, {"viewer_id": "v"}):
            r = await http.post("/v1/streams/c3/comments", json=body)
            assert (r.status_code, r.json()["error"]) == (400, "INVALID_ARGUMENT"), r.text
        r = await http.post("/v1/streams/c3/comments", json={"viewer_id": "v", "text": "x" * 501})
        assert r.status_code == 400
        assert (await http.post("/v1/streams/c3/comments", content=b"{nope")).status_code == 400
        assert (await http.get("/v1/streams/c3/comments", params={"limit": "many"})).status_code == 400
        assert (await http.get("/v1/streams/c3/comments", params={"limit": 101})).status_code == 400
        assert (await http.put("/v1/streams/c3/pin", json={})).status_code == 400
        assert (await http.put("/v1/streams/c3/pin", json={"comment_id": "nope"})).status_code == 400  # not an id
        answers = [
            await http.post("/v1/streams/c3/comments", json={"viewer_id": "fast", "text": f"spam {i}"})
            for i in range(4)
        ]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]  # post_burst = 3
        assert int(answers[-1].headers["Retry-After"]) >= 1
        assert answers[-1].json()["error"] == "RESOURCE_EXHAUSTED"


class Scripted(broadcast_pb2_grpc.BroadcastServicer, comments_pb2_grpc.CommentsServiceServicer):
    """WatchComments: the first call sends the late-joiner frame and one comment, then breaks; later calls send
    one more comment and stay open. Subscribe: one snapshot, then stays open."""

    def __init__(self) -> None:
        self.requests: list[comments_pb2.WatchCommentsRequest] = []

    async def Subscribe(self, request: Any, context: Any) -> AsyncIterator[broadcast_pb2.Frame]:  # type: ignore[override]
        yield broadcast_pb2.Frame(stream_id=request.stream_id, epoch=1, seq=1, kind=broadcast_pb2.Frame.SNAPSHOT)
        await asyncio.Event().wait()

    async def WatchComments(self, request: Any, context: Any) -> AsyncIterator[comments_pb2.WatchCommentsResponse]:  # type: ignore[override]
        self.requests.append(request)

        def frame(*ids: str) -> comments_pb2.WatchCommentsResponse:
            comments = [comments_pb2.Comment(comment_id=i, stream_id="s1", text=f"text {i}") for i in ids]
            return comments_pb2.WatchCommentsResponse(
                frame=comments_pb2.CommentFrame(stream_id="s1", comments=comments)
            )

        if len(self.requests) == 1:
            yield frame("c-01")
            yield frame("c-02")
            await context.abort(grpc.StatusCode.UNAVAILABLE, "broadcaster restarting")
        yield frame("c-03")
        await asyncio.Event().wait()


async def test_a_broken_watch_is_resumed_after_the_last_comment_without_a_second_snapshot() -> None:
    scripted = Scripted()
    server = grpc.aio.server()
    broadcast_pb2_grpc.add_BroadcastServicer_to_server(scripted, server)
    comments_pb2_grpc.add_CommentsServiceServicer_to_server(scripted, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    upstream = f"127.0.0.1:{port}"
    config = GatewayConfig(listen="127.0.0.1:0", edge=upstream, broadcaster=upstream, backoff_initial_ms=1)
    gateway = Gateway(config, Authorizer.disabled())
    await gateway.start()
    try:
        chat = Chat(await websockets.connect(f"ws://{gateway.address}/v1/streams/s1"))
        await eventually(lambda: list(chat.comments) == ["c-01", "c-02", "c-03"])
        assert [m["snapshot"] for m in chat.messages] == [True, False, False]
        assert [r.after_id for r in scripted.requests] == ["", "c-02"]
        assert gateway.statistics()["comment_upstream_reconnects"] == 1
        await chat.close()
    finally:
        await gateway.close(1.0)
        await server.stop(0)


def _comments(*ids: str, snapshot: bool = False) -> CommentWire:
    return CommentWire([{"comment_id": i, "text": i} for i in ids], snapshot=snapshot)


def _delta(seq: int, heart: int) -> WireFrame:
    return WireFrame("s", "delta", 1, seq, {"heart": heart}, {})


async def test_a_slow_socket_merges_comment_frames_in_their_own_lane_and_keeps_arrival_order() -> None:
    q = SocketQueue("s", limit=2)
    shared = _comments("a")
    q.put_comments(shared)
    q.put(_delta(1, 1))
    q.put_comments(_comments("b"))
    q.put_comments(_comments("c"))  # the comment lane is full: merged into "b"'s frame
    q.put(_delta(2, 2))
    q.put(_delta(3, 4))  # the reaction lane is full: merged into seq 2
    texts = [json.loads(t) for t in [await q.get() for _ in range(4)] if t is not None]
    assert [(m["type"], m.get("seq")) for m in texts] == [
        ("comments", None),
        ("frame", 1),
        ("comments", None),
        ("frame", 3),
    ]
    assert [c["comment_id"] for c in texts[2]["comments"]] == ["b", "c"]
    assert texts[3]["counts"] == {"heart": 6}
    assert [c["comment_id"] for c in shared.comments] == ["a"]  # a shared frame is never changed
    assert q.coalesced == 2

    q.put_comments(_comments("x"))
    q.put_comments(_comments("y"))
    q.put_comments(_comments(*(f"m{i}" for i in range(MERGED_COMMENTS + 5))))
    q.put_comments(_comments("z", snapshot=True))  # replaces the comment lane, not the reactions
    q.put(_delta(4, 1))
    out = [json.loads(t) for t in [await q.get(), await q.get()] if t is not None]
    assert [(m["type"], m.get("snapshot")) for m in out] == [("comments", True), ("frame", None)]

    q.put_comments(_comments("p"))
    q.put_comments(_comments("q"))
    q.put_comments(_comments(*(f"m{i}" for i in range(MERGED_COMMENTS + 5))))
    first, merged = json.loads(await q.get() or ""), json.loads(await q.get() or "")
    assert [c["comment_id"] for c in first["comments"]] == ["p"] and not first["gap"]
    assert len(merged["comments"]) == MERGED_COMMENTS and merged["gap"]
    assert merged["comments"][-1]["comment_id"] == f"m{MERGED_COMMENTS + 4}"
