"""Edge metrics: ingest batches and taps by outcome and reason, in flight, forwarding queues, abuse flags."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from reactmesh.edge.abuse import FlagKind
from reactmesh.edge.service import Edge
from reactmesh.region_node.metrics.families import (
    counter,
    gauge,
)
from reactmesh.v1 import ingest_pb2

_BatchAck = ingest_pb2.BatchAck
BATCH_OUTCOMES = ("accepted", "duplicate", "rate_limited", "rejected", "overloaded")
"""``rate_limited``: ACCEPTED with every tap dropped by the rate limit; ``overloaded``: RETRY."""
REJECT_REASONS: tuple[str, ...] = tuple(
    "refused" if value == _BatchAck.REJECT_REASON_UNSPECIFIED else _BatchAck.RejectReason.Name(value).lower()
    for value in range(max(_BatchAck.RejectReason.values()) + 1)
)
"""``reason`` label of rejected batches, indexed by BatchAck.RejectReason; ``refused`` is the aggregator's."""

_ACCEPTED, _DUPLICATE, _RATE_LIMITED, _OVERLOADED = 0, 1, 2, 3
_UNREJECTED = ("accepted", "duplicate", "rate_limited", "overloaded")
"""Outcome labels of ``EdgeCollector._batches``, by index."""


class EdgeCollector:
    """Ingest batches and taps by outcome (an ``Edge`` listener), in-flight and forwarding queues."""

    def __init__(self, region: str, edge: Edge) -> None:
        self._region = region
        self._edge = edge
        self._batches = [0, 0, 0, 0]
        self._rejected = [0] * len(REJECT_REASONS)
        self._taps_accepted = 0
        self._taps_rate_limited = 0
        edge.listeners.append(self)

    def __call__(self, outcome: int, taps: int, rate_limited: int, reason: int) -> None:
        if outcome == _BatchAck.ACCEPTED:
            self._batches[_RATE_LIMITED if taps == 0 and rate_limited else _ACCEPTED] += 1
            self._taps_accepted += taps
            self._taps_rate_limited += rate_limited
        elif outcome == _BatchAck.DUPLICATE:
            self._batches[_DUPLICATE] += 1
        elif outcome == _BatchAck.REJECTED:
            self._rejected[reason if 0 <= reason < len(self._rejected) else 0] += 1
        elif outcome == _BatchAck.RETRY:
            self._batches[_OVERLOADED] += 1

    def collect(self) -> Iterator[Metric]:
        r = self._region
        batches = counter(
            "reactmesh_ingest_batches_total",
            "Client batches decided by the edge, by outcome; reason is set for rejected batches.",
            ("region", "outcome", "reason"),
        )
        for outcome, count in zip(_UNREJECTED, self._batches, strict=True):
            batches.add_metric([r, outcome, ""], count)
        for reason, count in zip(REJECT_REASONS, self._rejected, strict=True):
            batches.add_metric([r, "rejected", reason], count)
        yield batches
        taps = counter(
            "reactmesh_ingest_taps_total",
            "Taps of acknowledged batches: counted (accepted) or dropped by the per-viewer rate limit.",
            ("region", "outcome"),
        )
        taps.add_metric([r, "accepted"], self._taps_accepted)
        taps.add_metric([r, "rate_limited"], self._taps_rate_limited)
        yield taps
        stats = self._edge.statistics()
        inflight = gauge("reactmesh_edge_inflight_batches", "Batches forwarded to aggregators and not yet acked.")
        inflight.add_metric([r], stats["inflight"])
        yield inflight
        limit = gauge(
            "reactmesh_edge_admission_limit",
            "The adaptive in-flight limit (edge.admission): batches past it are answered RETRY.",
        )
        limit.add_metric([r], stats["admission_limit"])
        yield limit
        lag = gauge(
            "reactmesh_edge_commit_lag_seconds",
            "Commit lag the edge's admission saw in its last interval: forward to aggregator ack, or the oldest wait.",
        )
        lag.add_metric([r], stats["admission_lag_ms"] / 1000)
        yield lag
        base = gauge(
            "reactmesh_edge_commit_lag_base_seconds",
            "The smallest interval commit lag of the last few seconds: what a commit costs with no queue.",
        )
        base.add_metric([r], stats["admission_base_lag_ms"] / 1000)
        yield base
        loop = gauge(
            "reactmesh_edge_loop_lag_seconds",
            "How late the edge's event loop ran a timer, mean of the last admission interval with batches.",
        )
        loop.add_metric([r], stats["admission_loop_lag_ms"] / 1000)
        yield loop
        inbound = gauge(
            "reactmesh_edge_inbound_wait_seconds",
            "How much longer than its stream's quickest a batch took to be read, mean of the last interval.",
        )
        inbound.add_metric([r], stats["admission_inbound_ms"] / 1000)
        yield inbound
        backlog = gauge(
            "reactmesh_edge_ack_backlog", "Acks of forwarded batches queued for their clients, not yet written."
        )
        backlog.add_metric([r], stats["acks_unwritten"])
        yield backlog
        wait = gauge(
            "reactmesh_edge_ack_write_wait_seconds",
            "How long an ack waited for its write to the client, mean of the last admission interval.",
        )
        wait.add_metric([r], stats["admission_write_wait_ms"] / 1000)
        yield wait
        shed = counter("reactmesh_edge_shed_batches_total", "Batches refused by the adaptive in-flight limit.")
        shed.add_metric([r], stats["batches_shed"])
        yield shed
        viewers = gauge("reactmesh_edge_viewers_tracked", "Viewers with a rate-limit bucket.")
        viewers.add_metric([r], stats["viewers_tracked"])
        yield viewers
        flags = counter(
            "reactmesh_edge_abuse_flags_total",
            "Abuse flags raised by this edge, by kind (rate, low_entropy, sessions).",
            ("region", "kind"),
        )
        for kind in FlagKind:
            flags.add_metric([r, kind.value], stats[f"abuse_flags_raised_{kind.value}"])
        yield flags
        tracked = gauge("reactmesh_edge_abuse_viewers_tracked", "Viewers the abuse detector holds state for.")
        tracked.add_metric([r], stats["abuse_viewers_tracked"])
        yield tracked
        shadow = counter(
            "reactmesh_edge_shadow_muted_taps_total",
            "Taps of flagged viewers acked but neither forwarded nor counted (abuse.shadow_mute).",
        )
        shadow.add_metric([r], stats["taps_shadow_muted"])
        yield shadow
        per = self._edge.forwarder_statistics()
        labels = ("region", "aggregator")
        families = (
            (gauge("reactmesh_edge_forward_connected", "1 while the Forward stream is open.", labels), "connected"),
            (
                gauge("reactmesh_edge_forward_unacked_batches", "EdgeBatches sent and not yet acked.", labels),
                "unacked_batches",
            ),
            (
                gauge("reactmesh_edge_forward_pending_entries", "Entries queued for the next EdgeBatch.", labels),
                "pending_entries",
            ),
            (counter("reactmesh_edge_forward_batches_sent_total", "EdgeBatches sent.", labels), "batches_sent"),
            (
                counter("reactmesh_edge_forward_batches_resent_total", "EdgeBatches resent after a reconnect.", labels),
                "batches_resent",
            ),
            (
                counter("reactmesh_edge_forward_stream_failures_total", "Forward streams that failed.", labels),
                "stream_failures",
            ),
        )
        for family, key in families:
            for address, s in per.items():
                family.add_metric([r, address], s[key])
            yield family
