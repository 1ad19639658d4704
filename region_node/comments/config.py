"""Settings of a broadcaster's live comments, validated at construction (ConfigError names the field)."""

from __future__ import annotations

from dataclasses import dataclass

from reactmesh.merge.checks import int_in, number_in
from reactmesh.merge.errors import ConfigError
from reactmesh.merge.hlc import HybridLogicalClock
from reactmesh.region_node.sqlite import Synchronous


@dataclass(frozen=True)
class CommentsConfig:
    """Live comments of one broadcaster (tokens are the node's ``[auth]`` section)."""

    # Per-viewer post limit: a token bucket of `post_burst` refilling at `post_rate_per_s`.
    post_rate_per_s: float = 1.0
    post_burst: int = 5
    max_limited_viewers: int = 100_000
    # Words whose comments are shadowed (seen by their author only).
    blocklist: tuple[str, ...] = ()
    # Non-priority comments each viewer is sent per second at most (uniform sample beyond it).
    sample_rate_per_s: float = 50.0
    # A comment liked by this many distinct viewers joins the priority lane (sent again to every watcher).
    priority_likes: int = 100
    # How often frames are built.
    tick_ms: int = 100
    # Comments kept in memory per stream for resumes; a late joiner gets the last `late_join` of them.
    buffer_per_stream: int = 2_000
    late_join: int = 100
    # Comments older than this leave memory (everywhere: the floor travels by gossip); SQLite keeps them.
    hot_window_s: int = 600
    # ... and at most this many comments and tombstones stay in memory: past it, the oldest leave (a burst
    # shortens the hot window rather than growing memory).
    max_hot: int = 1_000_000
    # A delete of a comment already out of memory is held in memory (and passed on by gossip) this long, so it
    # reaches every region's comment file unless a region is cut off for longer.
    late_delete_window_s: int = 86_400
    retention_days: int = 90
    # Rows the retention deletes per pass (cost per pass is bounded, whatever has accumulated).
    prune_batch: int = 5_000
    synchronous: Synchronous = "NORMAL"
    max_drift_ms: int = HybridLogicalClock.DEFAULT_MAX_DRIFT_MS

    def __post_init__(self) -> None:
        number_in("post_rate_per_s", self.post_rate_per_s, 0, 10_000, low_open=True)
        int_in("post_burst", self.post_burst, 1, 10_000)
        int_in("max_limited_viewers", self.max_limited_viewers, 1, 100_000_000)
        words: object = self.blocklist
        if isinstance(words, list):  # from TOML
            object.__setattr__(self, "blocklist", tuple(words))
        if not isinstance(self.blocklist, tuple) or not all(isinstance(w, str) for w in self.blocklist):
            raise ConfigError("blocklist", "a list of words", self.blocklist)
        number_in("sample_rate_per_s", self.sample_rate_per_s, 0, 100_000, low_open=True)
        int_in("priority_likes", self.priority_likes, 1, 100_000_000)
        int_in("tick_ms", self.tick_ms, 1, 10_000)
        int_in("buffer_per_stream", self.buffer_per_stream, 1, 1_000_000)
        int_in("late_join", self.late_join, 1, 100)
        if self.late_join > self.buffer_per_stream:
            raise ConfigError("late_join", f"at most buffer_per_stream ({self.buffer_per_stream})", self.late_join)
        int_in("hot_window_s", self.hot_window_s, 1, 86_400)
        int_in("max_hot", self.max_hot, 1_000, 100_000_000)
        int_in("late_delete_window_s", self.late_delete_window_s, 60, 30 * 86_400)
        int_in("retention_days", self.retention_days, 1, 3_650)
        int_in("prune_batch", self.prune_batch, 1, 1_000_000)
        if self.synchronous not in ("FULL", "NORMAL"):
            raise ConfigError("synchronous", '"FULL" or "NORMAL"', self.synchronous)
        int_in("max_drift_ms", self.max_drift_ms, 0, 86_400_000)
