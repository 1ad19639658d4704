"""Delivery of live comments to watching viewers: per-stream buffers, batched frames, sampling, resumes.

Every change to the node's CommentSet (local or from gossip) reaches ``changed``; each ``tick`` turns what
changed per stream into one CommentFrame:

- Arrival order: a stream's buffer keeps its last ``buffer_per_stream`` comments in the order they arrived at
  this node (comments from other regions arrive late and out of id order), so a resume sends exactly what
  arrived after the viewer's last seen id.
- Late joiner: the first frame holds the stream's last ``late_join`` comments and the pin. Resume
  (``after_id``): the first frame holds everything buffered after it, or, when the id is no longer buffered,
  the late-joiner snapshot with ``gap`` set. A frame a slow viewer's queue cannot take is dropped for that
  viewer and its next frame carries ``gap``. So a viewer never misses comments silently.
- Sampling: the non-priority comments of a tick pass through one token bucket per stream of
  ``sample_rate_per_s`` (burst: one second); beyond it a uniform random sample of the size the bucket allows
  is kept, in arrival order. Priority comments (hosts, moderators, verified viewers, the pinned comment)
  always pass. All viewers of a stream share the sampled frame, so a tick costs O(new comments) plus one
  queue put per viewer, whatever the rate.
- Shadow: a shadowed comment (muted viewer, blocklisted text) goes only to watchers whose viewer id is its
  author, in every frame and snapshot.
- Likes: when a comment's likes reach ``priority_likes`` it is framed again, in the priority lane, so every
  watcher gets it even if sampling left it out before (clients de-duplicate by id); once per comment per node.
- A resend accepted by two regions before they heard of each other is shown once everywhere (the smaller id);
  watchers that got the other copy get its id in ``deleted_ids`` when the smaller one arrives.
- Deletes and pin changes ride in the next frame of their stream (``tick_ms``, default 100 ms, after the
  tombstone reaches this node); deleted comments are left out of later snapshots and resumes.
"""

from __future__ import annotations

import asyncio
import bisect
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from reactmesh.merge.clock import Clock
from reactmesh.merge.comments import Change, Comment, CommentSet
from reactmesh.region_node.comments.config import CommentsConfig
from reactmesh.v1 import comments_pb2

QUEUE_FRAMES = 64
LAG_BUCKETS_MS = (25, 50, 100, 250, 500, 1000, 2000, 5000)
"""Upper bounds of the delivery-lag histogram (ms); a last bucket counts the rest."""


def to_proto(c: Comment, likes: int = 0) -> comments_pb2.Comment:
    return comments_pb2.Comment(
        likes=likes,
        comment_id=c.comment_id,
        stream_id=c.stream_id,
        viewer_id=c.viewer_id,
        text=c.text,
        reply_to=c.reply_to,
        created_at_ms=c.created_at_ms,
        priority=c.priority,
    )


@dataclass
class Watcher:
    """One WatchComments call: its viewer and the frames waiting for it."""

    stream_id: str
    viewer_id: str
    queue: asyncio.Queue[comments_pb2.CommentFrame] = field(default_factory=lambda: asyncio.Queue(QUEUE_FRAMES))
    gap: bool = False


@dataclass
class _Stream:
    buffer: deque[Comment]
    watchers: set[int] = field(default_factory=set)
    new: list[Comment] = field(default_factory=list)
    promoted: set[str] = field(default_factory=set)
    deleted: list[str] = field(default_factory=list)
    pin_changed: bool = False
    tokens: float = 0.0
    refilled: float = 0.0


@dataclass(frozen=True)
class HubStatistics:
    """Counters of one CommentHub since start."""

    streams: int
    watchers: int
    frames: int
    delivered: int
    priority: int
    sampled_out: int
    dropped_frames: int
    # Delivery lag (frame built - comment id's wall time), ms: count, sum, max, and counts per LAG_BUCKETS_MS
    # bucket (not cumulative; the last entry counts lags above the last bound).
    lag_count: int
    lag_sum_ms: int
    lag_max_ms: int
    lag_buckets: tuple[int, ...]


