"""One reactmesh process running one or more roles (edge, aggregator, broadcaster, gateway).

Each role gets its own gRPC server on its configured address, with grpc.health.v1 and server
reflection, exactly as when Kubernetes runs one role per pod; ``--target=all`` simply runs the
three in one asyncio loop. With a ``[tls]`` section every listener serves TLS and every node-to-node
channel presents the node's certificate (``region_node.tls``). Start order is aggregator, broadcaster,
edge (so an edge finds its aggregators), gateway (HTTP, not gRPC: a client of the edge and the broadcaster);
stop order is the reverse of the data path: the gateway closes its sockets, the edge stops accepting and flushes
what is in flight, the aggregator commits a last tick and acks, then the broadcaster stops.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from reactmesh.edge.auth import AuthConfig, Authorizer
from reactmesh.edge.errors import RejectingUndecodable
from reactmesh.edge.service import Edge
from reactmesh.merge.clock import Clock, SystemClock
from reactmesh.merge.gossip import GossipNode
from reactmesh.merge.polls import PollSet
from reactmesh.merge.replica import ReplicaState
from reactmesh.region_node.aggregator.core import Aggregator
from reactmesh.region_node.aggregator.service import AggregatorService
from reactmesh.region_node.aggregator.store import Store
from reactmesh.region_node.broadcaster.core import Broadcaster
from reactmesh.region_node.broadcaster.service import BroadcastService
from reactmesh.region_node.comments.service import CommentsServicer, attach_comments
from reactmesh.region_node.config import ROLES, BroadcasterSection, NodeConfig
from reactmesh.region_node.gateway.app import Gateway
from reactmesh.region_node.metrics.node import NodeMetrics
from reactmesh.region_node.moderation.book import open_moderation
from reactmesh.region_node.moderation.service import AdminServicer
from reactmesh.region_node.polls.service import PollsServicer, attach_polls
from reactmesh.region_node.query import QueryServicer
from reactmesh.region_node.replication import Dialer, GossipServicer
from reactmesh.region_node.state import (
    DRAINS,
    FLAGS,
    MUTES,
    POLLS,
    RegionGossipNode,
    RegionState,
    comment_collections,
)
from reactmesh.region_node.tls import NodeTLS, PeerCertificateGuard
from reactmesh.region_node.windows.digests import HistoryReader
from reactmesh.region_node.windows.sealer import SEAL_EVERY_S, SealedBefore, WindowWriter, seal_windows
from reactmesh.region_node.windows.sync import HistorySync

log = logging.getLogger(__name__)

SERVER_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 4_000),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 4_000),
    ("grpc.keepalive_permit_without_calls", 1),
)

STEP_FLOOR_S = 0.5
"""The least time ``Node.stop`` gives each step, however late, so that the stores of the last steps still close."""

# Gossip links are long-lived and mostly idle between deltas: without client pings a silently
# dropped link is noticed only by TCP retransmission timeouts, which grow with the outage (a 30 s
# partition healed in ~25 s); with pings every 5 s it is noticed within ~8 s and redialled.
GOSSIP_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.keepalive_time_ms", 5_000),
    ("grpc.keepalive_timeout_ms", 3_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)


def _awaiting(task: asyncio.Task[Any]) -> str:
    """``task``'s name and the chain of coroutines it is suspended in, innermost last."""
    chain = []
    coro: Any = task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        chain.append(f"{getattr(coro, '__qualname__', type(coro).__name__)}:{frame.f_lineno if frame else '-'}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
    return f"  {task.get_name()}: {' -> '.join(chain)}"


class BindError(OSError):
    """Raised by ``Node.start`` when a role's server cannot listen on its configured address."""

    def __init__(self, role: str, listen: str) -> None:
        self.role = role
        self.listen = listen
        super().__init__(f"{role} cannot listen on {listen}: {_why_not_bindable(listen)}")


def _why_not_bindable(listen: str) -> str:
    """Why ``listen`` cannot be bound, as the OS says it (grpc's own error names no cause)."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:
        return f"not a usable host:port ({exc})"
    family, kind, proto, _, address = infos[0]
    try:
        with socket.socket(family, kind, proto) as probe:
            probe.bind(address)
    except OSError as exc:
        hint = " (is another reactmesh running?)" if exc.errno == errno.EADDRINUSE else ""
        return f"{exc.strerror or exc}{hint}"
    return "grpc could not bind it"


class Servicer(Protocol):
    """How every role's gRPC service is registered: its full name (for health and reflection) and a hook."""

    SERVICE_NAME: str

    # ``server`` is a grpc.aio.Server, or the stand-in that registers on one (``RejectingUndecodable``).
    def add_to_server(self, server: Any) -> object: ...


@dataclass
class _RoleServer:
    role: str
    server: grpc.aio.Server
    address: str
    health: health_aio.HealthServicer
    services: list[str] = field(default_factory=list)


class Node:
    """The roles of one process. ``addresses`` holds each role's bound "host:port", and "metrics" when served."""

    def __init__(self, config: NodeConfig, targets: frozenset[str], clock: Clock | None = None) -> None:
        unknown = targets - set(ROLES)
        if unknown:
            raise ValueError(f"unknown targets: {', '.join(sorted(unknown))}")
        config.require(targets)
        self.config = config
        self.targets = targets
        self.clock = clock or SystemClock()
        # Client tokens, one policy for every client-facing role here; aggregators serve nodes only.
        client_facing = bool(targets & {"edge", "broadcaster", "gateway"})
        self.authorizer = Authorizer(config.auth if client_facing else AuthConfig(), self.clock)
        if client_facing and not self.authorizer.enabled:
            log.warning("client auth is off ([auth] enabled = false): every client call is anonymous")
        self.addresses: dict[str, str] = {}
        self.aggregator: Aggregator | None = None
        self.aggregator_gossip: GossipNode | None = None
        self.broadcaster: Broadcaster | None = None
        self.broadcaster_gossip: GossipNode | None = None
        self.replica: RegionState | None = None
        self.edge: Edge | None = None
        self.gateway: Gateway | None = None
        self.polls: PollsServicer | None = None
        self.comments: CommentsServicer | None = None
        self.admin: AdminServicer | None = None
        self.dialers: list[Dialer] = []
        self.edge_gossip: GossipNode | None = None
        self.edge_dialers: list[Dialer] = []
        self.history_store: Store | None = None
        self.window_writer: WindowWriter | None = None
        self.history_syncs: list[HistorySync] = []
        self._readers: list[HistoryReader] = []
        self.tls = NodeTLS.load(config.tls) if config.tls is not None else None
        self.metrics = NodeMetrics(config.region, self.clock) if config.metrics_listen is not None else None
        if self.metrics is not None and self.tls is not None:
            self.metrics.watch_tls(self.tls.stats)
        self._servers: dict[str, _RoleServer] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def _serve(self, role: str, listen: str, servicers: list[Servicer], *, peers: bool = False) -> _RoleServer:
        """Serve ``servicers`` on ``listen``; ``peers``: a node-to-node listener (client certificates required
        when TLS says so)."""
        tls = self.tls
        guard = tls is not None and tls.config.require_client_cert
        interceptors: list[grpc.aio.ServerInterceptor] = []
        if self.metrics is not None:
            interceptors.append(self.metrics.grpc.interceptor(role))  # first: it sees refused calls too
        if guard and tls is not None:
            interceptors.append(PeerCertificateGuard(tls.stats, role))
        server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=interceptors)
        for servicer in servicers:
            servicer.add_to_server(RejectingUndecodable(server))
        services = [s.SERVICE_NAME for s in servicers]
        health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        names = [*services, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, server)
        try:
            if tls is not None:
                port = server.add_secure_port(listen, tls.server.credentials(require_client_cert=guard and peers))
            else:
                port = server.add_insecure_port(listen)
        except RuntimeError:  # grpc's "Failed to bind to address ..."
            port = 0
        if port == 0:
            raise BindError(role, listen)
        host = listen.rsplit(":", 1)[0]
        if host in ("0.0.0.0", "[::]", "::"):
            host = "127.0.0.1"
        address = f"{host}:{port}"
        await server.start()
        for name in ("", *services):
            await health.set(name, health_pb2.HealthCheckResponse.SERVING)
        rs = _RoleServer(role, server, address, health, services)
        self._servers[role] = rs
        self.addresses[role] = address
        log.info("%s serving on %s%s", role, address, "" if tls is None else " (mTLS)" if guard and peers else " (TLS)")
        return rs

    async def start(self) -> None:
        cfg = self.config
        if "aggregator" in self.targets and cfg.aggregator is not None:
            agg = Aggregator(cfg.aggregator.config, self.clock)
            await agg.start()
            self.aggregator = agg
            gossip = RegionGossipNode(agg.config.node_id, cfg.region, "aggregator", agg.state, self.clock, cfg.gossip)
            self.aggregator_gossip = gossip
            if self.metrics is not None:
                self.metrics.watch_aggregator(agg, gossip)
            reader = HistoryReader(agg.config.db_path)
            self._readers.append(reader)
            await self._serve(
                "aggregator",
                cfg.aggregator.listen,
                [AggregatorService(agg), GossipServicer(gossip, reader)],
                peers=True,
            )
            self._tasks.append(asyncio.create_task(agg.run(), name="aggregator-ticks"))
        if "broadcaster" in self.targets and cfg.broadcaster is not None:
            section = cfg.broadcaster
            self.replica = RegionState(extra={POLLS: PollSet(), **comment_collections()})
            hooks = self.metrics.broadcast_hooks if self.metrics is not None else None
            bc = Broadcaster(section.config, self.clock, self.replica, hooks=hooks)
            self.broadcaster = bc
            gossip = RegionGossipNode(section.node_id, cfg.region, "broadcaster", self.replica, self.clock, cfg.gossip)
            self.broadcaster_gossip = gossip
            self.polls = await attach_polls(
                self.replica, bc, self.clock, section.node_id, section.polls_db_path, section.polls, self.authorizer
            )
            self.comments = await attach_comments(
                self.replica,
                self.clock,
                section.node_id,
                section.comments_db_path,
                section.comments,
                self.authorizer,
            )
            book = await open_moderation(
                self.replica, self.clock, section.node_id, section.moderation_db_path, drains_to=bc
            )
            self.admin = AdminServicer(book, self.clock, self.authorizer)
            bc.set_drain_lookup(book.drained_at)
            if self.metrics is not None:
                self.metrics.watch_moderation(book)
                self.metrics.watch_comments(self.comments.book)
                self.metrics.watch_broadcaster(bc, gossip, self.dialers)
            query, history = await self._history(section)
            await self._serve(
                "broadcaster",
                section.listen,
                [
                    BroadcastService(bc, self.authorizer),
                    query,
                    self.polls,
                    self.comments,
                    self.admin,
                    GossipServicer(gossip, history),
                ],
            )
            if section.peer_listen is not None:
                await self._serve(
                    "broadcaster-peers", section.peer_listen, [GossipServicer(gossip, history)], peers=True
                )
            tls = self.tls.client if self.tls is not None else None
            for address in (*section.sources, *section.peers):
                dialer = Dialer(gossip, address, self.clock, channel_options=GOSSIP_CHANNEL_OPTIONS, tls=tls)
                dialer.start()
                self.dialers.append(dialer)
            if self.window_writer is not None:
                self._tasks.append(asyncio.create_task(self.window_writer.run(), name="history-writer"))
            for sync in self.history_syncs:
                self._tasks.append(asyncio.create_task(sync.run(), name=f"history-sync-{sync.address}"))
            self._tasks.append(asyncio.create_task(bc.run(), name="broadcaster-ticks"))
        if "edge" in self.targets and cfg.edge is not None:
            if self.tls is not None:
                edge = Edge(
                    cfg.edge.config,
                    self.clock,
                    authorizer=self.authorizer,
                    channel_factory=self.tls.client.reloading_channel,
                    node_id=cfg.edge.node_id,
                )
            else:
                edge = Edge(cfg.edge.config, self.clock, authorizer=self.authorizer, node_id=cfg.edge.node_id)
            await edge.start()
            self.edge = edge
            self._edge_gossip(edge, cfg.edge.node_id)
            if self.metrics is not None:
                self.metrics.watch_edge(edge)
            await self._serve("edge", cfg.edge.listen, [edge])
        if "gateway" in self.targets and cfg.gateway is not None:
            factory = self.tls.client.reloading_channel if self.tls is not None else None
            gateway = Gateway(cfg.gateway, self.authorizer, channel_factory=factory)
            self.gateway = gateway
            if self.metrics is not None:
                self.metrics.watch_gateway(gateway)
            try:
                self.addresses["gateway"] = await gateway.start()
            except OSError as exc:
                raise BindError("gateway", cfg.gateway.listen) from exc
            log.info("gateway serving on http://%s/overlay", self.addresses["gateway"])
        if self.metrics is not None and cfg.metrics_listen is not None:
            self.addresses["metrics"] = await self.metrics.serve(cfg.metrics_listen)
            log.info("metrics serving on http://%s/metrics", self.addresses["metrics"])

    def _edge_gossip(self, edge: Edge, node_id: str) -> None:
        """The edge's moderation, kept current by gossip with every aggregator of its ring (mutes and drains in,
        abuse flags out; ``region_node.state.region_route``)."""
        m = edge.moderation
        state = ReplicaState({MUTES: m.mutes, DRAINS: m.drains, FLAGS: m.flags})
        gossip = RegionGossipNode(node_id, self.config.region, "edge", state, self.clock, self.config.gossip)
        self.edge_gossip = gossip
        tls = self.tls.client if self.tls is not None else None
        for address in edge.config.aggregators:
            dialer = Dialer(gossip, address, self.clock, channel_options=GOSSIP_CHANNEL_OPTIONS, tls=tls)
            dialer.start()
            self.edge_dialers.append(dialer)

    async def _history(self, section: BroadcasterSection) -> tuple[QueryServicer, HistoryReader | None]:
        """The broadcaster's stored history (when ``history_db_path`` is set): a Store its windows are written
        through to, its reader, the repair from every source and peer, and the Query service over both."""
        assert self.replica is not None
        if section.history_db_path is None:
            # No disk: open windows only; sealed ones just leave memory.
            query = QueryServicer(self.replica, self.clock, authorizer=self.authorizer)
            line = SealedBefore(self.clock, section.window_horizon_s)
            self._tasks.append(asyncio.create_task(self._seal_only(line, query), name="history-seal"))
            return query, None
        store = await Store.open(section.history_db_path, synchronous="NORMAL")
        self.history_store = store
        writer = WindowWriter(
            self.replica,
            store,
            self.clock,
            horizon_s=section.window_horizon_s,
            retention_s=section.window_retention_s,
        )
        self.window_writer = writer
        reader = HistoryReader(section.history_db_path)
        self._readers.append(reader)
        query = QueryServicer(
            self.replica, self.clock, reader, lambda: writer.sealed_before_s, authorizer=self.authorizer
        )
        writer.add_seal_listener(query.forget_windows_before)
        if self.broadcaster is not None:
            self.broadcaster.set_totals_loader(reader.stored_totals)
            self.broadcaster.add_evict_listener(query.forget_streams)
        if self.metrics is not None:
            self.metrics.watch_history(self.replica, writer, self.history_syncs)
        for address in (*section.sources, *section.peers):
            self.history_syncs.append(
                HistorySync(
                    address,
                    store,
                    reader,
                    writer.line,
                    self.clock,
                    retention_s=section.window_retention_s,
                    config=section.history,
                    channel_options=GOSSIP_CHANNEL_OPTIONS,
                    own_generation=store.node_generation(),
                    tls=self.tls.client if self.tls is not None else None,
                )
            )
        return query, reader

    async def _seal_only(self, line: SealedBefore, query: QueryServicer) -> None:
        assert self.replica is not None
        while True:
            await self.clock.sleep(SEAL_EVERY_S)
            before = line.advance()
            seal_windows(self.replica.windows, before)
            query.forget_windows_before(before)

    async def stop(self, grace: float = 5.0) -> None:
        """Graceful stop within about ``grace`` seconds: edge (stop accepting, flush), aggregator (last commit),
        broadcaster. Each step gets what is left of ``grace`` (at least ``STEP_FLOOR_S``); one that does not
        finish in it is abandoned with a warning, and one that fails is logged, so the later steps still run
        and every store is closed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace

        async def step(what: str, action: Awaitable[object]) -> None:
            task = asyncio.ensure_future(action)
            timeout = max(deadline - loop.time(), STEP_FLOOR_S)
            done, _ = await asyncio.wait((task,), timeout=timeout)
            if not done:
                log.warning(
                    "stop: %s did not finish within %.1f s; abandoned. Tasks still running:\n%s",
                    what,
                    timeout,
                    "\n".join(_awaiting(t) for t in asyncio.all_tasks() if t is not asyncio.current_task()),
                )
                task.cancel()
            elif not task.cancelled() and task.exception() is not None:
                log.warning("stop: %s failed: %r", what, task.exception())

        if self.gateway is not None:
            await step("gateway", self.gateway.close(min(grace / 4, 2.0)))
        for role in ("edge", "aggregator", "broadcaster", "broadcaster-peers"):
            rs = self._servers.get(role)
            if rs is not None:
                await step(f"{role} health", rs.health.enter_graceful_shutdown())
        # Client, Forward, Gossip and Subscribe streams never end by themselves: each component first
        # ends its own streams (the edge after the acks of what is in flight, the aggregator after a
        # last commit), then the server gets a short grace for what remains.
        linger = min(grace, 1.0)
        servers = self._servers
        if self.edge is not None:
            await step("edge flush", self.edge.close(grace / 2))
        if "edge" in servers:
            await step("edge server", servers["edge"].server.stop(linger))
        if self.edge_dialers:
            await step("edge gossip", asyncio.gather(*(d.close() for d in self.edge_dialers)))
        if self.aggregator is not None:
            await step("aggregator last commit", self.aggregator.close())
        if "aggregator" in servers:
            await step("aggregator server", servers["aggregator"].server.stop(linger))
        if self.dialers:
            await step("gossip dialers", asyncio.gather(*(d.close() for d in self.dialers)))
        if self.polls is not None:
            await step("polls", self.polls.close())
        if self.comments is not None:
            await step("comments", self.comments.close())
        if self.admin is not None:
            await step("moderation", self.admin.close())
        if self.broadcaster is not None:
            await step("broadcaster", self.broadcaster.close())
        if "broadcaster" in servers:
            await step("broadcaster server", servers["broadcaster"].server.stop(linger))
        if "broadcaster-peers" in servers:
            await step("broadcaster peer server", servers["broadcaster-peers"].server.stop(linger))
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await step("role tasks", asyncio.gather(*self._tasks, return_exceptions=True))
        if self.window_writer is not None:
            await step("history writer", self.window_writer.close())
        if self.history_store is not None:
            await step("history store", self.history_store.close())
        if self._readers:
            await step("history readers", asyncio.gather(*(r.close() for r in self._readers)))
        if self.metrics is not None:
            await step("metrics", self.metrics.close())

    def statistics(self) -> dict[str, Any]:
        out: dict[str, Any] = {"addresses": dict(self.addresses)}
        if self.edge is not None:
            out["edge"] = self.edge.statistics()
        if self.gateway is not None:
            out["gateway"] = self.gateway.statistics()
        if self.aggregator is not None:
            out["aggregator"] = self.aggregator.statistics()
        if self.broadcaster is not None:
            out["broadcaster"] = self.broadcaster.statistics()
        if self.polls is not None:
            out["polls"] = self.polls.book.statistics()
        if self.comments is not None:
            out["comments"] = self.comments.book.statistics()
            out["comment_delivery"] = self.comments.book.hub.statistics()
        if self.admin is not None:
            out["moderation"] = self.admin.book.statistics()
        for name, g in (("aggregator_gossip", self.aggregator_gossip), ("broadcaster_gossip", self.broadcaster_gossip)):
            if g is not None:
                out[name] = {
                    "deltas_sent": g.stats.deltas_sent,
                    "bytes_sent": g.stats.bytes_sent,
                    "deltas_received": g.stats.deltas_received,
                    "lag_ms": dict(g.stats.lag_ms),
                }
        return out
