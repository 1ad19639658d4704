"""The broadcaster: smoothed, capped count frames to viewers over ``Broadcast.Subscribe``.

It listens to a ``ReplicaState``: when the ``totals`` of (stream, emoji) grow, the growth is the
true delta, handed to that stream's ``Smoother``. Each smoother step makes at most one DELTA frame
(seq 1, 2, 3... per stream within this process's random ``epoch``); the last ``buffer_frames``
frames of each stream are kept for resumes, and each frame is fanned out to the stream's subscribers.

Frames follow commits (``eager_frames``, the default): a stream whose totals grow is stepped on the
next event-loop turn if its last step was at least ``tick_ms`` ago, else as soon as ``tick_ms`` has
passed since that step (a heap of such deadlines, one entry per waiting stream), instead of waiting
for the next fixed tick. The fixed tick steps every other active stream (smoothing tails, polls,
drains) as before, skipping one stepped outside the ticks less than ``tick_ms`` ago (it is
deferred to its own deadline). So a stream is stepped, hence framed, at most once per ``tick_ms``
(to 1 µs, for float rounding; ticks themselves may run late and are not made up), and the work
stays one step per active stream per interval. A stream stepped outside the ticks keeps being
stepped every ``tick_ms`` on its own phase while its smoother holds counts.

Guarantees:

- What a subscriber displays (its SNAPSHOT plus the DELTAs after it) equals the *shown* totals,
  true totals minus what the smoother still holds; it never exceeds the true total, and it reaches
  the true total within ``smoothing.drain_ticks`` unlimited steps (one per ``tick_ms``) after taps stop.
- A new subscriber gets a SNAPSHOT of the shown totals, then live DELTAs. A reconnecting one whose
  ``resume`` names this epoch and a seq still buffered gets exactly the frames after it, else a
  SNAPSHOT. Attaching is synchronous, so no frame falls between the snapshot and the live stream.
- Slow subscribers never hold the tick back: each has a bounded queue, and a frame that does not
  fit is merged into the newest queued one (counts summed, the later seq, ``coalesced`` added).
  Summing deltas is lossless, so a subscriber that catches up displays exactly the right totals.
- Each frame is serialized at most once, however many subscribers receive it (and not at all if
  none does): subscribers share one ``bytes`` object, sent through an identity serializer. Only a
  coalesced frame is serialized again, once, when it leaves its queue. SNAPSHOTs are cached per
  (stream, seq), so a herd of joiners costs one serialization.
- Overload: a tick slower than ``tick_budget_ms``, or more than ``degrade_subscribers``
  subscribers, raises the degrade level by one (at most 2); ``recover_ticks`` calm ticks in a row
  lower it by one. A tick's time includes the frame work done following commits since the previous
  tick. Level 1 sends only the ``degrade_top_k`` busiest emojis per frame (the rest
  stay pending, still counted); level 2 also emits frames on every other tick only, and none
  between ticks. Every frame carries the
  level (``Frame.degrade_level``), so clients can fall back to static hearts while it is above 0.
- Ended streams give memory back: a stream with no subscribers and no frame for ``idle_stream_s`` drops its
  resume buffer and cached snapshot (found in O(idle streams) from a last-activity order, once a second); a
  later resume of it gets a SNAPSHOT. With a totals loader (``set_totals_loader``, a node with a history store)
  the stream then leaves memory whole, its totals too, and is loaded back when it returns
  (region_node.broadcaster.cold); without one it keeps its counters and its place in the replicated totals.
- ``drain(stream)`` makes the next frame release everything pending; from then on the stream's
  frames (and snapshots) carry ``drained``, and late deltas are released unsmoothed.
- Polls: a poll source (``set_poll_source``, the node's ``region_node.polls.book.PollBook``) says which
  polls changed (``polls_changed``); the next frame of their stream carries their current state,
  rendered once per tick however many votes arrived, and only if it differs from what was last
  shown. Poll messages replace what a viewer displays, so a coalesced frame keeps the newest state
  per poll id, and a SNAPSHOT carries every poll of the stream as of its seq (what frames up to
  that seq showed).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Protocol

from reactmesh.edge.errors import invalid_argument, resource_exhausted, unavailable
from reactmesh.edge.limits import STREAM_ID_FORM, is_stream_id
from reactmesh.merge.clock import Clock
from reactmesh.merge.keyed import Key, KeyedGCounter
from reactmesh.region_node.broadcaster.cold import ColdStreams, TotalsLoader
from reactmesh.region_node.broadcaster.config import BroadcasterConfig
from reactmesh.region_node.broadcaster.frames import Channel, Frame, Subscription
from reactmesh.region_node.state import TOTALS, RegionState
from reactmesh.v1 import broadcast_pb2, common_pb2, polls_pb2

_SNAPSHOT = broadcast_pb2.Frame.SNAPSHOT
_DELTA = broadcast_pb2.Frame.DELTA
# Slack of the once-per-tick_ms comparison, for float rounding of clock sums.
_EPS = 1e-6


def check_stream_id(stream_id: str) -> None:
    """Raise INVALID_ARGUMENT unless ``stream_id`` has the STREAM_ID_FORM."""
    if not is_stream_id(stream_id):
        raise invalid_argument(f"stream_id must be {STREAM_ID_FORM}, got {stream_id[:140]!r}")


@dataclass(frozen=True)
class BroadcasterStatistics:
    """A snapshot of the broadcaster's counters."""

    streams: int
    subscribers: int
    ticks: int
    ticks_skipped: int
    degrade_level: int
    frames_emitted: int
    frames_sent: int
    frames_coalesced: int
    frames_serialized: int
    snapshots_sent: int
    resumes_replayed: int
    # Deepest subscriber queue now, and the deepest ever.
    queue_depth_max: int
    queue_depth_high_water: int
    # Streams that gave back their resume buffer after idle_stream_s without frames or subscribers.
    streams_idled: int = 0
    # Streams that left memory whole (their totals too), and loads of stored totals for streams that came back.
    streams_evicted: int = 0
    cold_loads: int = 0
    # Frames emitted following commits, between the fixed ticks (included in frames_emitted).
    frames_between_ticks: int = 0


