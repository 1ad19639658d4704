"""Prometheus metrics of one reactmesh process, collected at the components' seams, served at /metrics.

``NodeMetrics`` owns one ``CollectorRegistry`` per process (per ``Node``: tests run several in one
interpreter) with the process, platform and GC collectors (``region``-labelled, and ``reactmesh_build_info``:
metrics.process), the gRPC server interceptor's counters (metrics.grpc_server), and attaches to each role's seam:

- edge: an ``Edge.listeners`` entry (per batch: a few integer additions) plus ``statistics()``;
- aggregator: ``Aggregator.add_commit_listener`` (per commit) plus ``statistics()``;
- broadcaster: ``BroadcastHooks`` (per tick and per frame), a ``ReplicaState`` listener and a gossip
  lag observer (per merged delta), plus ``statistics()``;
- gossip: ``GossipNode.lag_observers`` (per merged delta) plus ``GossipNode.stats``; dialers' counters;
- tls: ``TLSStats`` (peers refused by the call guard and by dialers, reloads, certificate expiry).

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

from collections.abc import Iterable, Mapping, Sequence

from prometheus_client import CollectorRegistry

from reactmesh.edge.service import Edge
from reactmesh.merge.clock import Clock
from reactmesh.merge.gossip import GossipNode
from reactmesh.region_node.aggregator.core import Aggregator
from reactmesh.region_node.broadcaster.core import Broadcaster
from reactmesh.region_node.comments.book import CommentBook
from reactmesh.region_node.gateway.app import Gateway
from reactmesh.region_node.metrics.aggregator import AggregatorCollector
from reactmesh.region_node.metrics.broadcaster import BroadcasterCollector
from reactmesh.region_node.metrics.comments import CommentsCollector
from reactmesh.region_node.metrics.edge import EdgeCollector
from reactmesh.region_node.metrics.gateway import GatewayCollector
from reactmesh.region_node.metrics.gossip import GossipCollector
from reactmesh.region_node.metrics.grpc_server import GrpcServerMetrics
from reactmesh.region_node.metrics.history import HistoryCollector
from reactmesh.region_node.metrics.moderation import ModerationCollector
from reactmesh.region_node.metrics.process import ProcessMetrics
from reactmesh.region_node.metrics.server import MetricsServer
from reactmesh.region_node.metrics.tls import TLSCollector
from reactmesh.region_node.moderation.book import ModerationBook
from reactmesh.region_node.replication import Dialer
from reactmesh.region_node.state import RegionState
from reactmesh.region_node.tls import TLSStats
from reactmesh.region_node.windows.sealer import WindowWriter
from reactmesh.region_node.windows.sync import HistorySync


class NodeMetrics:
    """The metrics of one process: a registry, the role collectors, and the /metrics server."""

    def __init__(self, region: str, clock: Clock) -> None:
        self.region = region
        self.clock = clock
        self.registry = CollectorRegistry()
        self.registry.register(ProcessMetrics(region))
        self.grpc = GrpcServerMetrics(region)
        """``self.grpc.interceptor(role)`` goes first on every gRPC server of the node."""
        self.registry.register(self.grpc)
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

    def watch_history(self, state: RegionState, writer: WindowWriter, syncs: Sequence[HistorySync]) -> None:
        """Stored-history metrics of a broadcaster (``syncs`` is read at scrape time)."""
        self.registry.register(HistoryCollector(self.region, state, writer, syncs))

    def watch_moderation(self, book: ModerationBook) -> None:
        self.registry.register(ModerationCollector(self.region, book))

    def watch_comments(self, book: CommentBook) -> None:
        self.registry.register(CommentsCollector(self.region, book))

    def watch_gateway(self, gateway: Gateway) -> None:
        self.registry.register(GatewayCollector(self.region, gateway))

    def watch_tls(self, stats: TLSStats) -> None:
        self.registry.register(TLSCollector(self.region, stats))

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
