"""Settings of one aggregator, validated at construction (ConfigError names the field)."""

from __future__ import annotations

from dataclasses import dataclass

from reactmesh.edge.limits import MAX_ENTRIES_PER_EDGE_BATCH, REGION_FORM, is_node_name, is_region
from reactmesh.merge.checks import int_in
from reactmesh.merge.errors import ConfigError
from reactmesh.region_node.sqlite import Synchronous

ACCEPTED_AT_TOLERANCE_MS = 60_000
"""An edge's accepted_at_ms further than this from the aggregator's clock is replaced by the aggregator's."""


@dataclass(frozen=True)
class AggregatorConfig:
    """Settings of one aggregator; validated at construction (ConfigError names the field)."""

    node_id: str
    """Stable node id "<region>/<name>", e.g. "a/agg-0"."""
    region: str
    db_path: str
    """This node's SQLite file (created if missing). One file per node, never shared."""
    tick_ms: int = 100
    """With ``commit_interval_ms`` = 0, the group-commit period: acks wait for at most one tick plus the commit.
    Otherwise the longest an idle aggregator goes between two housekeeping passes (retention, sealing)."""
    commit_interval_ms: int = 25
    """Commits on demand: one starts as soon as an EdgeBatch is pending and the previous commit has finished, but
    no sooner than this many ms after the previous one started, so a loaded aggregator gathers what arrives
    meanwhile into one transaction (one fsync) and an idle one commits nothing. 0: commit every ``tick_ms``
    instead (an entry then waits up to a tick for its commit)."""
    window_retention_s: int = 7 * 86_400
    """Per-second windows older than this are dropped (history range of the query service)."""
    window_horizon_s: int = 120
    """Windows older than this are sealed: kept on disk only, never written again (a batch accepted longer ago
    counts in the current second). Larger than the accepted-at tolerance (60 s) plus replication slack."""
    idle_stream_s: int = 600
    """A stream without a commit for this long leaves memory (its totals slots); the next batch of it reloads them
    from the store before it is committed."""
    watermark_ttl_s: int = 7 * 86_400
    """A session silent longer than this is forgotten; if it then resends an already committed but
    unacked batch, that batch is counted twice."""
    max_entries_per_batch: int = MAX_ENTRIES_PER_EDGE_BATCH
    max_count: int = 1_000_000
    """Largest count of one emoji in one entry (the edge's per-entry cap is lower)."""
    synchronous: Synchronous = "FULL"
    """SQLite synchronous mode: FULL survives power loss, NORMAL only a process crash."""

    def __post_init__(self) -> None:
        if not is_region(self.region):
            raise ConfigError("region", REGION_FORM, self.region)
        node_id = self.node_id
        if (
            not isinstance(node_id, str)
            or not node_id.startswith(f"{self.region}/")
            or not is_node_name(node_id[len(self.region) + 1 :])
        ):
            raise ConfigError(
                "node_id", f"'{self.region}/<name>' with a name of [A-Za-z0-9._-], e.g. 'a/agg-0'", node_id
            )
        if not isinstance(self.db_path, str) or not self.db_path or self.db_path == ":memory:":
            raise ConfigError("db_path", "a file path (the store must survive a restart)", self.db_path)
        int_in("tick_ms", self.tick_ms, 1, 10_000)
        int_in("commit_interval_ms", self.commit_interval_ms, 0, self.tick_ms)
        min_retention = 2 * ACCEPTED_AT_TOLERANCE_MS // 1000
        int_in("window_retention_s", self.window_retention_s, min_retention, 10 * 365 * 86_400)
        int_in("window_horizon_s", self.window_horizon_s, 10, self.window_retention_s)
        int_in("idle_stream_s", self.idle_stream_s, self.window_horizon_s, 365 * 86_400)
        int_in("watermark_ttl_s", self.watermark_ttl_s, 60, 10 * 365 * 86_400)
        int_in("max_entries_per_batch", self.max_entries_per_batch, 1, 1_000_000)
        int_in("max_count", self.max_count, 1, 2**31)
        if self.synchronous not in ("FULL", "NORMAL"):
            raise ConfigError("synchronous", "'FULL' or 'NORMAL'", self.synchronous)