class BroadcastHooks:
    """Event hooks for the metrics layer, called synchronously inside ``tick()``; override what you need."""

    def on_tick(self, frames: int, coalesced: int, seconds: float) -> None:
        """After every tick: frames emitted, frames merged into subscriber queues, and the seconds of frame work,
        each counting the tick and what followed commits since the previous tick."""

    def on_frame(self, stream_id: str, counts: Mapping[str, int], server_time_ms: int) -> None:
        """For every frame emitted: the emojis it covers (for tap -> frame lag) and its timestamp."""


class PollSource(Protocol):
    """What the broadcaster needs of the node's polls."""

    def render(self, poll_id: str) -> polls_pb2.Poll | None:
        """The poll's current state, or None if it is unknown; the message is never mutated afterwards."""
        ...


class Broadcaster:
    """Turns true deltas of a ReplicaState into smoothed frames for subscribers."""

    def __init__(
        self,
        config: BroadcasterConfig,
        clock: Clock,
        state: RegionState,
        *,
        hooks: BroadcastHooks | None = None,
        epoch: int | None = None,
    ) -> None:
        self.config = config
        self.epoch = epoch if epoch is not None else secrets.randbits(63) + 1
        self._clock = clock
        self._state = state
        self._hooks = hooks or BroadcastHooks()
        self._channels: dict[str, Channel] = {}
        # Streams whose smoother is active or that owe a drained frame: the only ones a tick visits.
        self._active: set[str] = set()
        self._subscribers = 0
        self._closed = False
        self._stop = asyncio.Event()
        self._level = 0
        self._calm = 0
        self._ticks = 0
        self._ticks_skipped = 0
        self._frames_emitted = 0
        self._frames_sent = 0
        self._frames_coalesced = 0
        self._frames_serialized = 0
        self._snapshots_sent = 0
        self._resumes_replayed = 0
        self.queue_high_water = 0
        self._poll_source: PollSource | None = None
        # stream -> wall ms of its last frame or subscriber, least recent first: idle streams are found in O(idle).
        self._last_active: dict[str, int] = {}
        self._next_idle_sweep = 0.0
        self._streams_idled = 0
        self._streams_evicted = 0
        self._cold: ColdStreams | None = None
        self._drain_lookup: Callable[[str], int | None] | None = None
        self._evict_listeners: list[Callable[[set[str]], object]] = []
        self._period = config.tick_ms / 1000
        # Frames following commits: streams to step on the next loop turn, and (deadline, n, stream) of those
        # stepped less than tick_ms ago. ``_waker``, while run() sleeps, tells it to look at both.
        self._due: list[str] = []
        self._deferred: list[tuple[float, int, str]] = []
        self._defer_ids = itertools.count()
        self._waker: asyncio.Future[None] | None = None
        # Ticks plus flushes that framed something: no stream's seq exceeds it.
        self._rounds = 0
        self._between_frames = 0
        self._between_coalesced = 0
        self._between_seconds = 0.0
        self._frames_between_ticks = 0
        # What already merged counts as shown: it is in every snapshot from the start.
        for key, value in state.totals.items():
            parts = _split(key)
            if parts is not None:
                self._channel(parts[0]).known[parts[1]] = value
        state.add_listener(self._on_merge)

    # -- input -------------------------------------------------------------------------------

    def _on_merge(self, collection: str, totals: KeyedGCounter, grown: list[Key]) -> None:
        if collection != TOTALS:
            return
        now = self._clock.monotonic()
        for key in grown:
            parts = _split(key)
            if parts is None:
                continue
            stream_id, emoji = parts
            value = totals.value(key)
            channel = self._channels.get(stream_id)
            if channel is None:
                channel = self._channel(stream_id)
                if self._cold is not None:
                    self._cold.start(stream_id)  # new here, or back after eviction: load what was stored
            if self._cold is not None and self._cold.loading(stream_id):
                channel.known[emoji] = max(channel.known.get(emoji, 0), value)  # taken as shown, not smoothed
                continue
            before = channel.known.get(emoji, 0)
            if value > before:
                channel.known[emoji] = value
                channel.smoother.add(emoji, value - before)
                self._active.add(stream_id)
                if not channel.deferred:
                    self._follow(channel, now)

    def _follow(self, channel: Channel, now: float) -> None:
        """Queue a stream whose totals grew for a step outside the ticks: next loop turn, or at its deadline."""
        if not self.config.eager_frames or self._level >= 2:
            return
        channel.deferred = True
        at = channel.last_step + self._period
        if now >= at - _EPS:
            self._due.append(channel.stream_id)
        else:
            heapq.heappush(self._deferred, (at, next(self._defer_ids), channel.stream_id))
        waker = self._waker
        if waker is not None and not waker.done():
            waker.set_result(None)

    def set_totals_loader(self, loader: TotalsLoader) -> None:
        """Let idle streams leave memory whole; ``loader`` brings their stored totals back (see module docstring)."""
        self._cold = ColdStreams(self._state, loader)

    def set_drain_lookup(self, lookup: Callable[[str], int | None]) -> None:
        """Where drains are kept (the node's moderation: when the stream's drain took effect, or None): a drained
        stream may then leave memory like any idle stream once its drained frame is out, and comes back drained."""
        self._drain_lookup = lookup

    def add_evict_listener(self, listener: Callable[[set[str]], object]) -> None:
        """Called with the stream ids that left memory, after their totals left the replica."""
        self._evict_listeners.append(listener)

    async def warm(self, stream_id: str) -> None:
        """Make sure a stream that left memory (or was never here) has its stored totals loaded; subscribe after."""
        cold = self._cold
        if cold is None or (stream_id in self._channels and not cold.loading(stream_id)):
            return
        self._channel(stream_id)
        await asyncio.shield(cold.start(stream_id))

    def set_poll_source(self, source: PollSource) -> None:
        """Where ``polls_changed`` polls are rendered from."""
        self._poll_source = source

    def polls_changed(self, stream_id: str, poll_ids: Iterable[str]) -> None:
        """Polls of ``stream_id`` changed: the stream's next frame carries their new state."""
        channel = self._channels.get(stream_id) or self._channel(stream_id)
        channel.polls_dirty.update(poll_ids)
        self._active.add(stream_id)

    def _channel(self, stream_id: str) -> Channel:
        channel = self._channels.get(stream_id)
        if channel is None:
            channel = self._channels[stream_id] = Channel(stream_id, self.config)
            if self._drain_lookup is not None:
                channel.drained_at_ms = self._drain_lookup(stream_id)  # back after eviction: still drained
            if self._cold is not None:
                self._touch(stream_id, self._clock.wall_ms())  # so an unwatched, silent stream is evicted too
                # Above any seq an evicted channel of this stream issued (at most one frame per tick or flush), so a
                # resume from before the eviction gets a SNAPSHOT, never a wrong "nothing missed".
                channel.seq = self._rounds + 1
        return channel

    # -- ticks -------------------------------------------------------------------------------

    @property
    def degrade_level(self) -> int:
        """0 normal, 1 top-K emojis per frame, 2 top-K and every other tick."""
        return self._level

    def tick(self) -> int:
        """Emit this tick's frames; return how many. ``run()`` calls it every ``tick_ms``."""
        started = self._clock.monotonic()
        self._ticks += 1
        self._rounds += 1
        skipped = self._level >= 2 and self._ticks % 2 == 0
        frames = coalesced = 0
        if skipped:
            self._ticks_skipped += 1
        else:
            frames, coalesced = self._emit(started)
        if started >= self._next_idle_sweep:
            self._next_idle_sweep = started + 1.0
            self._release_idle()
        seconds = self._clock.monotonic() - started + self._between_seconds
        self._adapt(seconds)
        self._hooks.on_tick(frames + self._between_frames, coalesced + self._between_coalesced, seconds)
        self._between_frames = self._between_coalesced = 0
        self._between_seconds = 0.0
        return frames

    def _emit(self, started: float) -> tuple[int, int]:
        now = self._clock.wall_ms()
        limit = self.config.degrade_top_k if self._level >= 1 else None
        frames = coalesced = 0
        for stream_id in list(self._active):
            channel = self._channels[stream_id]
            if channel.last_step_eager and started < channel.last_step + self._period - _EPS:
                # Stepped following a commit less than tick_ms ago: at its own deadline (or the next tick at level 2).
                if not channel.deferred and self._level < 2:
                    channel.deferred = True
                    heapq.heappush(self._deferred, (channel.last_step + self._period, next(self._defer_ids), stream_id))
                continue
            framed, n = self._step(stream_id, channel, limit, now, started, eager=False)
            frames += framed
            coalesced += n
        self._frames_emitted += frames
        self._frames_coalesced += coalesced
        return frames, coalesced

    def flush(self) -> int:
        """Step the streams that growing totals made due (see the module docstring); return the frames emitted.

        ``run()`` calls it whenever it wakes; a stream stepped less than ``tick_ms`` ago is left for later."""
        started = self._clock.monotonic()
        due, self._due = self._due, []
        heap = self._deferred
        while heap and heap[0][0] <= started + _EPS:
            due.append(heapq.heappop(heap)[2])
        if not due:
            return 0
        now = self._clock.wall_ms()
        limit = self.config.degrade_top_k if self._level >= 1 else None
        frames = coalesced = 0
        for stream_id in due:
            channel = self._channels.get(stream_id)
            if channel is None:
                continue  # left memory meanwhile
            channel.deferred = False
            if stream_id not in self._active or self._level >= 2:
                continue  # nothing left to show, or half rate: the ticks take it
            at = channel.last_step + self._period
            if started < at - _EPS:
                if channel.last_step_eager:
                    channel.deferred = True
                    heapq.heappush(heap, (at, next(self._defer_ids), stream_id))
                continue  # a tick stepped it since: the ticks take it
            framed, n = self._step(stream_id, channel, limit, now, started, eager=True)
            frames += framed
            coalesced += n
        if frames:
            self._rounds += 1
            self._frames_emitted += frames
            self._frames_coalesced += coalesced
            self._frames_between_ticks += frames
            self._between_frames += frames
            self._between_coalesced += coalesced
        self._between_seconds += self._clock.monotonic() - started
        return frames

    def _step(
        self, stream_id: str, channel: Channel, limit: int | None, now: int, mono: float, *, eager: bool
    ) -> tuple[int, int]:
        """One smoother step of the stream and its frame, if any: (frames emitted, frames coalesced)."""
        channel.last_step = mono
        channel.last_step_eager = eager
        smoother = channel.smoother
        marker = channel.drain_marker
        if channel.drained_at_ms is not None:
            counts = smoother.drain()
            channel.drain_marker = False
        else:
            counts = smoother.step(limit)
        polls = self._render_polls(channel) if channel.polls_dirty else None
        if not smoother.active:
            self._active.discard(stream_id)
        if not counts and not marker and not polls:
            return 0, 0
        channel.seq += 1
        drained = channel.drained_at_ms is not None
        frame = Frame(_DELTA, channel.seq, counts, now, drained, shared=True, polls=polls, degraded=self._level)
        channel.buffer.append(frame)
        coalesced = 0
        for sub in channel.subscribers:
            if sub._push(frame):
                coalesced += 1
        self._touch(stream_id, now)
        self._hooks.on_frame(stream_id, counts, now)
        return 1, coalesced

    def _touch(self, stream_id: str, now_ms: int) -> None:
        last = self._last_active
        last.pop(stream_id, None)
        last[stream_id] = now_ms

    def _release_idle(self) -> None:
        """Free the resume buffer and snapshot of every stream idle past ``idle_stream_s``."""
        cutoff = self._clock.wall_ms() - self.config.idle_stream_s * 1000
        last = self._last_active
        idle: list[str] = []
        for stream_id, at in last.items():
            if at >= cutoff:
                break
            idle.append(stream_id)
        evicted: set[str] = set()
        cold = self._cold
        for stream_id in idle:
            del last[stream_id]
            channel = self._channels.get(stream_id)
            if channel is None:
                continue
            if channel.subscribers or (cold is not None and cold.loading(stream_id)):
                self._touch(stream_id, self._clock.wall_ms())  # watched or loading: look again later
                continue
            channel.buffer.clear()
            channel.snapshot = None
            self._streams_idled += 1
            # A drained stream stays unless the drain is kept elsewhere (``set_drain_lookup``) and its frame is out.
            kept_drained = channel.drain_marker or (channel.drained_at_ms is not None and self._drain_lookup is None)
            if cold is None or channel.smoother.active or kept_drained or channel.polls_dirty:
                continue
            del self._channels[stream_id]
            self._active.discard(stream_id)
            evicted.add(stream_id)
        if evicted:
            self._streams_evicted += len(evicted)
            self._state.totals.prune(lambda key: key[0] in evicted)
            for listener in self._evict_listeners:
                listener(evicted)

    def _render_polls(self, channel: Channel) -> dict[str, polls_pb2.Poll]:
        """The dirty polls whose state differs from what was shown; records them as shown."""
        out: dict[str, polls_pb2.Poll] = {}
        source = self._poll_source
        shown = channel.polls_shown
        for poll_id in channel.polls_dirty:
            poll = source.render(poll_id) if source is not None else None
            if poll is None or poll.stream_id != channel.stream_id:
                if shown.pop(poll_id, None) is not None:
                    channel.snapshot = None
                continue
            if shown.get(poll_id) != poll:
                out[poll_id] = shown[poll_id] = poll
        channel.polls_dirty.clear()
        return out

    def _adapt(self, seconds: float) -> None:
        overloaded = seconds * 1000 > self.config.tick_budget_ms or self._subscribers > self.config.degrade_subscribers
        if overloaded:
            self._level = min(2, self._level + 1)
            self._calm = 0
        elif self._level:
            self._calm += 1
            if self._calm >= self.config.recover_ticks:
                self._level -= 1
                self._calm = 0

    async def run(self) -> None:
        """Call ``tick()`` every ``tick_ms`` of the clock until ``close()`` (late ticks are not made up), and
        ``flush()`` whenever totals grow or a deferred stream's deadline comes."""
        period = self._period
        clock = self._clock
        next_at = clock.monotonic() + period
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            while not self._closed:
                if clock.monotonic() >= next_at:
                    self.tick()
                    next_at += period
                    now = clock.monotonic()
                    if next_at <= now:
                        next_at = now + period
                self.flush()
                wake_at = next_at
                if self._deferred and self._deferred[0][0] < wake_at:
                    wake_at = self._deferred[0][0]
                delay = wake_at - clock.monotonic()
                if delay <= 0:
                    continue
                waker = self._waker = asyncio.get_running_loop().create_future()
                sleeper = asyncio.ensure_future(clock.sleep(delay))
                await asyncio.wait((sleeper, waker, stop), return_when=asyncio.FIRST_COMPLETED)
                self._waker = None
                if not sleeper.done():
                    sleeper.cancel()
                if self._stop.is_set():
                    break
        finally:
            stop.cancel()

    # -- subscribers -------------------------------------------------------------------------

    def subscribe(self, request: broadcast_pb2.SubscribeRequest) -> Subscription:
        """Attach a subscriber: queue its SNAPSHOT or its replayed frames, then live frames.

        Raises ServiceError: INVALID_ARGUMENT for a bad stream id, RESOURCE_EXHAUSTED beyond
        ``max_subscribers``, UNAVAILABLE once closed.
        """
        check_stream_id(request.stream_id)
        if self._closed:
            raise unavailable("broadcaster is shutting down; reconnect with resume")
        if self._subscribers >= self.config.max_subscribers:
            raise resource_exhausted(
                f"broadcaster has {self._subscribers} subscribers (max_subscribers)", self.config.retry_after_ms
            )
        channel = self._channel(request.stream_id)
        sub = Subscription(self, channel, self.config.subscriber_queue_frames)
        replay = self._replay(channel, request.resume) if request.HasField("resume") else None
        if replay is None:
            sub._push(self._snapshot(channel))
            self._snapshots_sent += 1
        else:
            self._resumes_replayed += 1
            for frame in replay:
                if sub._push(frame):
                    self._frames_coalesced += 1
        channel.subscribers.add(sub)
        self._subscribers += 1
        return sub

    def _replay(self, channel: Channel, resume: broadcast_pb2.ResumePoint) -> list[Frame] | None:
        """The buffered frames after ``resume``, or None when they cannot all be replayed."""
        if resume.epoch != self.epoch or resume.seq > channel.seq:
            return None
        if resume.seq == channel.seq:
            return []
        buffer = channel.buffer
        if not buffer or buffer[0].seq > resume.seq + 1:
            return None
        return list(islice(buffer, resume.seq + 1 - buffer[0].seq, None))

    def _snapshot(self, channel: Channel) -> Frame:
        drained = channel.drained_at_ms is not None
        cached = channel.snapshot
        if cached is not None and cached.seq == channel.seq and cached.drained == drained:
            return cached
        smoother = channel.smoother
        counts = {}
        for emoji, total in channel.known.items():
            shown = total - smoother.pending(emoji)
            if shown:
                counts[emoji] = shown
        frame = channel.snapshot = Frame(
            _SNAPSHOT,
            channel.seq,
            counts,
            self._clock.wall_ms(),
            drained,
            shared=True,
            polls=dict(channel.polls_shown),
            degraded=self._level,
        )
        return frame

    def detach(self, sub: Subscription) -> None:
        channel = sub._channel
        if sub in channel.subscribers:
            channel.subscribers.discard(sub)
            self._subscribers -= 1
            self._touch(channel.stream_id, self._clock.wall_ms())

    def encode(self, stream_id: str, frame: Frame) -> bytes:
        self._frames_sent += 1
        data = frame.data
        if data is None:
            message = broadcast_pb2.Frame(
                stream_id=stream_id,
                epoch=self.epoch,
                seq=frame.seq,
                kind=frame.kind,
                counts=[common_pb2.ReactionCount(emoji=e, count=n) for e, n in frame.counts.items()],
                server_time_ms=frame.server_time_ms,
                coalesced=frame.coalesced,
                polls=frame.polls.values(),
                drained=frame.drained,
                degrade_level=frame.degraded,
            )
            data = frame.data = message.SerializeToString()
            self._frames_serialized += 1
        return data

    # -- operator actions and lifecycle ------------------------------------------------------

    def drain(self, stream_id: str, at_ms: int | None = None) -> int:
        """Flush the stream's pending counts in the next frame and mark its frames drained.

        Returns when the drain took effect (Unix ms: ``at_ms``, by default now; the first call's time if
        repeated). Raises ServiceError INVALID_ARGUMENT for a bad stream id.
        """
        check_stream_id(stream_id)
        new = stream_id not in self._channels
        channel = self._channel(stream_id)
        if channel.drained_at_ms is None or new:  # a new channel may know of the drain (lookup), not its frame
            if channel.drained_at_ms is None:
                channel.drained_at_ms = self._clock.wall_ms() if at_ms is None else at_ms
            channel.drain_marker = True
            self._active.add(stream_id)
        return channel.drained_at_ms

    def stream_known(self, stream_id: str) -> bool:
        """Whether reaction totals of the stream have reached this broadcaster (from any region)."""
        channel = self._channels.get(stream_id)
        return channel is not None and bool(channel.known)

    def drained_at(self, stream_id: str) -> int | None:
        """When ``drain(stream_id)`` took effect (Unix ms), or None if it has not been drained."""
        channel = self._channels.get(stream_id)
        return channel.drained_at_ms if channel is not None else None

    def shown_polls(self, stream_id: str) -> dict[str, polls_pb2.Poll]:
        """Poll id -> the state viewers of the stream have been shown so far."""
        channel = self._channels.get(stream_id)
        return dict(channel.polls_shown) if channel is not None else {}

    def shown_totals(self, stream_id: str) -> dict[str, int]:
        """What viewers of the stream have been shown so far (true totals minus pending)."""
        channel = self._channels.get(stream_id)
        if channel is None:
            return {}
        return dict(self._snapshot(channel).counts)

    def statistics(self) -> BroadcasterStatistics:
        """Counters; ``queue_depth_max`` looks at every subscriber, so call it at scrape rate."""
        depth = 0
        for channel in self._channels.values():
            for sub in channel.subscribers:
                depth = max(depth, sub.depth)
        return BroadcasterStatistics(
            streams=len(self._channels),
            subscribers=self._subscribers,
            ticks=self._ticks,
            ticks_skipped=self._ticks_skipped,
            degrade_level=self._level,
            frames_emitted=self._frames_emitted,
            frames_sent=self._frames_sent,
            frames_coalesced=self._frames_coalesced,
            frames_serialized=self._frames_serialized,
            snapshots_sent=self._snapshots_sent,
            resumes_replayed=self._resumes_replayed,
            queue_depth_max=depth,
            queue_depth_high_water=self.queue_high_water,
            streams_idled=self._streams_idled,
            streams_evicted=self._streams_evicted,
            cold_loads=self._cold.loads if self._cold is not None else 0,
            frames_between_ticks=self._frames_between_ticks,
        )

    async def close(self) -> None:
        """Stop ``run()`` and end every subscription after its queued frames. Idempotent."""
        self._closed = True
        self._stop.set()
        if self._cold is not None:
            await self._cold.close()
        for channel in self._channels.values():
            for sub in channel.subscribers:
                sub._end()


def _split(key: Key) -> tuple[str, str] | None:
    if len(key) != 2:
        return None
    stream_id, emoji = key
    if not isinstance(stream_id, str) or not isinstance(emoji, str):
        return None
    return stream_id, emoji
