"""What a gateway socket is sent: frames as JSON made once and shared, and the bounded queue of one socket.

- ``WireFrame``: a reaction/poll frame (type "frame"); ``CommentWire``: a comment frame (type "comments"). Each
  caches its JSON text, made on first use and shared by every socket's queue; a shared frame is never mutated.
- ``SocketQueue``: two lanes (reaction frames, comment frames), each bounded by ``queue_frames``. A frame that
  does not fit is merged into its lane's newest (reactions: counts summed, the later seq, ``coalesced`` added, the
  newest state per poll; comments: appended, at most ``MERGED_COMMENTS``, older ones dropped with ``gap`` set,
  deletes and the newest pin kept); a snapshot replaces its lane. ``get`` returns frames in arrival order. So a
  slow socket gets fewer, bigger frames and never wrong counts, and a chat burst never merges into reactions.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any

from reactmesh.region_node.gateway.wire import FRAME_KIND, comment_json, counts_json, pinned_json, poll_json
from reactmesh.v1 import broadcast_pb2, comments_pb2

MERGED_COMMENTS = 200
"""At most this many comments in one merged comment frame of a slow socket; older ones are dropped, ``gap`` set."""


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


class CommentWire:
    """A comment frame as sockets receive it (type "comments"); ``text`` caches its JSON. Shared ones are never
    mutated. ``pinned`` is meaningful only when ``pin_changed`` (None: unpinned)."""

    __slots__ = ("comments", "deleted", "gap", "pin_changed", "pinned", "sampled_out", "shared", "snapshot", "text")

    def __init__(
        self,
        comments: list[dict[str, Any]],
        *,
        deleted: list[str] | None = None,
        pinned: dict[str, Any] | None = None,
        pin_changed: bool = False,
        gap: bool = False,
        sampled_out: int = 0,
        snapshot: bool = False,
        shared: bool = True,
    ) -> None:
        self.comments = comments
        self.deleted = deleted or []
        self.pinned = pinned
        self.pin_changed = pin_changed
        self.gap = gap
        self.sampled_out = sampled_out
        self.snapshot = snapshot
        self.shared = shared
        self.text: str | None = None

    @classmethod
    def from_proto(cls, frame: comments_pb2.CommentFrame, snapshot: bool) -> CommentWire:
        changed = frame.HasField("pinned")
        return cls(
            [comment_json(c) for c in frame.comments],
            deleted=list(frame.deleted_ids),
            pinned=pinned_json(frame.pinned) if changed else None,
            pin_changed=changed,
            gap=frame.gap,
            sampled_out=frame.sampled_out,
            snapshot=snapshot,
        )

    def encode(self, stream_id: str) -> str:
        if self.text is None:
            body: dict[str, Any] = {
                "type": "comments",
                "stream_id": stream_id,
                "snapshot": self.snapshot,
                "comments": self.comments,
                "deleted_ids": self.deleted,
                "gap": self.gap,
                "sampled_out": self.sampled_out,
            }
            if self.pin_changed:
                body["pinned"] = self.pinned
            self.text = json.dumps(body, separators=(",", ":"))
        return self.text

    def private_copy(self) -> CommentWire:
        return CommentWire(
            list(self.comments),
            deleted=list(self.deleted),
            pinned=self.pinned,
            pin_changed=self.pin_changed,
            gap=self.gap,
            sampled_out=self.sampled_out,
            snapshot=self.snapshot,
            shared=False,
        )

    def absorb(self, later: CommentWire) -> None:
        """Merge ``later`` into this private frame: what showing both in turn would show, within MERGED_COMMENTS."""
        if later.deleted:
            gone = set(later.deleted)
            self.comments = [c for c in self.comments if c["comment_id"] not in gone]
            self.deleted.extend(later.deleted)
        self.comments.extend(later.comments)
        if len(self.comments) > MERGED_COMMENTS:
            del self.comments[: len(self.comments) - MERGED_COMMENTS]
            self.gap = True
        if later.pin_changed:
            self.pinned, self.pin_changed = later.pinned, True
        self.gap = self.gap or later.gap
        self.sampled_out += later.sampled_out
        self.text = None


class SocketQueue:
    """The frames waiting for one socket, in two lanes (reaction frames, comment frames) of at most ``limit``
    each; beyond it a lane's frames coalesce into its newest (``coalesced`` counts merges). ``get`` returns them
    in arrival order."""

    __slots__ = ("_closed", "_comments", "_frames", "_n", "_wake", "coalesced", "limit", "stream_id")

    def __init__(self, stream_id: str, limit: int) -> None:
        self.stream_id = stream_id
        self.limit = limit
        self._frames: deque[tuple[int, WireFrame]] = deque()
        self._comments: deque[tuple[int, CommentWire]] = deque()
        self._n = 0
        self._wake = asyncio.Event()
        self._closed = False
        self.coalesced = 0

    @property
    def depth(self) -> int:
        return len(self._frames) + len(self._comments)

    def put(self, frame: WireFrame) -> None:
        if self._closed:
            return
        frames = self._frames
        if frame.kind == "snapshot" and frames:
            frames.clear()  # a snapshot replaces what is shown: nothing queued before it matters
        elif len(frames) >= self.limit:
            n, newest = frames[-1]
            if newest.shared:
                newest = newest.private_copy()
                frames[-1] = (n, newest)
            newest.absorb(frame)
            self.coalesced += 1
            return
        self._n += 1
        frames.append((self._n, frame))
        self._wake.set()

    def put_comments(self, frame: CommentWire) -> None:
        if self._closed:
            return
        lane = self._comments
        if frame.snapshot and lane:
            lane.clear()
        elif len(lane) >= self.limit:
            n, newest = lane[-1]
            if newest.shared:
                newest = newest.private_copy()
                lane[-1] = (n, newest)
            newest.absorb(frame)
            self.coalesced += 1
            return
        self._n += 1
        lane.append((self._n, frame))
        self._wake.set()

    def close(self) -> None:
        """End the queue: ``get`` returns what is queued, then None."""
        self._closed = True
        self._wake.set()

    async def get(self) -> str | None:
        """The next frame's JSON text; None once closed and empty."""
        while not self._frames and not self._comments:
            if self._closed:
                return None
            self._wake.clear()
            await self._wake.wait()
        if self._comments and (not self._frames or self._comments[0][0] < self._frames[0][0]):
            return self._comments.popleft()[1].encode(self.stream_id)
        return self._frames.popleft()[1].encode()
