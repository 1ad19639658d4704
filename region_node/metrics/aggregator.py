"""Aggregator metrics: commits, commit latency and lag, dedupe, watermarks (a commit listener + statistics)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from reactmesh.region_node.aggregator.core import Aggregator
from reactmesh.region_node.aggregator.pending import CommitFacts
from reactmesh.region_node.metrics.families import (
    DURATION_BUCKETS,
    ENTRIES_BUCKETS,
    LATENCY_BUCKETS,
    Histogram,
    counter,
    gauge,
)


class AggregatorCollector:
    """Commit latency, accepted -> committed lag and entries per commit (a commit listener), and counters."""

    def __init__(self, region: str, aggregator: Aggregator) -> None:
        self._region = region
        self._aggregator = aggregator
        self._histograms = (
            Histogram(
                "reactmesh_aggregator_commit_duration_seconds",
                "Time of one group commit (one SQLite transaction).",
                ["region"],
                DURATION_BUCKETS,
            ),
            Histogram(
                "reactmesh_aggregator_commit_lag_seconds",
                "Per commit: edge accepted -> committed of its oldest entry.",
                ["region"],
                LATENCY_BUCKETS,
            ),
            Histogram(
                "reactmesh_aggregator_commit_entries",
                "Entries (client batches) applied per commit.",
                ["region"],
                ENTRIES_BUCKETS,
            ),
        )
        self._duration, self._lag, self._entries = (h.child(region) for h in self._histograms)
        aggregator.add_commit_listener(self.on_commit)

    def on_commit(self, facts: CommitFacts) -> None:
        self._duration.observe(facts.commit_seconds)
        self._lag.observe(max(0, facts.committed_at_ms - facts.oldest_accepted_at_ms) / 1000)
        self._entries.observe(facts.entries)

    def collect(self) -> Iterator[Metric]:
        for h in self._histograms:
            yield h.family()
        r = self._region
        s = self._aggregator.statistics()
        entries = counter("reactmesh_aggregator_entries_total", "Forwarded entries by outcome.", ("region", "outcome"))
        for outcome in ("applied", "duplicate", "refused"):
            entries.add_metric([r, outcome], s[f"entries_{outcome}"])
        yield entries
        for name, doc, key in (
            ("reactmesh_aggregator_taps_total", "Taps of committed entries.", "taps_applied"),
            ("reactmesh_aggregator_commits_total", "Group commits that wrote something.", "commits"),
            ("reactmesh_aggregator_commit_failures_total", "Group commits that failed.", "commit_failures"),
            (
                "reactmesh_aggregator_watermarks_expired_total",
                "Session watermarks dropped by TTL.",
                "watermarks_expired",
            ),
        ):
            c = counter(name, doc)
            c.add_metric([r], s[key])
            yield c
        for name, doc, key in (
            (
                "reactmesh_aggregator_pending_entries",
                "Entries applied and waiting for the next commit.",
                "pending_entries",
            ),
            ("reactmesh_aggregator_sessions_tracked", "Sessions with a watermark in memory.", "sessions_tracked"),
            ("reactmesh_aggregator_forward_streams", "Open Forward streams (edges).", "streams_open"),
        ):
            g = gauge(name, doc)
            g.add_metric([r], s[key])
            yield g
