"""Stored-history metrics: windows in memory and written through, late windows, and history sync per peer."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.core import Metric

from reactmesh.region_node.metrics.families import counter, gauge
from reactmesh.region_node.state import RegionState
from reactmesh.region_node.windows.sealer import WindowWriter
from reactmesh.region_node.windows.sync import HistorySync


class HistoryCollector:
    """Reads a WindowWriter's stats and each HistorySync's stats at scrape time."""

    def __init__(self, region: str, state: RegionState, writer: WindowWriter, syncs: Sequence[HistorySync]) -> None:
        self._region = region
        self._state = state
        self._writer = writer
        self._syncs = syncs

    def collect(self) -> Iterator[Metric]:
        r = self._region
        g = gauge("reactmesh_windows_in_memory", "Per-second window keys held in memory (open windows).")
        g.add_metric([r], len(self._state.windows))
        yield g
        g = gauge(
            "reactmesh_history_sealed_before_seconds", "The seal line: windows starting before it are on disk only."
        )
        g.add_metric([r], self._writer.sealed_before_s)
        yield g
        stats = self._writer.stats
        for name, doc, key in (
            (
                "reactmesh_history_windows_written_total",
                "Windows written through to the history store.",
                "windows_written",
            ),
            ("reactmesh_history_windows_sealed_total", "Windows that left memory once sealed.", "windows_sealed"),
            (
                "reactmesh_history_late_windows_total",
                "Windows merged after they were sealed (written, bucket marked changed).",
                "late_windows",
            ),
            (
                "reactmesh_history_write_failures_total",
                "Failed writes to the history store (kept in memory, retried).",
                "write_failures",
            ),
        ):
            c = counter(name, doc)
            c.add_metric([r], stats[key])
            yield c
        labels = ("region", "peer")
        families = {
            "rounds": counter("reactmesh_history_sync_rounds_total", "History sync rounds per peer.", labels),
            "failures": counter("reactmesh_history_sync_failures_total", "History sync rounds that failed.", labels),
            "buckets_compared": counter(
                "reactmesh_history_sync_buckets_compared_total", "History buckets whose digests were compared.", labels
            ),
            "buckets_differing": counter(
                "reactmesh_history_sync_buckets_differing_total", "History buckets found to differ.", labels
            ),
            "rows_fetched": counter(
                "reactmesh_history_sync_rows_fetched_total", "Window rows repaired from a peer.", labels
            ),
            "full_sweeps": counter(
                "reactmesh_history_sync_full_sweeps_total", "Full sweeps started (connects).", labels
            ),
        }
        pending = gauge("reactmesh_history_sync_pending", "1 while a peer's sweep or fetches are unfinished.", labels)
        for sync in self._syncs:
            for attr, family in families.items():
                family.add_metric([r, sync.address], getattr(sync.stats, attr))
            pending.add_metric([r, sync.address], 0 if sync.idle else 1)
        yield from families.values()
        yield pending
