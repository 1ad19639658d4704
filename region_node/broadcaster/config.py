"""Settings of one broadcaster: tick, resume buffers, subscriber bounds, smoothing and degradation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from reactmesh.merge.checks import int_in
from reactmesh.merge.errors import ConfigError
from reactmesh.region_node.broadcaster.smoother import SmootherConfig


@dataclass(frozen=True)
class BroadcasterConfig:
    """Tick, buffers, bounds and degradation of one broadcaster."""

    tick_ms: int = 100
    # Frames kept per stream for resumes: 600 ticks = 60 s at 100 ms.
    buffer_frames: int = 600
    subscriber_queue_frames: int = 64
    max_subscribers: int = 100_000
    smoothing: SmootherConfig = field(default_factory=SmootherConfig)
    tick_budget_ms: int = 50
    degrade_subscribers: int = 50_000
    degrade_top_k: int = 8
    recover_ticks: int = 50
    # Sent with RESOURCE_EXHAUSTED when max_subscribers is reached.
    retry_after_ms: int = 1000
    # A stream with no subscribers and no frame for this long gives back its resume buffer and snapshot (a later
    # resume gets a snapshot), so ended streams cost a few counters each, not a buffer of frames.
    idle_stream_s: int = 300
    # Frames follow commits: a stream whose totals grow is framed on the next event-loop turn when its last step
    # was at least tick_ms ago, else as soon as tick_ms has passed, not at the next fixed tick (see core.py).
    # False: frames only at the fixed ticks.
    eager_frames: bool = True

    def __post_init__(self) -> None:
        int_in("broadcaster.tick_ms", self.tick_ms, 1, 60_000)
        int_in("broadcaster.buffer_frames", self.buffer_frames, 1, 1_000_000)
        int_in("broadcaster.subscriber_queue_frames", self.subscriber_queue_frames, 1, 1_000_000)
        int_in("broadcaster.max_subscribers", self.max_subscribers, 1, 100_000_000)
        if isinstance(self.smoothing, Mapping):
            # A [broadcaster.smoothing] table of a config file.
            try:
                object.__setattr__(self, "smoothing", SmootherConfig(**self.smoothing))
            except ConfigError as exc:
                got = self.smoothing.get(exc.field.rpartition(".")[2])
                raise ConfigError(f"broadcaster.{exc.field}", exc.expected, got) from exc
            except TypeError as exc:
                raise ConfigError("broadcaster.smoothing", "a table of SmootherConfig fields", self.smoothing) from exc
        if not isinstance(self.smoothing, SmootherConfig):
            raise ConfigError("broadcaster.smoothing", "a SmootherConfig or a table of its fields", self.smoothing)
        int_in("broadcaster.tick_budget_ms", self.tick_budget_ms, 1, 60_000)
        int_in("broadcaster.degrade_subscribers", self.degrade_subscribers, 1, 100_000_000)
        int_in("broadcaster.degrade_top_k", self.degrade_top_k, 1, 10_000)
        int_in("broadcaster.recover_ticks", self.recover_ticks, 1, 1_000_000)
        int_in("broadcaster.retry_after_ms", self.retry_after_ms, 1, 3_600_000)
        int_in("broadcaster.idle_stream_s", self.idle_stream_s, 1, 30 * 86_400)
        if not isinstance(self.eager_frames, bool):
            raise ConfigError("broadcaster.eager_frames", "true or false", self.eager_frames)
