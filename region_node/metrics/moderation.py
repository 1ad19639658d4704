"""Moderation metrics of a broadcaster: mutes, drains and abuse flags in force (from every region), records held,
actions taken here, and the moderation file's writes and errors."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from reactmesh.region_node.metrics.families import counter, gauge
from reactmesh.region_node.moderation.book import ModerationBook


class ModerationCollector:
    """Reads ``ModerationBook.statistics()`` at scrape time."""

    def __init__(self, region: str, book: ModerationBook) -> None:
        self._region = region
        self._book = book

    def collect(self) -> Iterator[Metric]:
        r = self._region
        s = self._book.statistics()
        in_force = gauge(
            "reactmesh_moderation_in_force",
            "Mutes, drains and abuse flags in force now, from every region (kind: mute, drain, flag).",
            ("region", "kind"),
        )
        for kind, n in (("mute", s.mutes_in_force), ("drain", s.drains_in_force), ("flag", s.flags_in_force)):
            in_force.add_metric([r, kind], n)
        yield in_force
        records = gauge(
            "reactmesh_moderation_records", "Moderation records held (in force or lapsed, within 30 days).", ("region",)
        )
        records.add_metric([r], s.records)
        yield records
        actions = counter("reactmesh_moderation_actions", "Admin actions taken on this broadcaster.", ("region",))
        actions.add_metric([r], s.actions)
        yield actions
        errors = counter(
            "reactmesh_moderation_store_errors", "Failed writes of the moderation file (actions answered UNAVAILABLE)."
        )
        errors.add_metric([r], s.store_errors)
        yield errors
