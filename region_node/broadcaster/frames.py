"""Frames on their way to subscribers: per-stream channels, resume buffers and bounded subscriber queues.

- A ``Frame`` caches its serialization (``data``), so a frame shared by many subscribers is serialized once. A
  shared frame is never mutated; a queue copies it before coalescing into it.
- A ``Subscription``'s queue is bounded: a frame that does not fit is merged into the newest queued one (counts
  summed, the later seq, ``coalesced`` added, the newest state per poll). Summing deltas is lossless, so a slow
  subscriber gets fewer, bigger frames, never wrong counts.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Protocol

from reactmesh.region_node.broadcaster.config import BroadcasterConfig
from reactmesh.region_node.broadcaster.smoother import Smoother
from reactmesh.v1 import broadcast_pb2, polls_pb2


class FrameOwner(Protocol):
    """What a subscription needs of its broadcaster."""

    queue_high_water: int
    """Deepest subscriber queue ever seen; raised by subscriptions as they grow."""

    def encode(self, stream_id: str, frame: Frame) -> bytes:
        """The frame's serialized ``reactmesh.v1.Frame`` (cached on the frame)."""
        ...

    def detach(self, sub: Subscription) -> None:
        """Forget a closed subscription."""
        ...


class Frame:
    """A frame in a resume buffer or a subscriber queue; ``data`` caches its serialization."""

    __slots__ = (
        "coalesced",
        "counts",
        "data",
        "degraded",
        "drained",
        "kind",
        "polls",
        "seq",
        "server_time_ms",
        "shared",
    )

    def __init__(
        self,
        kind: broadcast_pb2.Frame.Kind,
        seq: int,
        counts: dict[str, int],
        server_time_ms: int,
        drained: bool,
        shared: bool,
        polls: dict[str, polls_pb2.Poll] | None = None,
        degraded: int = 0,
    ) -> None:
        self.kind = kind
        # The broadcaster's degrade level when the frame was made (Frame.degrade_level).
        self.degraded = degraded
        self.seq = seq
        self.counts = counts
        # poll id -> state; Poll messages are shared and never mutated.
        self.polls = polls if polls is not None else {}
        self.server_time_ms = server_time_ms
        self.coalesced = 1
        self.drained = drained
        # A shared frame is never mutated; a queue copies it before coalescing into it.
        self.shared = shared
        self.data: bytes | None = None

    def private_copy(self) -> Frame:
        out = Frame(
            self.kind,
            self.seq,
            dict(self.counts),
            self.server_time_ms,
            self.drained,
            shared=False,
            polls=dict(self.polls),
            degraded=self.degraded,
        )
        out.coalesced = self.coalesced
        return out

    def absorb(self, later: Frame) -> None:
        counts = self.counts
        for emoji, n in later.counts.items():
            counts[emoji] = counts.get(emoji, 0) + n
        if later.polls:
            self.polls.update(later.polls)
        self.seq = later.seq
        self.server_time_ms = later.server_time_ms
        self.coalesced += later.coalesced
        self.drained = self.drained or later.drained
        self.degraded = later.degraded  # the newest level
        self.data = None


class Channel:
    """One stream: true totals seen, its smoother, frame sequence, resume buffer, subscribers."""

    __slots__ = (
        "buffer",
        "deferred",
        "drain_marker",
        "drained_at_ms",
        "known",
        "last_step",
        "last_step_eager",
        "polls_dirty",
        "polls_shown",
        "seq",
        "smoother",
        "snapshot",
        "stream_id",
        "subscribers",
    )

    def __init__(self, stream_id: str, config: BroadcasterConfig) -> None:
        self.stream_id = stream_id
        self.known: dict[str, int] = {}
        self.smoother = Smoother(config.smoothing)
        self.seq = 0
        self.buffer: deque[Frame] = deque(maxlen=config.buffer_frames)
        self.subscribers: set[Subscription] = set()
        self.drained_at_ms: int | None = None
        # A drained frame is owed even if nothing is pending.
        self.drain_marker = False
        self.snapshot: Frame | None = None
        # Poll ids changed since the last frame, and each poll's state as last shown.
        self.polls_dirty: set[str] = set()
        self.polls_shown: dict[str, polls_pb2.Poll] = {}
        # Monotonic time of the smoother's last step, whether a tick took it, and whether the stream waits in the
        # broadcaster's due list or deferred heap (so it is queued there at most once).
        self.last_step = float("-inf")
        self.last_step_eager = False
        self.deferred = False


class Subscription:
    """One subscriber's bounded frame queue; iterate it for serialized ``Frame`` bytes.

    Iteration ends when the subscription or the broadcaster is closed.
    """

    __slots__ = ("_channel", "_closed", "_limit", "_owner", "_queue", "_wakeup")

    def __init__(self, owner: FrameOwner, channel: Channel, limit: int) -> None:
        self._owner = owner
        self._channel = channel
        self._limit = limit
        self._queue: deque[Frame] = deque()
        self._wakeup = asyncio.Event()
        self._closed = False

    @property
    def stream_id(self) -> str:
        return self._channel.stream_id

    @property
    def depth(self) -> int:
        """Frames waiting to be read."""
        return len(self._queue)

    @property
    def closed(self) -> bool:
        return self._closed

    def _push(self, frame: Frame) -> bool:
        """Queue ``frame``; True if it had to be coalesced into the newest queued frame."""
        queue = self._queue
        depth = len(queue)
        if depth < self._limit:
            queue.append(frame)
            if not depth:
                # A reader waits only on an empty queue.
                self._wakeup.set()
            owner = self._owner
            if depth >= owner.queue_high_water:
                owner.queue_high_water = depth + 1
            return False
        newest = queue[-1]
        if newest.shared:
            newest = queue[-1] = newest.private_copy()
        newest.absorb(frame)
        return True

    def get_nowait(self) -> bytes | None:
        """The next serialized frame, or None if none is queued."""
        if not self._queue:
            return None
        frame = self._queue.popleft()
        return self._owner.encode(self._channel.stream_id, frame)

    async def get(self) -> bytes | None:
        """The next serialized frame, waiting for one; None once closed."""
        while not self._queue:
            if self._closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        return self.get_nowait()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        while (data := await self.get()) is not None:
            yield data

    def close(self) -> None:
        """Stop receiving frames; queued frames are dropped. Idempotent."""
        self._closed = True
        self._queue.clear()
        self._owner.detach(self)
        self._wakeup.set()

    def _end(self) -> None:
        """Closed by the broadcaster: frames already queued are still delivered."""
        self._closed = True
        self._wakeup.set()
