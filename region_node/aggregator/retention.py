"""Retention of an aggregator's state: session watermarks expire after ``watermark_ttl_s`` of silence; per-second
windows leave memory once sealed (``window_horizon_s``, region_node.windows.sealer) and the disk after
``window_retention_s``; a stream's totals leave memory after ``idle_stream_s`` without a commit (reloaded from the
store by the next commit of that stream).

Watermarks expire in every region, not only here: each expiry also raises the floor of the replicated
``watermarks`` map to now - ``watermark_ttl_s`` (in steps of a minute), and the floor travels with gossip, so
every broadcaster and aggregator drops the same sessions (those whose last committed batch, by its committing
aggregator's clock, is older than the floor). The smallest TTL in the mesh wins; clock offset between regions
shifts the floor by that offset. A session silent for longer than the TTL that then resends an old batch is
counted again.
"""

from __future__ import annotations

import logging

from reactmesh.merge.clock import Clock
from reactmesh.merge.maxmap import MaxMap
from reactmesh.region_node.aggregator.config import AggregatorConfig
from reactmesh.region_node.aggregator.store import Store
from reactmesh.region_node.state import WATERMARKS, RegionState
from reactmesh.region_node.windows.sealer import SEAL_EVERY_S, SealedBefore, seal_windows

log = logging.getLogger(__name__)

WATERMARK_EXPIRY_EVERY_S = 1.0
WINDOW_EXPIRY_EVERY_S = 60.0
FLOOR_STEP_MS = 60_000
"""The replicated floor moves in steps of a minute: each step costs every replica one scan of its entries."""


class Retention:
    """When an aggregator's watermarks and windows expire.

    Committed watermarks are held once, in the replicated ``state.watermarks`` (each entry has its commit stamp), so
    they leave memory when the floor passes them; the store follows in the same steps."""

    def __init__(self, config: AggregatorConfig, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._pruned_ms = 0  # the store holds no watermark committed before this
        # stream -> wall ms of its last commit, least recent first.
        self._streams: dict[str, int] = {}
        self.streams_evicted = 0
        self._next_wm = 0.0
        self._next_windows = 0.0
        self._next_seal = 0.0
        self.line = SealedBefore(clock, config.window_horizon_s)
        self.watermarks_expired = 0
        self.windows_expired = 0
        self.windows_sealed = 0

    def start(self) -> None:
        """Schedule the first expiry one period from now."""
        now = self._clock.monotonic()
        self._next_wm = now + WATERMARK_EXPIRY_EVERY_S
        self._next_windows = now + WINDOW_EXPIRY_EVERY_S
        self._next_seal = now + SEAL_EVERY_S

    def touch_stream(self, stream: str, committed_ms: int) -> None:
        """Record a commit of ``stream`` (the most recent one so far)."""
        streams = self._streams
        streams.pop(stream, None)
        streams[stream] = committed_ms

    def evict_idle_streams(self, state: RegionState, now_ms: int) -> int:
        """Drop the totals of streams without a commit for ``idle_stream_s`` from ``state``; return how many streams."""
        cutoff = now_ms - self._config.idle_stream_s * 1000
        idle: set[str] = set()
        for stream, at in self._streams.items():
            if at >= cutoff:
                break
            idle.add(stream)
        if idle:
            for stream in idle:
                del self._streams[stream]
            state.totals.prune(lambda key: key[0] in idle)
            self.streams_evicted += len(idle)
        return len(idle)

    async def expire(self, state: RegionState, store: Store) -> None:
        """Raise the replicated watermarks' floor (dropping expired sessions from memory) and prune them from
        ``store``; drop sealed windows from memory and windows past retention from ``store``."""
        now = self._clock.monotonic()
        if now < self._next_wm and now < self._next_windows and now < self._next_seal:
            return
        now_ms = self._clock.wall_ms()
        try:
            if now >= self._next_wm:
                self._next_wm = now + WATERMARK_EXPIRY_EVERY_S
                cutoff_ms = now_ms - self._config.watermark_ttl_s * 1000
                if cutoff_ms - self._pruned_ms >= FLOOR_STEP_MS:
                    self.watermarks_expired += await store.prune_watermarks(cutoff_ms)
                    self._pruned_ms = cutoff_ms
                if cutoff_ms - state.watermarks.floor >= FLOOR_STEP_MS:
                    floor = MaxMap()
                    floor.expire(cutoff_ms)
                    state.merge(WATERMARKS, floor)
            if now >= self._next_seal:
                self._next_seal = now + SEAL_EVERY_S
                self.windows_sealed += seal_windows(state.windows, self.line.advance())
                self.evict_idle_streams(state, now_ms)
            if now >= self._next_windows:
                self._next_windows = now + WINDOW_EXPIRY_EVERY_S
                self.windows_expired += await store.prune_windows(now_ms // 1000 - self._config.window_retention_s)
        except Exception:
            log.exception("aggregator %s: expiry failed (retried later)", self._config.node_id)
