"""Live-comment metrics of a broadcaster, read at scrape time from ``CommentBook.statistics()`` and
``CommentHub.statistics()``: comments posted, resent, rate limited, filtered (blocklist) and shadowed (mute),
deletes and pins taken here, delivery (frames, comments delivered, priority lane, sampled out, frames dropped for
slow watchers), watchers, and the delivery lag from a comment's id time to its frame."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import HistogramMetricFamily, Metric

from reactmesh.region_node.comments.book import CommentBook
from reactmesh.region_node.comments.hub import LAG_BUCKETS_MS
from reactmesh.region_node.metrics.families import counter, gauge


class CommentsCollector:
    """Reads a CommentBook and its hub at scrape time."""

    def __init__(self, region: str, book: CommentBook) -> None:
        self._region = region
        self._book = book

    def collect(self) -> Iterator[Metric]:
        r = self._region
        s = self._book.statistics()
        h = self._book.hub.statistics()
        ingest = counter(
            "reactmesh_comments_ingest",
            "Comments offered to this broadcaster, by outcome (posted, duplicate, rate_limited); filtered and"
            " muted count posted comments that were shadowed.",
            ("region", "outcome"),
        )
        for outcome, n in (
            ("posted", s.posted),
            ("duplicate", s.duplicates),
            ("rate_limited", s.rate_limited),
            ("filtered", s.filtered),
            ("muted", s.shadowed_muted),
        ):
            ingest.add_metric([r, outcome], n)
        yield ingest
        actions = counter(
            "reactmesh_comments_moderation", "Deletes, pins and likes taken on this broadcaster.", ("region", "action")
        )
        actions.add_metric([r, "delete"], s.deletes)
        actions.add_metric([r, "pin"], s.pins)
        actions.add_metric([r, "like"], s.likes)
        actions.add_metric([r, "late_delete"], s.late_deletes)
        yield actions
        delivered = counter(
            "reactmesh_comments_delivery",
            "Comments framed for watchers: delivered (per watcher), priority (lane, per frame), sampled_out (per"
            " frame), dropped_frames (a slow watcher's full queue; its next frame carries gap).",
            ("region", "kind"),
        )
        for kind, n in (
            ("delivered", h.delivered),
            ("priority", h.priority),
            ("sampled_out", h.sampled_out),
            ("dropped_frames", h.dropped_frames),
        ):
            delivered.add_metric([r, kind], n)
        yield delivered
        watchers = gauge("reactmesh_comments_watchers", "Open WatchComments calls.")
        watchers.add_metric([r], h.watchers)
        yield watchers
        held = gauge("reactmesh_comments_held", "Comments, tombstones and pins in memory (the hot window).")
        held.add_metric([r], s.held)
        yield held
        late = gauge(
            "reactmesh_comments_late_deletes_held",
            "Deletes of comments already out of memory, held to pass on to every region (late_delete_window_s).",
        )
        late.add_metric([r], s.late_held)
        yield late
        errors = counter("reactmesh_comments_store_errors", "Failed writes of the comment file.")
        errors.add_metric([r], s.store_errors)
        yield errors
        lag = HistogramMetricFamily(
            "reactmesh_comments_delivery_lag_seconds",
            "From a comment's id time (its accepting node's HLC) to the frame that carries it here.",
            labels=("region",),
        )
        buckets, total = [], 0
        for bound, n in zip(LAG_BUCKETS_MS, h.lag_buckets, strict=False):
            total += n
            buckets.append((str(bound / 1000), float(total)))
        buckets.append(("+Inf", float(h.lag_count)))
        lag.add_metric([r], buckets, sum_value=h.lag_sum_ms / 1000)
        yield lag
