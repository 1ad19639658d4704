"""The gossip protocol: per-peer acknowledged delta propagation over one bidirectional stream.

A session runs over any transport with ``read()``/``write()`` of ``GossipMessage`` (a grpc.aio
call on the dialling side, the servicer context on the other). The dialler sends Hello first, the
listener answers with its own. Then each side that should send to the other (its ``route``) streams
``Delta`` messages holding every change of its ReplicaState the peer has not acknowledged, at most
``max_keys_per_delta`` keys per collection each and at most ``max_inflight_deltas`` unacknowledged;
the receiver merges and answers ``DeltaAck``.

The application decides, by collection name, what flows where: ``route`` (which collections a node
of one role sends a node of another; everything by default), ``GossipConfig.digest_collections``
(which ones anti-entropy digests cover; none by default) and ``origin_collection`` (whose growth
stamps a Delta with its origin commit time and region, for replication lag; none by default).

Acknowledgements are remembered per peer node and incarnation: a peer that reconnects with the
same incarnation resumes from what it acknowledged; a restarted peer (new incarnation) gets full
state again, in the same bounded messages. Every payload is a join, so duplicated, reordered or
replayed messages change nothing; a peer that sends a message we cannot decode ends its session
with ProtocolError and nothing of that message is merged.
"""

from __future__ import annotations

import asyncio
import random
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from reactmesh.merge import digest
from reactmesh.merge.checks import int_at_least, int_in, is_number, number_in
from reactmesh.merge.clock import Clock
from reactmesh.merge.errors import ConfigError, DecodeError, MergeError
from reactmesh.merge.replica import ReplicaState
from reactmesh.v1 import gossip_pb2


class ProtocolError(MergeError):
    """Raised when a peer breaks the gossip protocol: no Hello first, or an undecodable payload."""


class SelfSession(ProtocolError):
    """Raised when a session's peer is this very node (a peer list that names the node itself, as a list of
    every broadcaster of a region does): nothing is exchanged."""


class Transport(Protocol):
    async def read(self) -> object: ...

    async def write(self, message: gossip_pb2.GossipMessage) -> None: ...


@dataclass(frozen=True)
class GossipConfig:
    """Bounds of one gossip session; every bound is per peer."""

    max_keys_per_delta: int = 2000
    max_inflight_deltas: int = 8
    poll_interval_s: float = 0.01
    # Anti-entropy: every digest_interval_s (0 disables) a receiver sends bucket digests of these
    # collections; the sender answers every differing bucket with its state for that bucket.
    digest_interval_s: float = 15.0
    digest_buckets: int = 64
    digest_collections: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        int_at_least("gossip.max_keys_per_delta", self.max_keys_per_delta, 1)
        int_at_least("gossip.max_inflight_deltas", self.max_inflight_deltas, 1)
        number_in("gossip.poll_interval_s", self.poll_interval_s, 0, 1, low_open=True, unit="seconds")
        if not is_number(self.digest_interval_s) or self.digest_interval_s < 0:
            raise ConfigError("gossip.digest_interval_s", "seconds >= 0 (0 disables digests)", self.digest_interval_s)
        int_in("gossip.digest_buckets", self.digest_buckets, 1, 4096)


@dataclass
class PeerRecord:
    """What one peer incarnation has acknowledged of our state."""

    node_id: str
    region: str
    role: str
    incarnation: int
    acked: dict[str, int] = field(default_factory=dict)


@dataclass
class GossipStats:
    deltas_sent: int = 0
    bytes_sent: int = 0
    deltas_received: int = 0
    bytes_received: int = 0
    keys_grown: int = 0
    sessions: int = 0
    digests_sent: int = 0
    digest_repairs: int = 0
    full_state_transfers: int = 0
    unknown_parts: int = 0
    # peer region -> last observed replication lag, milliseconds
    lag_ms: dict[str, int] = field(default_factory=dict)


LagObserver = Callable[[str, int], None]
"""Called as observer(peer_region, lag_ms) for every merged Delta."""


Route = frozenset[str] | None
"""The collections one node sends another: None means all of them, an empty set none."""

NOTHING: Route = frozenset()

Router = Callable[[str, str], Route]
"""Called as route(sender_role, receiver_role): what a node of one role sends a node of the other."""


def everything(my_role: str, peer_role: str) -> Route:
    """Every node sends every peer every collection."""
    return None


