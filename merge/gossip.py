"""The gossip protocol: per-peer acknowledged delta propagation over one bidirectional stream.

A session runs over any transport with ``read()``/``write()`` of ``GossipMessage`` (a grpc.aio
call on the dialling side, the servicer context on the other). The dialler sends Hello first, the
listener answers with its own. Then each side that should send to the other (``sends_to``) streams
``Delta`` messages holding every change of its ReplicaState the peer has not acknowledged, at most
``max_keys_per_delta`` keys per collection each and at most ``max_inflight_deltas`` unacknowledged;
the receiver merges and answers ``DeltaAck``.

Acknowledgements are remembered per peer node and incarnation: a peer that reconnects with the
same incarnation resumes from what it acknowledged; a restarted peer (new incarnation) gets full
state again, in the same bounded messages. Every payload is a join, so duplicated, reordered or
replayed messages change nothing; a peer that sends a message we cannot decode ends its session
with ProtocolError and nothing of that message is merged.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from reactmesh.v1 import gossip_pb2

from merge.clock import Clock
from merge.errors import ConfigError, DecodeError, MergeError
from merge.keyed import KeyedGCounter
from merge.replica import ReplicaState


class ProtocolError(MergeError):
    """Raised when a peer breaks the gossip protocol: no Hello first, or an undecodable payload."""


class Transport(Protocol):
    async def read(self) -> object: ...

    async def write(self, message: gossip_pb2.GossipMessage) -> None: ...


@dataclass(frozen=True)
class GossipConfig:
    """Bounds of one gossip session; every bound is per peer."""

    max_keys_per_delta: int = 2000
    max_inflight_deltas: int = 8
    poll_interval_s: float = 0.01

    def __post_init__(self) -> None:
        if self.max_keys_per_delta < 1:
            raise ConfigError("gossip.max_keys_per_delta", "an integer >= 1", self.max_keys_per_delta)
        if self.max_inflight_deltas < 1:
            raise ConfigError("gossip.max_inflight_deltas", "an integer >= 1", self.max_inflight_deltas)
        if not 0 < self.poll_interval_s <= 1:
            raise ConfigError("gossip.poll_interval_s", "seconds in (0, 1]", self.poll_interval_s)


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
    # peer region -> last observed replication lag, milliseconds
    lag_ms: dict[str, int] = field(default_factory=dict)


LagObserver = Callable[[str, int], None]
"""Called as observer(peer_region, lag_ms) for every merged Delta."""


def default_sends_to(my_role: str, peer_role: str) -> bool:
    """Aggregators feed everyone; broadcasters feed other broadcasters (region gateways)."""
    if my_role == "aggregator":
        return True
    return my_role == "broadcaster" and peer_role == "broadcaster"


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
        sends_to: Callable[[str, str], bool] = default_sends_to,
        rng: random.Random | None = None,
    ) -> None:
        self.node_id = node_id
        self.region = region
        self.role = role
        self.state = state
        self.clock = clock
        self.config = config or GossipConfig()
        self._sends_to = sends_to
        self.incarnation = (rng or random.SystemRandom()).getrandbits(63) or 1
        self.peers: dict[str, PeerRecord] = {}
        self.stats = GossipStats()
        self.lag_observers: list[LagObserver] = []

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
        if not dialer:
            await write(self.hello())
        peer = self._peer(first.hello)
        self.stats.sessions += 1
        sender = _Sender(self, peer, write)
        send_task = (
            asyncio.create_task(sender.run(), name=f"gossip-send-{peer.node_id}")
            if self._sends_to(self.role, peer.role)
            else None
        )
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
                elif kind == "hello":
                    raise ProtocolError("Hello sent twice in one session")
                # Digests and full-state chunks are answered by later protocol versions; ignoring
                # them is safe because every repair is also reachable through deltas.
        finally:
            if send_task is not None:
                send_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await send_task

    def _merge_delta(self, delta: gossip_pb2.Delta, peer: PeerRecord) -> None:
        decoded: list[tuple[str, KeyedGCounter]] = []
        try:
            for part in delta.parts:
                if part.collection not in self.state.collections:
                    raise DecodeError(f"unknown collection {part.collection!r}")
                decoded.append((part.collection, KeyedGCounter.decode(part.envelope)))
        except DecodeError as exc:
            raise ProtocolError(f"undecodable delta from {peer.node_id}: {exc}") from exc
        self.stats.deltas_received += 1
        self.stats.bytes_received += delta.ByteSize()
        for collection, d in decoded:
            self.stats.keys_grown += len(self.state.merge(collection, d))
        if delta.origin_time_ms:
            lag = max(0, self.clock.wall_ms() - delta.origin_time_ms)
            region = delta.origin_region or peer.region
            self.stats.lag_ms[region] = lag
            for observe in self.lag_observers:
                observe(region, lag)


class _Sender:
    """Streams unacknowledged deltas to one peer."""

    def __init__(self, node: GossipNode, peer: PeerRecord, write: Callable[[gossip_pb2.GossipMessage], object]) -> None:
        self.node = node
        self.peer = peer
        self.write = write
        self.sent: dict[str, int] = dict(peer.acked)
        self.inflight: OrderedDict[int, dict[str, int]] = OrderedDict()
        self.seq = 0

    def on_ack(self, seq: int) -> None:
        while self.inflight:
            first = next(iter(self.inflight))
            if first > seq:
                break
            self.peer.acked = self.inflight.pop(first)

    async def run(self) -> None:
        node, cfg = self.node, self.node.config
        while True:
            if len(self.inflight) < cfg.max_inflight_deltas:
                parts, upto = node.state.delta_since(self.sent, cfg.max_keys_per_delta)
                if parts:
                    self.seq += 1
                    msg = gossip_pb2.GossipMessage(
                        delta=gossip_pb2.Delta(
                            seq=self.seq,
                            parts=[gossip_pb2.Part(collection=c, envelope=e) for c, e in parts],
                            origin_time_ms=node.clock.wall_ms(),
                            origin_region=node.region,
                        )
                    )
                    await self.write(msg)  # type: ignore[misc]
                    node.stats.deltas_sent += 1
                    node.stats.bytes_sent += msg.ByteSize()
                    self.inflight[self.seq] = upto
                    self.sent = upto
                    continue
            await node.clock.sleep(cfg.poll_interval_s)
