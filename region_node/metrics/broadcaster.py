"""Broadcaster metrics: ticks, frames, coalescing, subscribers, frame lag (BroadcastHooks + statistics)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.core import Metric

from reactmesh.merge.clock import Clock
from reactmesh.merge.gossip import GossipNode
from reactmesh.merge.keyed import Key, KeyedGCounter
from reactmesh.region_node.broadcaster.core import Broadcaster, BroadcastHooks
from reactmesh.region_node.metrics.families import (
    DURATION_BUCKETS,
    LATENCY_BUCKETS,
    Histogram,
    HistogramChild,
    counter,
    gauge,
)
from reactmesh.region_node.state import TOTALS


class BroadcasterCollector(BroadcastHooks):
    """Tick duration and frame lag (hooks), subscribers, frames and queue depths (``statistics()``).

    Give it to the ``Broadcaster`` as ``hooks`` and then ``bind`` it; hooks before ``bind`` are ignored.
    """

    def __init__(self, region: str, clock: Clock) -> None:
        self._region = region
        self._clock = clock
        self._broadcaster: Broadcaster | None = None
        self._tick_histogram = Histogram(
            "reactmesh_broadcast_tick_duration_seconds",
            "Time of one broadcaster tick (smoothing and fan-out of every active stream).",
            ["region"],
            DURATION_BUCKETS,
        )
        self._tick = self._tick_histogram.child(region)
        self._frame_lag = Histogram(
            "reactmesh_broadcast_frame_lag_seconds",
            "Origin of the oldest delta that grew a stream's totals -> the stream's next broadcast frame.",
            ["region", "origin_region"],
            LATENCY_BUCKETS,
        )
        self._frame_lag_by_origin: dict[str, HistogramChild] = {}
        # Streams whose totals grew in the delta being merged, stamped by the lag observer that follows.
        self._fresh: set[str] = set()
        # stream -> (origin_time_ms, origin_region) of the oldest growth not yet in a frame.
        self._waiting: dict[str, tuple[int, str]] = {}

    def bind(self, broadcaster: Broadcaster, gossip: GossipNode) -> None:
        self._broadcaster = broadcaster
        gossip.state.add_listener(self._on_merge)
        gossip.lag_observers.append(self._on_delta)

    def _on_merge(self, collection: str, state: KeyedGCounter, grown: list[Key]) -> None:
        if collection == TOTALS:
            fresh = self._fresh
            for key in grown:
                fresh.add(key[0])  # type: ignore[arg-type]

    def _on_delta(self, origin_region: str, lag_ms: int) -> None:
        if not self._fresh:
            return
        stamp = (self._clock.wall_ms() - lag_ms, origin_region)
        waiting = self._waiting
        for stream_id in self._fresh:
            if stream_id not in waiting:
                waiting[stream_id] = stamp
        self._fresh.clear()

    def on_tick(self, frames: int, coalesced: int, seconds: float) -> None:
        if self._broadcaster is not None:
            self._tick.observe(seconds)

    def on_frame(self, stream_id: str, counts: Mapping[str, int], server_time_ms: int) -> None:
        stamp = self._waiting.pop(stream_id, None)
        if stamp is None or not counts:
            return
        origin_ms, origin_region = stamp
        child = self._frame_lag_by_origin.get(origin_region)
        if child is None:
            child = self._frame_lag_by_origin[origin_region] = self._frame_lag.child(self._region, origin_region)
        child.observe(max(0, server_time_ms - origin_ms) / 1000)

    def collect(self) -> Iterator[Metric]:
        if self._broadcaster is None:
            return
        yield self._tick_histogram.family()
        yield self._frame_lag.family()
        r = self._region
        s = self._broadcaster.statistics()
        for name, doc, value in (
            ("reactmesh_broadcast_subscribers", "Open subscriptions.", s.subscribers),
            ("reactmesh_broadcast_streams", "Streams known to the broadcaster.", s.streams),
            (
                "reactmesh_broadcast_degrade_level",
                "0 normal, 1 top-K emojis, 2 top-K and half frame rate.",
                s.degrade_level,
            ),
            (
                "reactmesh_broadcast_subscriber_queue_depth_max",
                "Frames queued for the slowest subscriber.",
                s.queue_depth_max,
            ),
            (
                "reactmesh_broadcast_subscriber_queue_depth_high_water",
                "Deepest subscriber queue since start, frames.",
                s.queue_depth_high_water,
            ),
        ):
            g = gauge(name, doc)
            g.add_metric([r], value)
            yield g
        for name, doc, value in (
            ("reactmesh_broadcast_ticks_total", "Broadcaster ticks.", s.ticks),
            ("reactmesh_broadcast_ticks_skipped_total", "Ticks skipped at degrade level 2.", s.ticks_skipped),
            (
                "reactmesh_broadcast_frames_emitted_total",
                "Frames produced (one per stream per tick).",
                s.frames_emitted,
            ),
            ("reactmesh_broadcast_frames_sent_total", "Frames handed to subscribers.", s.frames_sent),
            (
                "reactmesh_broadcast_frames_coalesced_total",
                "Frames merged into a full subscriber queue instead of queued.",
                s.frames_coalesced,
            ),
            ("reactmesh_broadcast_frames_serialized_total", "Frame serializations.", s.frames_serialized),
            ("reactmesh_broadcast_snapshots_sent_total", "SNAPSHOT frames given to new subscribers.", s.snapshots_sent),
            ("reactmesh_broadcast_resumes_total", "Subscribers resumed from the frame buffer.", s.resumes_replayed),
        ):
            c = counter(name, doc)
            c.add_metric([r], value)
            yield c