class GossipNode:
    """One node's end of every gossip session."""

    def __init__(
        self,
        node_id: str,
        region: str,
        role: str,
        state: ReplicaState,
        clock: Clock,
        config: GossipConfig | None = None,
        route: Router = everything,
        rng: random.Random | None = None,
        *,
        origin_collection: str | None = None,
    ) -> None:
        self.node_id = node_id
        self.region = region
        self.role = role
        self.state = state
        self.clock = clock
        self.config = config or GossipConfig()
        self._route = route
        self.incarnation = (rng or random.SystemRandom()).getrandbits(63) or 1
        self.peers: dict[str, PeerRecord] = {}
        self.stats = GossipStats()
        self.lag_observers: list[LagObserver] = []
        self.origin_collection = origin_collection
        # (version of origin_collection, origin commit ms, origin region) of every growth of that
        # collection, oldest first, so each Delta can say when and where its oldest update was
        # committed, across relays too.
        self._origins: deque[tuple[int, int, str]] = deque(maxlen=100_000)
        self._merging: tuple[int, str] | None = None
        if origin_collection is not None:
            state.add_listener(self._on_grow)

    def _on_grow(self, collection: str, coll: Any, grown: Any) -> None:
        if collection != self.origin_collection:
            return
        origin_ms, region = self._merging or (self.clock.wall_ms(), self.region)
        self._origins.append((coll.version, origin_ms, region))

    def origin_of(self, since_version: int, upto_version: int) -> tuple[int, str]:
        """Commit time and region of the oldest update among ``origin_collection`` versions (since, upto];
        now and this node's region when there is none (or no origin collection)."""
        best: tuple[int, str] | None = None
        for version, origin_ms, region in reversed(self._origins):
            if version <= since_version:
                break
            if version <= upto_version and (best is None or origin_ms < best[0]):
                best = (origin_ms, region)
        return best or (self.clock.wall_ms(), self.region)

    def hello(self) -> gossip_pb2.GossipMessage:
        return gossip_pb2.GossipMessage(
            hello=gossip_pb2.Hello(
                node_id=self.node_id, region=self.region, role=self.role, incarnation=self.incarnation
            )
        )

    def _peer(self, hello: gossip_pb2.Hello) -> PeerRecord:
        rec = self.peers.get(hello.node_id)
        if rec is None or rec.incarnation != hello.incarnation:
            rec = PeerRecord(hello.node_id, hello.region, hello.role, hello.incarnation)
            self.peers[hello.node_id] = rec
        return rec

    async def run_session(self, transport: Transport, *, dialer: bool) -> None:
        """Run one session until the transport ends; raises ProtocolError on a protocol breach."""
        lock = asyncio.Lock()

        async def write(msg: gossip_pb2.GossipMessage) -> None:
            async with lock:
                await transport.write(msg)

        if dialer:
            await write(self.hello())
        first = await transport.read()
        if not isinstance(first, gossip_pb2.GossipMessage) or first.WhichOneof("body") != "hello":
            raise ProtocolError("a gossip session must start with Hello")
        if not first.hello.node_id:
            raise ProtocolError("Hello without node_id")
        if first.hello.node_id == self.node_id and first.hello.incarnation == self.incarnation:
            raise SelfSession(f"gossip peer is this node itself ({self.node_id})")
        if not dialer:
            await write(self.hello())
        peer = self._peer(first.hello)
        self.stats.sessions += 1
        outbound = self._route(self.role, peer.role)
        inbound = self._route(peer.role, self.role)
        sender = _Sender(self, peer, write, outbound)
        tasks: list[asyncio.Task[None]] = []
        if outbound != NOTHING:
            tasks.append(asyncio.create_task(sender.run(), name=f"gossip-send-{peer.node_id}"))
        if inbound != NOTHING and self.config.digest_interval_s > 0:
            tasks.append(asyncio.create_task(self._digests(write, inbound), name=f"gossip-digest-{peer.node_id}"))
        try:
            while True:
                msg = await transport.read()
                if not isinstance(msg, gossip_pb2.GossipMessage):
                    return  # end of stream
                kind = msg.WhichOneof("body")
                if kind == "delta":
                    self._merge_delta(msg.delta, peer)
                    await write(gossip_pb2.GossipMessage(delta_ack=gossip_pb2.DeltaAck(seq=msg.delta.seq)))
                elif kind == "delta_ack":
                    sender.on_ack(msg.delta_ack.seq)
                elif kind == "digest":
                    if outbound != NOTHING:
                        await sender.repair(msg.digest)
                elif kind == "hello":
                    raise ProtocolError("Hello sent twice in one session")
                # FullStateChunk and FullStateRequest are not sent by this version: full state travels
                # as a run of bounded Deltas from version 0 (see _Sender); ignoring them is safe.
        finally:
            for task in tasks:
                task.cancel()
            # gather, not ``suppress(CancelledError): await task``: that would also swallow a cancel of this
            # session itself arriving meanwhile (Dialer.close), and the session's caller would never end.
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _digests(self, write: Callable[[gossip_pb2.GossipMessage], Any], inbound: Route) -> None:
        """Periodically send the digests of what this peer feeds us."""
        cfg = self.config
        rounds = 0
        while True:
            await self.clock.sleep(cfg.digest_interval_s)
            rounds += 1
            msg = gossip_pb2.GossipMessage(digest=gossip_pb2.Digest(round=rounds))
            for name in cfg.digest_collections:
                coll = self.state.collections.get(name)
                if coll is None or not digest.supports(coll) or (inbound is not None and name not in inbound):
                    continue
                for i, h in enumerate(digest.bucket_hashes(coll, cfg.digest_buckets)):  # type: ignore[arg-type]
                    msg.digest.buckets.add(collection=name, bucket=i, of=cfg.digest_buckets, hash=h)
            if len(msg.digest.buckets):
                await write(msg)
                self.stats.digests_sent += 1

    def _merge_delta(self, delta: gossip_pb2.Delta, peer: PeerRecord) -> None:
        decoded: list[tuple[str, Any]] = []
        try:
            for part in delta.parts:
                if part.collection not in self.state.collections:
                    # A newer peer's collection this node does not hold (a rolling upgrade): skipped, not an error.
                    self.stats.unknown_parts += 1
                    continue
                decoded.append((part.collection, self.state.decode_part(part.collection, part.envelope)))
        except DecodeError as exc:
            raise ProtocolError(f"undecodable delta from {peer.node_id}: {exc}") from exc
        self.stats.deltas_received += 1
        self.stats.bytes_received += delta.ByteSize()
        self._merging = (delta.origin_time_ms or self.clock.wall_ms(), delta.origin_region or peer.region)
        try:
            for collection, d in decoded:
                self.stats.keys_grown += len(self.state.merge(collection, d))
        finally:
            self._merging = None
        if delta.origin_time_ms:
            lag = max(0, self.clock.wall_ms() - delta.origin_time_ms)
            region = delta.origin_region or peer.region
            self.stats.lag_ms[region] = lag
            for observe in self.lag_observers:
                observe(region, lag)


