"""Hierarchical fan-out: one upstream ``Broadcast.Subscribe`` per stream per gateway, many local sockets.

- ``Hub.join`` gives a socket a bounded ``SocketQueue`` on its stream's ``Upstream``, opening the upstream on the
  first join. A socket that joins a running upstream first gets a snapshot made from what the upstream has shown
  so far (totals, polls, the last (epoch, seq)), so it needs no call of its own.
- Each upstream frame becomes one ``WireFrame`` whose JSON text is made once, on first use, and shared by every
  socket's queue. A queue is bounded by ``queue_frames``: a frame that does not fit is merged into the newest
  queued one (counts summed, the later seq, ``coalesced`` added, the newest state per poll; a snapshot replaces
  everything queued before it), exactly the broadcaster's rule, so a slow socket gets fewer, bigger frames and
  never wrong counts; it never holds back the upstream or the other sockets.
- An upstream that breaks reconnects with ``resume`` = its last (epoch, seq) after a full-jitter backoff
  (``edge.backoff``), so the broadcaster replays what was missed or sends a snapshot; sockets see no break.
- When the last socket of a stream leaves, its upstream is closed after ``idle_release_ms``: the gateway's cost
  grows with the streams being watched, not with the streams ever watched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from reactmesh.edge.backoff import FullJitterBackoff
from reactmesh.region_node.gateway.config import GatewayConfig
from reactmesh.region_node.gateway.wire import FRAME_KIND, counts_json, poll_json
from reactmesh.v1 import broadcast_pb2, broadcast_pb2_grpc

log = logging.getLogger(__name__)


class WireFrame:
    """A frame as sockets receive it; ``text`` caches its JSON. A shared frame is never mutated."""

    __slots__ = (
        "coalesced",
        "counts",
        "degrade_level",
        "drained",
        "epoch",
        "kind",
        "polls",
        "seq",
        "server_time_ms",
        "shared",
        "stream_id",
        "text",
    )

    def __init__(
        self,
        stream_id: str,
        kind: str,
        epoch: int,
        seq: int,
        counts: dict[str, int],
        polls: dict[str, dict[str, Any]],
        *,
        server_time_ms: int = 0,
        coalesced: int = 1,
        drained: bool = False,
        degrade_level: int = 0,
        shared: bool = True,
    ) -> None:
        self.stream_id = stream_id
        self.kind = kind
        self.epoch = epoch
        self.seq = seq
        self.counts = counts
        self.polls = polls
        self.server_time_ms = server_time_ms
        self.coalesced = coalesced
        self.drained = drained
        self.degrade_level = degrade_level
        self.shared = shared
        self.text: str | None = None

    @classmethod
    def from_proto(cls, frame: broadcast_pb2.Frame) -> WireFrame:
        return cls(
            frame.stream_id,
            FRAME_KIND.get(frame.kind, "delta"),
            frame.epoch,
            frame.seq,
            counts_json(frame.counts),
            {p.poll_id: poll_json(p) for p in frame.polls},
            server_time_ms=frame.server_time_ms,
            coalesced=frame.coalesced or 1,
            drained=frame.drained,
            degrade_level=frame.degrade_level,
        )

    def encode(self) -> str:
        if self.text is None:
            self.text = json.dumps(
                {
                    "type": "frame",
                    "stream_id": self.stream_id,
                    "kind": self.kind,
                    "epoch": str(self.epoch),  # a uint64: a string, as in protobuf's JSON mapping
                    "seq": self.seq,
                    "counts": self.counts,
                    "polls": list(self.polls.values()),
                    "server_time_ms": self.server_time_ms,
                    "coalesced": self.coalesced,
                    "drained": self.drained,
                    "degrade_level": self.degrade_level,
                },
                separators=(",", ":"),
            )
        return self.text

    def private_copy(self) -> WireFrame:
        return WireFrame(
            self.stream_id,
            self.kind,
            self.epoch,
            self.seq,
            dict(self.counts),
            dict(self.polls),
            server_time_ms=self.server_time_ms,
            coalesced=self.coalesced,
            drained=self.drained,
            degrade_level=self.degrade_level,
            shared=False,
        )

    def absorb(self, later: WireFrame) -> None:
        """Merge ``later`` (a delta) into this private frame: what showing both in turn would show."""
        for emoji, n in later.counts.items():
            self.counts[emoji] = self.counts.get(emoji, 0) + n
        self.polls.update(later.polls)
        self.epoch, self.seq = later.epoch, later.seq
        self.server_time_ms = later.server_time_ms
        self.coalesced += later.coalesced
        self.drained = self.drained or later.drained
        self.degrade_level = later.degrade_level
        self.text = None


class SocketQueue:
    """The frames waiting for one socket: at most ``limit``; beyond it they coalesce (``coalesced`` counts merges)."""

    __slots__ = ("_closed", "_frames", "_wake", "coalesced", "limit", "stream_id")

    def __init__(self, stream_id: str, limit: int) -> None:
        self.stream_id = stream_id
        self.limit = limit
        self._frames: deque[WireFrame] = deque()
        self._wake = asyncio.Event()
        self._closed = False
        self.coalesced = 0

    @property
    def depth(self) -> int:
        return len(self._frames)

    def put(self, frame: WireFrame) -> None:
        if self._closed:
            return
        frames = self._frames
        if frame.kind == "snapshot" and frames:
            frames.clear()  # a snapshot replaces what is shown: nothing queued before it matters
        elif len(frames) >= self.limit:
            newest = frames[-1]
            if newest.shared:
                newest = newest.private_copy()
                frames[-1] = newest
            newest.absorb(frame)
            self.coalesced += 1
            return
        frames.append(frame)
        self._wake.set()

    def close(self) -> None:
        """End the queue: ``get`` returns what is queued, then None."""
        self._closed = True
        self._wake.set()

    async def get(self) -> str | None:
        """The next frame's JSON text; None once closed and empty."""
        while not self._frames:
            if self._closed:
                return None
            self._wake.clear()
            await self._wake.wait()
        return self._frames.popleft().encode()


@dataclass
class HubStats:
    upstreams_opened: int = 0
    upstream_reconnects: int = 0
    upstreams_released: int = 0
    frames_received: int = 0
    frames_queued: int = 0
    sockets_joined: int = 0
    coalesced_by_closed: int = 0


class Upstream:
    """One stream's Subscribe call and the sockets it feeds."""

    def __init__(self, hub: Hub, stream_id: str) -> None:
        self.hub = hub
        self.stream_id = stream_id
        self.sockets: set[SocketQueue] = set()
        self.shown: dict[str, int] = {}
        self.polls: dict[str, dict[str, Any]] = {}
        self.last: tuple[int, int] | None = None
        self.drained = False
        self.release: asyncio.TimerHandle | None = None
        self.task = asyncio.create_task(self._run(), name=f"gateway-upstream-{stream_id}")

    def snapshot(self) -> WireFrame | None:
        """What a socket joining now must show, or None before the first upstream frame."""
        if self.last is None:
            return None
        epoch, seq = self.last
        return WireFrame(
            self.stream_id, "snapshot", epoch, seq, dict(self.shown), dict(self.polls), drained=self.drained
        )

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
        for sock in self.sockets:
            sock.close()


class Hub:
    """Every upstream of one gateway. ``stub`` and ``metadata`` give the broadcaster stub and call metadata."""

    def __init__(
        self,
        config: GatewayConfig,
        stub: Callable[[], broadcast_pb2_grpc.BroadcastStub],
        metadata: Callable[[], tuple[tuple[str, str], ...]],
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.stub = stub
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
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await up.task
