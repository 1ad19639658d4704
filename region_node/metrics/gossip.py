"""Gossip metrics: deltas and bytes sent and received, replication lag per origin region, dialers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.core import Metric

from reactmesh.merge.clock import Clock
from reactmesh.merge.gossip import GossipNode
from reactmesh.region_node.metrics.families import (
    LATENCY_BUCKETS,
    Histogram,
    HistogramChild,
    counter,
    gauge,
)
from reactmesh.region_node.replication import Dialer


class GossipCollector:
    """Gossip traffic per role and replication lag per origin region (lag observers and ``stats``)."""

    def __init__(self, region: str, clock: Clock) -> None:
        self._region = region
        self._clock = clock
        self._nodes: list[GossipNode] = []
        self._dialers: list[Sequence[Dialer]] = []
        self._lag = Histogram(
            "reactmesh_replication_delta_lag_seconds",
            "Per merged gossip delta: the sender's origin_time_ms -> merged here.",
            ["region", "origin_region"],
            LATENCY_BUCKETS,
        )
        self._lag_by_origin: dict[str, HistogramChild] = {}
        self._last_delta_ms: dict[str, int] = {}

    def add(self, node: GossipNode, dialers: Sequence[Dialer] = ()) -> None:
        """Watch ``node``; ``dialers`` is read at scrape time (it may still be filling)."""
        self._nodes.append(node)
        self._dialers.append(dialers)
        node.lag_observers.append(self._on_delta)

    def _on_delta(self, origin_region: str, lag_ms: int) -> None:
        child = self._lag_by_origin.get(origin_region)
        if child is None:
            child = self._lag_by_origin[origin_region] = self._lag.child(self._region, origin_region)
        child.observe(lag_ms / 1000)
        self._last_delta_ms[origin_region] = self._clock.wall_ms()

    def collect(self) -> Iterator[Metric]:
        yield self._lag.family()
        r = self._region
        role_labels = ("region", "role")
        for name, doc, attr in (
            ("reactmesh_gossip_deltas_sent_total", "Gossip deltas sent to peers.", "deltas_sent"),
            ("reactmesh_gossip_deltas_received_total", "Gossip deltas received and merged.", "deltas_received"),
            ("reactmesh_gossip_sent_bytes_total", "Bytes of gossip deltas sent.", "bytes_sent"),
            ("reactmesh_gossip_received_bytes_total", "Bytes of gossip deltas received.", "bytes_received"),
            ("reactmesh_gossip_keys_grown_total", "CRDT keys grown by merged deltas.", "keys_grown"),
            ("reactmesh_gossip_sessions_total", "Gossip sessions started (after Hello).", "sessions"),
            ("reactmesh_gossip_digests_sent_total", "Anti-entropy digests sent to peers.", "digests_sent"),
            (
                "reactmesh_gossip_unknown_parts_total",
                "Delta parts of collections this node does not hold (from a newer peer), skipped.",
                "unknown_parts",
            ),
            (
                "reactmesh_gossip_digest_repairs_total",
                "Deltas sent to repair buckets a peer's digest showed differing.",
                "digest_repairs",
            ),
            (
                "reactmesh_gossip_full_state_transfers_total",
                "Sessions that started from nothing (a new peer incarnation gets full state in bounded deltas).",
                "full_state_transfers",
            ),
        ):
            c = counter(name, doc, role_labels)
            for node in self._nodes:
                c.add_metric([r, node.role], getattr(node.stats, attr))
            yield c
        origin_labels = ("region", "origin_region")
        lag = gauge(
            "reactmesh_replication_lag_seconds",
            "Lag of the last delta merged from each origin region (see the delta lag histogram).",
            origin_labels,
        )
        latest: dict[str, int] = {}
        for node in self._nodes:
            for origin, ms in node.stats.lag_ms.items():
                latest[origin] = max(ms, latest.get(origin, 0))
        for origin, ms in sorted(latest.items()):
            lag.add_metric([r, origin], ms / 1000)
        yield lag
        last = gauge(
            "reactmesh_replication_last_delta_timestamp_seconds",
            "Unix time when a delta from each origin region was last merged.",
            origin_labels,
        )
        for origin, ms in sorted(self._last_delta_ms.items()):
            last.add_metric([r, origin], ms / 1000)
        yield last
        attempts = counter(
            "reactmesh_gossip_dial_attempts_total",
            "Gossip sessions dialled to each configured peer; steady growth means it is unreachable.",
            ("region", "peer"),
        )
        for dialers in self._dialers:
            for d in dialers:
                attempts.add_metric([r, d.address], d.connects)
        yield attempts
