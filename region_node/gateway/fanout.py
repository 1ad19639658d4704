"""Hierarchical fan-out: one upstream ``Broadcast.Subscribe`` per stream per gateway, many local sockets.

- ``Hub.join`` gives a socket a bounded ``SocketQueue`` on its stream's ``Upstream``, opening the upstream on the
  first join. A socket that joins a running upstream first gets a snapshot made from what the upstream has shown
  so far (totals, polls, the last (epoch, seq)), so it needs no call of its own.
- Each upstream frame becomes one ``WireFrame`` whose JSON text is made once, on first use, and shared by every
  socket's queue (``frames``: bounded, lossless coalescing, the broadcaster's rule), so a slow socket gets fewer,
  bigger frames and never wrong counts; it never holds back the upstream or the other sockets.
- An upstream that breaks reconnects with ``resume`` = its last (epoch, seq) after a full-jitter backoff
  (``edge.backoff``), so the broadcaster replays what was missed or sends a snapshot; sockets see no break.
- When the last socket of a stream leaves, its upstream is closed after ``idle_release_ms``: the gateway's cost
  grows with the streams being watched, not with the streams ever watched.
- Live comments ride the same sockets: beside its Subscribe, an upstream holds one ``WatchComments`` call for the
  stream (when the broadcaster serves comments; UNIMPLEMENTED ends it quietly), resumed after the last comment
  id. Comment frames (``CommentWire``), already sampled per stream by the broadcaster, are shared by every socket
  and queue in a lane of their own. A socket that joins gets the upstream's last ``LATE_JOIN`` comments and the
  pin as a snapshot. The shared call watches as no viewer: a shadowed comment (a muted author) is not shown on
  the gateway's sockets, not even to its author.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from reactmesh.edge.backoff import FullJitterBackoff
from reactmesh.region_node.gateway.config import GatewayConfig
from reactmesh.region_node.gateway.frames import CommentWire, SocketQueue, WireFrame
from reactmesh.v1 import broadcast_pb2, broadcast_pb2_grpc, comments_pb2, comments_pb2_grpc

log = logging.getLogger(__name__)

LATE_JOIN = 100
"""Comments a joining socket gets (the newest, in arrival order), as the broadcaster's late-join default."""


@dataclass
class HubStats:
    upstreams_opened: int = 0
    upstream_reconnects: int = 0
    upstreams_released: int = 0
    frames_received: int = 0
    frames_queued: int = 0
    sockets_joined: int = 0
    coalesced_by_closed: int = 0
    comment_upstreams_opened: int = 0
    comment_upstream_reconnects: int = 0
    comment_frames_received: int = 0


class Upstream:
    """One stream's Subscribe call (and WatchComments call) and the sockets they feed."""

    def __init__(self, hub: Hub, stream_id: str) -> None:
        self.hub = hub
        self.stream_id = stream_id
        self.sockets: set[SocketQueue] = set()
        self.shown: dict[str, int] = {}
        self.polls: dict[str, dict[str, Any]] = {}
        self.last: tuple[int, int] | None = None
        self.drained = False
        self.release: asyncio.TimerHandle | None = None
        self.recent: OrderedDict[str, dict[str, Any]] = OrderedDict()  # the last LATE_JOIN comments, by arrival
        self.pinned: dict[str, Any] | None = None
        self.comments_seen = False
        self.last_comment = ""
        self.task = asyncio.create_task(self._run(), name=f"gateway-upstream-{stream_id}")
        self.comments_task: asyncio.Task[None] | None = None
        if hub.comments_stub is not None:
            self.comments_task = asyncio.create_task(self._run_comments(), name=f"gateway-comments-{stream_id}")
            hub.stats.comment_upstreams_opened += 1

    def snapshot(self) -> WireFrame | None:
        """What a socket joining now must show, or None before the first upstream frame."""
        if self.last is None:
            return None
        epoch, seq = self.last
        return WireFrame(
            self.stream_id, "snapshot", epoch, seq, dict(self.shown), dict(self.polls), drained=self.drained
        )

    def comments_snapshot(self) -> CommentWire | None:
        """The comments a socket joining now must show, or None before the first comment frame."""
        if not self.comments_seen:
            return None
        return CommentWire(list(self.recent.values()), pinned=self.pinned, pin_changed=True, snapshot=True)

    def _apply_comments(self, frame: comments_pb2.CommentFrame, snapshot: bool) -> None:
        wire = CommentWire.from_proto(frame, snapshot)
        recent = self.recent
        if snapshot:
            recent.clear()
        for c in wire.comments:
            recent[c["comment_id"]] = c  # a comment framed again (likes) keeps its place, with its new likes
            self.last_comment = c["comment_id"]
        for gone in wire.deleted:
            recent.pop(gone, None)
        while len(recent) > LATE_JOIN:
            recent.popitem(last=False)
        if wire.pin_changed:
            self.pinned = wire.pinned
        self.comments_seen = True
        stats = self.hub.stats
        stats.comment_frames_received += 1
        for sock in self.sockets:
            sock.put_comments(wire)
        stats.frames_queued += len(self.sockets)

    async def _run_comments(self) -> None:
        hub = self.hub
        stub = hub.comments_stub
        assert stub is not None
        failures = 0
        attempt = 0
        while True:
            request = comments_pb2.WatchCommentsRequest(stream_id=self.stream_id, after_id=self.last_comment)
            if attempt > 0:
                hub.stats.comment_upstream_reconnects += 1
            attempt += 1
            call: Any = stub().WatchComments(request, metadata=hub.metadata())
            first = True
            try:
                while True:
                    reply = await call.read()
                    if reply is grpc.aio.EOF:
                        break
                    failures = 0
                    # A fresh watch starts with the late-joiner frame; a resume that lost its place, with one
                    # flagged gap: both replace what sockets show.
                    self._apply_comments(reply.frame, first and (not request.after_id or reply.frame.gap))
                    first = False
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                    log.info(
                        "gateway: the broadcaster serves no comments; stream %s has reactions only", self.stream_id
                    )
                    return
                log.info(
                    "gateway comments %s ended (%s); resuming after %r",
                    self.stream_id,
                    exc.code().name,
                    self.last_comment,
                )
            finally:
                call.cancel()
            failures += 1
            await asyncio.sleep(hub.backoff.compute(failures))

    def _apply(self, frame: broadcast_pb2.Frame) -> None:
        wire = WireFrame.from_proto(frame)
        if wire.kind == "snapshot":
            self.shown = dict(wire.counts)
            self.polls = dict(wire.polls)
        else:
            for emoji, n in wire.counts.items():
                self.shown[emoji] = self.shown.get(emoji, 0) + n
            self.polls.update(wire.polls)
        self.last = (frame.epoch, frame.seq)
        self.drained = self.drained or frame.drained
        stats = self.hub.stats
        stats.frames_received += 1
        for sock in self.sockets:
            sock.put(wire)
        stats.frames_queued += len(self.sockets)

    async def _run(self) -> None:
        hub = self.hub
        failures = 0
        attempt = 0
        while True:
            request = broadcast_pb2.SubscribeRequest(stream_id=self.stream_id)
            if self.last is not None:
                request.resume.epoch, request.resume.seq = self.last
            if attempt > 0:
                hub.stats.upstream_reconnects += 1
            attempt += 1
            call: Any = hub.stub().Subscribe(request, metadata=hub.metadata())
            try:
                while True:
                    frame = await call.read()
                    if frame is grpc.aio.EOF:
                        break
                    failures = 0
                    self._apply(frame)
            except grpc.aio.AioRpcError as exc:
                log.info("gateway upstream %s ended (%s); resuming at %s", self.stream_id, exc.code().name, self.last)
            finally:
                call.cancel()
            if self.drained:
                if self.comments_task is not None:
                    self.comments_task.cancel()
                for sock in self.sockets:
                    sock.close()
                hub.forget(self)
                return
            failures += 1
            await asyncio.sleep(hub.backoff.compute(failures))

    def stop(self) -> None:
        if self.release is not None:
            self.release.cancel()
        self.task.cancel()
        if self.comments_task is not None:
            self.comments_task.cancel()
        for sock in self.sockets:
            sock.close()