class CommentHub:
    """Buffers and frames the comments of every stream for the node's watchers."""

    def __init__(
        self, comments: CommentSet, clock: Clock, config: CommentsConfig, rng: random.Random | None = None
    ) -> None:
        self._set = comments
        self._clock = clock
        self.config = config
        self._rng = rng or random.Random()
        self._streams: dict[str, _Stream] = {}
        self._watchers: dict[int, Watcher] = {}
        self._frames = self._delivered = self._priority = self._sampled_out = self._dropped = 0
        self._lag_count = self._lag_sum = self._lag_max = 0
        self._lag_buckets = [0] * (len(LAG_BUCKETS_MS) + 1)
        self.lag_observer: list[int] | None = None  # when set, every delivery lag (ms) is appended (benchmarks)

    def _proto(self, c: Comment) -> comments_pb2.Comment:
        return to_proto(c, self._set.likes(c.comment_id))

    def _stream(self, stream_id: str) -> _Stream:
        s = self._streams.get(stream_id)
        if s is None:
            now = self._clock.monotonic()
            s = _Stream(deque(maxlen=self.config.buffer_per_stream), tokens=self.config.sample_rate_per_s, refilled=now)
            self._streams[stream_id] = s
        return s

    # -- changes -----------------------------------------------------------------------------

    def changed(self, changes: Iterable[Change]) -> None:
        """Note what a CommentSet merge changed (its return value)."""
        cs = self._set
        for kind, key in changes:
            if kind == "comment":
                c = cs.get(key)
                if c is not None and cs.visible(key):
                    s = self._stream(c.stream_id)
                    s.buffer.append(c)
                    s.new.append(c)
                    if c.resend_key is not None:  # an earlier copy of a resend took another region: retract ours
                        s.deleted.extend(other for other in cs.copies(c.resend_key) if other != key)
            elif kind == "like":
                c = cs.get(key)
                if c is not None and cs.visible(key) and cs.likes(key) >= self.config.priority_likes:
                    s = self._stream(c.stream_id)
                    if key not in s.promoted:
                        s.promoted.add(key)
                        s.new.append(c)
            elif kind == "delete":
                c = cs.get(key)
                if c is not None:
                    s = self._stream(c.stream_id)
                    s.deleted.append(key)
                    pin = cs.pin(c.stream_id)
                    if pin is not None and pin.comment_id == key:  # a deleted pinned comment is no longer pinned
                        s.pin_changed = True
            else:
                self._stream(key).pin_changed = True

    def deleted(self, stream_id: str, cid: str) -> None:
        """Tell the stream's watchers that ``cid`` (a comment no longer in memory: a late delete) is deleted."""
        s = self._streams.get(stream_id)
        if s is not None:
            s.deleted.append(cid)

    def seed(self) -> None:
        """Buffer the comments the set already holds (loaded from the comment file), oldest id first."""
        cs = self._set
        for cid in sorted(cs):
            c = cs.get(cid)
            if c is not None and cs.visible(cid):
                self._stream(c.stream_id).buffer.append(c)

    # -- watching ----------------------------------------------------------------------------

    def watch(self, stream_id: str, viewer_id: str, after_id: str = "") -> Watcher:
        """Register a watcher; its queue starts with the late-joiner or resume frame."""
        s = self._stream(stream_id)
        self._step(stream_id, s)  # what is pending goes to the current watchers; the snapshot covers it here
        w = Watcher(stream_id, viewer_id)
        buffered = [c for c in s.buffer if self._set.visible(c.comment_id)]
        start = None
        if after_id:
            for i, c in enumerate(buffered):
                if c.comment_id == after_id:
                    start = i + 1
                    break
        if start is not None:
            chosen, gap = buffered[start:], False
        else:
            chosen, gap = buffered, bool(after_id)
        chosen = [c for c in chosen if not c.shadow or c.viewer_id == viewer_id]
        if start is None:
            chosen = chosen[-self.config.late_join :]
        frame = comments_pb2.CommentFrame(stream_id=stream_id, gap=gap, comments=[self._proto(c) for c in chosen])
        self._add_pin(frame, stream_id)
        w.queue.put_nowait(frame)
        key = id(w)
        self._watchers[key] = w
        s.watchers.add(key)
        return w

    def unwatch(self, w: Watcher) -> None:
        key = id(w)
        self._watchers.pop(key, None)
        s = self._streams.get(w.stream_id)
        if s is not None:
            s.watchers.discard(key)

    def _add_pin(self, frame: comments_pb2.CommentFrame, stream_id: str) -> None:
        pin = self._set.pin(stream_id)
        if pin is None:
            return
        frame.pinned.SetInParent()
        c = self._set.get(pin.comment_id) if pin.comment_id else None
        if c is not None and self._set.visible(pin.comment_id) and not c.shadow:
            frame.pinned.comment_id = pin.comment_id
            frame.pinned.comment.CopyFrom(self._proto(c))
        elif pin.comment_id and not self._set.deleted(pin.comment_id):
            frame.pinned.comment_id = pin.comment_id  # pinned elsewhere; the comment has not reached this node

    # -- framing -----------------------------------------------------------------------------

    def tick(self) -> int:
        """Build and queue this tick's frames; return how many frames were queued."""
        queued = sum(self._step(stream_id, s) for stream_id, s in self._streams.items())
        floor = self._set.floor_id
        idle = [
            sid
            for sid, s in self._streams.items()
            if not s.watchers and (not s.buffer or s.buffer[-1].comment_id < floor)
        ]
        for sid in idle:  # streams nobody watches whose comments all left the hot window: memory follows activity
            del self._streams[sid]
        return queued

    def _step(self, stream_id: str, s: _Stream) -> int:
        """Frame what changed on one stream since its last step; return the frames queued."""
        queued = 0
        now_ms = self._clock.wall_ms()
        now = self._clock.monotonic()
        rate = self.config.sample_rate_per_s
        s.tokens = min(rate, s.tokens + (now - s.refilled) * rate)
        s.refilled = now
        if not (s.new or s.deleted or s.pin_changed):
            return 0
        new, s.new = [c for c in s.new if self._set.visible(c.comment_id)], []
        deleted, s.deleted = s.deleted, []
        pin_changed, s.pin_changed = s.pin_changed, False
        if not s.watchers:
            return 0
        pin = self._set.pin(stream_id)
        pinned = pin.comment_id if pin is not None else ""
        # Shadowed comments go to their author only and never take a sampling slot from the others.
        lane = [c.shadow or c.priority or c.comment_id == pinned or c.comment_id in s.promoted for c in new]
        open_idx = [i for i, p in enumerate(lane) if not p]
        keep = int(s.tokens)
        if len(open_idx) > keep:
            chosen = set(self._rng.sample(open_idx, keep))
            sampled_out = len(open_idx) - keep
        else:
            chosen = set(open_idx)
            sampled_out = 0
        s.tokens -= len(chosen)
        passed = [c for i, c in enumerate(new) if lane[i] or i in chosen]
        public = [c for c in passed if not c.shadow]
        shadowed = [c for c in passed if c.shadow]
        frame = comments_pb2.CommentFrame(
            stream_id=stream_id,
            comments=[self._proto(c) for c in public],
            deleted_ids=deleted,
            sampled_out=sampled_out,
        )
        if pin_changed:
            self._add_pin(frame, stream_id)
        if not frame.comments and not deleted and not pin_changed and not shadowed:
            self._sampled_out += sampled_out
            return 0
        self._frames += 1
        self._priority += sum(1 for i, c in enumerate(new) if lane[i] and not c.shadow)
        self._sampled_out += sampled_out
        for c in passed:
            lag = max(0, now_ms - c.created_at_ms)
            self._lag_count += 1
            self._lag_sum += lag
            self._lag_max = max(self._lag_max, lag)
            self._lag_buckets[bisect.bisect_left(LAG_BUCKETS_MS, lag)] += 1
            if self.lag_observer is not None:
                self.lag_observer.append(lag)
        for key in s.watchers:
            w = self._watchers[key]
            out = frame
            own = any(c.viewer_id == w.viewer_id for c in shadowed)
            if own or w.gap:
                out = comments_pb2.CommentFrame()
                out.CopyFrom(frame)
                if own:
                    del out.comments[:]
                    out.comments.extend(self._proto(c) for c in passed if not c.shadow or c.viewer_id == w.viewer_id)
                out.gap = w.gap
            if not out.comments and not deleted and not pin_changed:
                continue
            try:
                w.queue.put_nowait(out)
            except asyncio.QueueFull:
                self._dropped += 1
                w.gap = True
                continue
            w.gap = False
            self._delivered += len(out.comments)
            queued += 1
        return queued

    async def run(self) -> None:
        """Tick every ``tick_ms`` until cancelled."""
        period = self.config.tick_ms / 1000
        while True:
            await self._clock.sleep(period)
            self.tick()

    def statistics(self) -> HubStatistics:
        return HubStatistics(
            streams=len(self._streams),
            watchers=len(self._watchers),
            frames=self._frames,
            delivered=self._delivered,
            priority=self._priority,
            sampled_out=self._sampled_out,
            dropped_frames=self._dropped,
            lag_count=self._lag_count,
            lag_sum_ms=self._lag_sum,
            lag_max_ms=self._lag_max,
            lag_buckets=tuple(self._lag_buckets),
        )
