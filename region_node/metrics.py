"""Prometheus metrics of one reactmesh process, collected at the components' seams, served at /metrics.

``NodeMetrics`` owns one ``CollectorRegistry`` per process (per ``Node``: tests run several in one
interpreter) with the process, platform and GC collectors, and attaches to each role's seam:

- edge: an ``Edge.listeners`` entry (per batch: a few integer additions) plus ``statistics()``;
- aggregator: ``Aggregator.add_commit_listener`` (per commit) plus ``statistics()``;
- broadcaster: ``BroadcastHooks`` (per tick and per frame), a ``ReplicaState`` listener and a gossip
  lag observer (per merged delta), plus ``statistics()``;
- gossip: ``GossipNode.lag_observers`` (per merged delta) plus ``GossipNode.stats``; dialers' counters.

Counters kept by components are read at scrape time, on the event loop (the HTTP server is an
asyncio server in the node's loop, so no collector reads a structure another thread mutates).
Every series carries ``region``; names follow the Prometheus conventions (``reactmesh_`` prefix,
seconds and bytes, ``_total`` counters).

What the lag histograms measure, exactly (every time is a node clock's wall time, so lags across
hosts include their clock offset):

- ``reactmesh_aggregator_commit_lag_seconds``: per commit, committed_at minus the edge's
  ``accepted_at_ms`` of the commit's OLDEST entry, i.e. the longest wait of any entry in it.
- ``reactmesh_replication_delta_lag_seconds{origin_region}``: per merged gossip Delta, merged_at
  minus ``Delta.origin_time_ms``; ``origin_region`` is the sender's region (this node's own region
  for the hop aggregator -> broadcaster).
- ``reactmesh_broadcast_frame_lag_seconds{origin_region}``: per broadcast frame of a stream whose
  totals grew since its previous frame, frame ``server_time_ms`` minus the ``origin_time_ms`` of
  the OLDEST Delta that grew it, i.e. until the growth starts to show (the smoother may spread it
  over later frames). The gossip sender stamps ``origin_time_ms`` when it ships a committed change,
  so tap -> frame = commit lag + frame lag, both of which are exported; for growth relayed by
  another region's broadcaster the stamp is the relay's.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from reactmesh.edge.service import Edge
from reactmesh.merge.clock import Clock
from reactmesh.merge.gossip import GossipNode
from reactmesh.merge.keyed import Key, KeyedGCounter
from reactmesh.region_node.aggregator import Aggregator, CommitFacts
from reactmesh.region_node.broadcaster import Broadcaster, BroadcastHooks
from reactmesh.region_node.replication import Dialer
from reactmesh.region_node.state import TOTALS
from reactmesh.v1 import ingest_pb2

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Lags along the tap path: the target is 0.25 s end to end, ticks are 0.1 s."""
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Work inside one tick: an SQLite commit (fsync) or a broadcaster tick."""
ENTRIES_BUCKETS = (1, 10, 100, 1_000, 10_000, 100_000)

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


def _counter(name: str, doc: str, labels: Sequence[str] = ("region",)) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


def _gauge(name: str, doc: str, labels: Sequence[str] = ("region",)) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


class HistogramChild:
    """One labelled series of a Histogram; ``observe`` is a bisect and two additions."""

    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        self.counts[bisect_left(self._bounds, amount)] += 1
        self.sum += amount


class Histogram:
    """A histogram family observed on the event loop (no locks, no ``_created`` series)."""

    def __init__(self, name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]) -> None:
        self.name = name
        self.doc = doc
        self.labels = tuple(labels)
        self.bounds = tuple(float(b) for b in buckets)
        self._les = [*(repr(b) for b in self.bounds), "+Inf"]
        self._children: dict[tuple[str, ...], HistogramChild] = {}

    def child(self, *values: str) -> HistogramChild:
        """The series of these label values, created (at zero) on first use."""
        series = self._children.get(values)
        if series is None:
            if len(values) != len(self.labels):
                raise ValueError(f"{self.name}: expected labels {self.labels}, got {values}")
            series = self._children[values] = HistogramChild(self.bounds)
        return series

    def family(self) -> HistogramMetricFamily:
        out = HistogramMetricFamily(self.name, self.doc, labels=list(self.labels))
        for values, series in self._children.items():
            running = 0
            buckets: list[tuple[str, float]] = []
            for le, n in zip(self._les, series.counts, strict=True):
                running += n
                buckets.append((le, running))
            out.add_metric(list(values), buckets, series.sum)
        return out


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
        batches = _counter(
            "reactmesh_ingest_batches_total",
            "Client batches decided by the edge, by outcome; reason is set for rejected batches.",
            ("region", "outcome", "reason"),
        )
        for outcome, count in zip(_UNREJECTED, self._batches, strict=True):
            batches.add_metric([r, outcome, ""], count)
        for reason, count in zip(REJECT_REASONS, self._rejected, strict=True):
            batches.add_metric([r, "rejected", reason], count)
        yield batches
        taps = _counter(
            "reactmesh_ingest_taps_total",
            "Taps of acknowledged batches: counted (accepted) or dropped by the per-viewer rate limit.",
            ("region", "outcome"),
        )
        taps.add_metric([r, "accepted"], self._taps_accepted)
        taps.add_metric([r, "rate_limited"], self._taps_rate_limited)
        yield taps
        stats = self._edge.statistics()
        inflight = _gauge("reactmesh_edge_inflight_batches", "Batches forwarded to aggregators and not yet acked.")
        inflight.add_metric([r], stats["inflight"])
        yield inflight
        viewers = _gauge("reactmesh_edge_viewers_tracked", "Viewers with a rate-limit bucket.")
        viewers.add_metric([r], stats["viewers_tracked"])
        yield viewers
        per = self._edge.forwarder_statistics()
        labels = ("region", "aggregator")
        families = (
            (_gauge("reactmesh_edge_forward_connected", "1 while the Forward stream is open.", labels), "connected"),
            (
                _gauge("reactmesh_edge_forward_unacked_batches", "EdgeBatches sent and not yet acked.", labels),
                "unacked_batches",
            ),
            (
                _gauge("reactmesh_edge_forward_pending_entries", "Entries queued for the next EdgeBatch.", labels),
                "pending_entries",
            ),
            (_counter("reactmesh_edge_forward_batches_sent_total", "EdgeBatches sent.", labels), "batches_sent"),
            (
                _counter(
                    "reactmesh_edge_forward_batches_resent_total", "EdgeBatches resent after a reconnect.", labels
                ),
                "batches_resent",
            ),
            (
                _counter("reactmesh_edge_forward_stream_failures_total", "Forward streams that failed.", labels),
                "stream_failures",
            ),
        )
        for family, key in families:
            for address, s in per.items():
                family.add_metric([r, address], s[key])
            yield family


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
        entries = _counter("reactmesh_aggregator_entries_total", "Forwarded entries by outcome.", ("region", "outcome"))
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
            c = _counter(name, doc)
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
            g = _gauge(name, doc)
            g.add_metric([r], s[key])
            yield g


class BroadcasterCollector(BroadcastHooks):
    """Tick duration and frame lag (hooks), subscribers, frames and queue depths (``statistics()``).

    Give it to the ``Broadcaster`` as ``hooks`` and then ``bind`` it; hooks before ``bind`` are ignored.
    """

    def __init__(self, region: str, clock: Clock) -> None:
        self._region = region
        self._clock = clock
        self._broadcaster: Broadcaster | None = None
        self._tick_histogram = Histogram(
            "reactmesh_broadcast_tick_duration_seconds",
            "Time of one broadcaster tick (smoothing and fan-out of every active stream).",
            ["region"],
            DURATION_BUCKETS,
        )
        self._tick = self._tick_histogram.child(region)
        self._frame_lag = Histogram(
            "reactmesh_broadcast_frame_lag_seconds",
            "Origin of the oldest delta that grew a stream's totals -> the stream's next broadcast frame.",
            ["region", "origin_region"],
            LATENCY_BUCKETS,
        )
        self._frame_lag_by_origin: dict[str, HistogramChild] = {}
        # Streams whose totals grew in the delta being merged, stamped by the lag observer that follows.
        self._fresh: set[str] = set()
        # stream -> (origin_time_ms, origin_region) of the oldest growth not yet in a frame.
        self._waiting: dict[str, tuple[int, str]] = {}

    def bind(self, broadcaster: Broadcaster, gossip: GossipNode) -> None:
        self._broadcaster = broadcaster
        gossip.state.add_listener(self._on_merge)
        gossip.lag_observers.append(self._on_delta)

    def _on_merge(self, collection: str, state: KeyedGCounter, grown: list[Key]) -> None:
        if collection == TOTALS:
            fresh = self._fresh
            for key in grown:
                fresh.add(key[0])  # type: ignore[arg-type]

    def _on_delta(self, origin_region: str, lag_ms: int) -> None:
        if not self._fresh:
            return
        stamp = (self._clock.wall_ms() - lag_ms, origin_region)
        waiting = self._waiting
        for stream_id in self._fresh:
            if stream_id not in waiting:
                waiting[stream_id] = stamp
        self._fresh.clear()

    def on_tick(self, frames: int, coalesced: int, seconds: float) -> None:
        if self._broadcaster is not None:
            self._tick.observe(seconds)

    def on_frame(self, stream_id: str, counts: Mapping[str, int], server_time_ms: int) -> None:
        stamp = self._waiting.pop(stream_id, None)
        if stamp is None or not counts:
            return
        origin_ms, origin_region = stamp
        child = self._frame_lag_by_origin.get(origin_region)
        if child is None:
            child = self._frame_lag_by_origin[origin_region] = self._frame_lag.child(self._region, origin_region)
        child.observe(max(0, server_time_ms - origin_ms) / 1000)

    def collect(self) -> Iterator[Metric]:
        if self._broadcaster is None:
            return
        yield self._tick_histogram.family()
        yield self._frame_lag.family()
        r = self._region
        s = self._broadcaster.statistics()
        for name, doc, value in (
            ("reactmesh_broadcast_subscribers", "Open subscriptions.", s.subscribers),
            ("reactmesh_broadcast_streams", "Streams known to the broadcaster.", s.streams),
            (
                "reactmesh_broadcast_degrade_level",
                "0 normal, 1 top-K emojis, 2 top-K and half frame rate.",
                s.degrade_level,
            ),
            (
                "reactmesh_broadcast_subscriber_queue_depth_max",
                "Frames queued for the slowest subscriber.",
                s.queue_depth_max,
            ),
            (
                "reactmesh_broadcast_subscriber_queue_depth_high_water",
                "Deepest subscriber queue since start, frames.",
                s.queue_depth_high_water,
            ),
        ):
            g = _gauge(name, doc)
            g.add_metric([r], value)
            yield g
        for name, doc, value in (
            ("reactmesh_broadcast_ticks_total", "Broadcaster ticks.", s.ticks),
            ("reactmesh_broadcast_ticks_skipped_total", "Ticks skipped at degrade level 2.", s.ticks_skipped),
            (
                "reactmesh_broadcast_frames_emitted_total",
                "Frames produced (one per stream per tick).",
                s.frames_emitted,
            ),
            ("reactmesh_broadcast_frames_sent_total", "Frames handed to subscribers.", s.frames_sent),
            (
                "reactmesh_broadcast_frames_coalesced_total",
                "Frames merged into a full subscriber queue instead of queued.",
                s.frames_coalesced,
            ),
            ("reactmesh_broadcast_frames_serialized_total", "Frame serializations.", s.frames_serialized),
            ("reactmesh_broadcast_snapshots_sent_total", "SNAPSHOT frames given to new subscribers.", s.snapshots_sent),
            ("reactmesh_broadcast_resumes_total", "Subscribers resumed from the frame buffer.", s.resumes_replayed),
        ):
            c = _counter(name, doc)
            c.add_metric([r], value)
            yield c


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
            c = _counter(name, doc, role_labels)
            for node in self._nodes:
                c.add_metric([r, node.role], getattr(node.stats, attr))
            yield c
        origin_labels = ("region", "origin_region")
        lag = _gauge(
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
        last = _gauge(
            "reactmesh_replication_last_delta_timestamp_seconds",
            "Unix time when a delta from each origin region was last merged.",
            origin_labels,
        )
        for origin, ms in sorted(self._last_delta_ms.items()):
            last.add_metric([r, origin], ms / 1000)
        yield last
        attempts = _counter(
            "reactmesh_gossip_dial_attempts_total",
            "Gossip sessions dialled to each configured peer; steady growth means it is unreachable.",
            ("region", "peer"),
        )
        for dialers in self._dialers:
            for d in dialers:
                attempts.add_metric([r, d.address], d.connects)
        yield attempts


class MetricsServer:
    """A minimal HTTP/1.1 server of ``GET /metrics`` on the event loop (one request per connection)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self.address = ""

    async def start(self, listen: str) -> str:
        """Listen on "host:port" (port 0 picks one); return the bound "host:port"."""
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        self._server = await asyncio.start_server(self._handle, host, int(port), limit=16 * 1024)
        bound = int(self._server.sockets[0].getsockname()[1])
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        self.address = f"[{shown}]:{bound}" if ":" in shown else f"{shown}:{bound}"
        return self.address

    async def close(self) -> None:
        """Stop listening and end connections in progress."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        for task in list(self._handlers):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._server.wait_closed()
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                return
            status, headers, body, send_body = self._respond(head)
            lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers), f"Content-Length: {len(body)}"]
            writer.write(("\r\n".join([*lines, "Connection: close", "", ""])).encode("latin-1"))
            if send_body:
                writer.write(body)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _respond(self, head: bytes) -> tuple[str, list[tuple[str, str]], bytes, bool]:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            return "400 Bad Request", [("Content-Type", "text/plain")], b"bad request line\n", True
        method, target, _ = parts
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        text = [("Content-Type", "text/plain; charset=utf-8")]
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", [*text, ("Allow", "GET, HEAD")], b"GET /metrics\n", True
        path = target.split("?", 1)[0]
        if path == "/":
            return "200 OK", text, b"reactmesh: metrics at /metrics\n", method == "GET"
        if path != "/metrics":
            return "404 Not Found", text, b"not found; metrics are at /metrics\n", method == "GET"
        encoder, content_type = choose_encoder(fields.get("accept", ""))
        try:
            body = encoder(self._registry)
        except Exception:
            log.exception("collecting metrics failed")
            return "500 Internal Server Error", text, b"collecting metrics failed\n", method == "GET"
        headers = [("Content-Type", content_type)]
        if "gzip" in fields.get("accept-encoding", ""):
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        return "200 OK", headers, body, method == "GET"


class NodeMetrics:
    """The metrics of one process: a registry, the role collectors, and the /metrics server."""

    def __init__(self, region: str, clock: Clock) -> None:
        self.region = region
        self.clock = clock
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.broadcast_hooks = BroadcasterCollector(region, clock)
        """Pass as the Broadcaster's ``hooks``; ``watch_broadcaster`` binds it."""
        self._gossip: GossipCollector | None = None
        self._server: MetricsServer | None = None

    def _gossip_collector(self) -> GossipCollector:
        if self._gossip is None:
            self._gossip = GossipCollector(self.region, self.clock)
            self.registry.register(self._gossip)
        return self._gossip

    def watch_edge(self, edge: Edge) -> None:
        self.registry.register(EdgeCollector(self.region, edge))

    def watch_aggregator(self, aggregator: Aggregator, gossip: GossipNode) -> None:
        self.registry.register(AggregatorCollector(self.region, aggregator))
        self._gossip_collector().add(gossip)

    def watch_broadcaster(self, broadcaster: Broadcaster, gossip: GossipNode, dialers: Sequence[Dialer]) -> None:
        """``broadcaster`` must have been built with ``hooks=self.broadcast_hooks`` over ``gossip.state``."""
        self.broadcast_hooks.bind(broadcaster, gossip)
        self.registry.register(self.broadcast_hooks)
        self._gossip_collector().add(gossip, dialers)

    async def serve(self, listen: str) -> str:
        """Serve /metrics on "host:port"; return the bound address."""
        if self._server is not None:
            raise RuntimeError("metrics already served")
        self._server = MetricsServer(self.registry)
        return await self._server.start(listen)

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()
            self._server = None

    def samples(self) -> Iterable[tuple[str, Mapping[str, str], float]]:
        """Every sample now, as (name, labels, value): for tests and debugging."""
        for family in self.registry.collect():
            for s in family.samples:
                yield s.name, s.labels, s.value