class Hub:
    """Every upstream of one gateway. ``stub`` and ``metadata`` give the broadcaster stub and call metadata;
    ``comments_stub``, when given, the CommentsService stub (else sockets get reactions and polls only)."""

    def __init__(
        self,
        config: GatewayConfig,
        stub: Callable[[], broadcast_pb2_grpc.BroadcastStub],
        metadata: Callable[[], tuple[tuple[str, str], ...]],
        rng: random.Random | None = None,
        comments_stub: Callable[[], comments_pb2_grpc.CommentsServiceStub] | None = None,
    ) -> None:
        self.config = config
        self.stub = stub
        self.comments_stub = comments_stub
        self.metadata = metadata
        self.backoff = FullJitterBackoff(
            config.backoff_initial_ms / 1000, config.backoff_max_ms / 1000, rng or random.Random()
        )
        self.upstreams: dict[str, Upstream] = {}
        self.stats = HubStats()

    def join(self, stream_id: str) -> SocketQueue:
        """A new socket's queue on ``stream_id`` (its first frame is a snapshot)."""
        up = self.upstreams.get(stream_id)
        if up is None:
            up = self.upstreams[stream_id] = Upstream(self, stream_id)
            self.stats.upstreams_opened += 1
        if up.release is not None:
            up.release.cancel()
            up.release = None
        queue = SocketQueue(stream_id, self.config.queue_frames)
        first = up.snapshot()
        if first is not None:
            queue.put(first)
        comments = up.comments_snapshot()
        if comments is not None:
            queue.put_comments(comments)
        up.sockets.add(queue)
        self.stats.sockets_joined += 1
        return queue

    def leave(self, queue: SocketQueue) -> None:
        queue.close()
        self.stats.coalesced_by_closed += queue.coalesced
        up = self.upstreams.get(queue.stream_id)
        if up is None:
            return
        up.sockets.discard(queue)
        if not up.sockets and up.release is None:
            delay = self.config.idle_release_ms / 1000
            up.release = asyncio.get_running_loop().call_later(delay, self._release, up)

    def _release(self, up: Upstream) -> None:
        up.release = None
        if not up.sockets and self.upstreams.get(up.stream_id) is up:
            del self.upstreams[up.stream_id]
            up.stop()
            self.stats.upstreams_released += 1

    def forget(self, up: Upstream) -> None:
        if self.upstreams.get(up.stream_id) is up:
            del self.upstreams[up.stream_id]

    def statistics(self) -> dict[str, Any]:
        sockets = [q for up in self.upstreams.values() for q in up.sockets]
        stats = dict(vars(self.stats))
        closed = stats.pop("coalesced_by_closed")
        return {
            **stats,
            "upstreams": len(self.upstreams),
            "sockets": len(sockets),
            "deepest_queue": max((q.depth for q in sockets), default=0),
            "frames_coalesced": closed + sum(q.coalesced for q in sockets),  # merges into queued frames, ever
        }

    async def close(self) -> None:
        ups = list(self.upstreams.values())
        self.upstreams.clear()
        for up in ups:
            up.stop()
        for up in ups:
            for task in (up.task, up.comments_task):
                if task is not None:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