class _Sender:
    """Streams unacknowledged deltas to one peer."""

    def __init__(
        self, node: GossipNode, peer: PeerRecord, write: Callable[[gossip_pb2.GossipMessage], Any], route: Route
    ) -> None:
        self.node = node
        self.peer = peer
        self.write = write
        self.route = route
        self.sent: dict[str, int] = dict(peer.acked)
        self.inflight: OrderedDict[int, dict[str, int]] = OrderedDict()
        self.seq = 0

    def on_ack(self, seq: int) -> None:
        while self.inflight:
            first = next(iter(self.inflight))
            if first > seq:
                break
            self.peer.acked = self.inflight.pop(first)

    async def _send(self, parts: list[tuple[str, bytes]], upto: dict[str, int]) -> None:
        node = self.node
        self.seq += 1
        origin = node.origin_collection
        if origin is None:
            origin_ms, origin_region = node.clock.wall_ms(), node.region
        else:
            origin_ms, origin_region = node.origin_of(self.sent.get(origin, 0), upto.get(origin, 0))
        msg = gossip_pb2.GossipMessage(
            delta=gossip_pb2.Delta(
                seq=self.seq,
                parts=[gossip_pb2.Part(collection=c, envelope=e) for c, e in parts],
                origin_time_ms=origin_ms,
                origin_region=origin_region,
            )
        )
        await self.write(msg)
        node.stats.deltas_sent += 1
        node.stats.bytes_sent += msg.ByteSize()
        self.inflight[self.seq] = upto

    async def run(self) -> None:
        node, cfg = self.node, self.node.config
        if not any(self.sent.values()):
            node.stats.full_state_transfers += 1  # a new peer incarnation: everything, in bounded deltas
        while True:
            if len(self.inflight) < cfg.max_inflight_deltas:
                parts, upto = node.state.delta_since(self.sent, cfg.max_keys_per_delta, self.route)
                if parts:
                    await self._send(parts, upto)
                    self.sent = upto
                    continue
            await node.clock.sleep(cfg.poll_interval_s)

    async def repair(self, received: gossip_pb2.Digest) -> None:
        """Answer a peer's digest with our state for every bucket that differs."""
        node = self.node
        by_collection: dict[str, dict[int, tuple[int, int]]] = {}
        for b in received.buckets:
            by_collection.setdefault(b.collection, {})[b.bucket] = (b.of, b.hash)
        parts: list[tuple[str, bytes]] = []
        for name, buckets in by_collection.items():
            coll = node.state.collections.get(name)
            if coll is None or not digest.supports(coll) or (self.route is not None and name not in self.route):
                continue
            of = {v[0] for v in buckets.values()}
            if len(of) != 1 or not 1 <= (n := of.pop()) <= 4096:
                raise ProtocolError(f"digest of {name!r} mixes or misstates bucket counts")
            mine = digest.bucket_hashes(coll, n)  # type: ignore[arg-type]
            differing = {i for i, (_, h) in buckets.items() if i < n and mine[i] != h}
            if differing:
                sub = digest.bucket_subset(coll, n, differing)  # type: ignore[arg-type]
                if len(sub):
                    parts.append((name, sub.encode()))
        if parts:
            node.stats.digest_repairs += 1
            # A repair changes no version: it is acked like any delta but moves nothing forward.
            await self._send(parts, dict(self.sent))
