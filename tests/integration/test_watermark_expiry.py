"""Session watermarks expire in every region, deterministically, and gossiped memory stays bounded by the TTL.

Real Aggregators (real SQLite files) on a FakeClock; their committed state travels to broadcaster replicas and on
to another region's aggregator through the same calls a gossip session makes (``delta_since`` + ``merge_part``),
in both directions as the region route allows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reactmesh.merge.clock import FakeClock
from reactmesh.region_node.aggregator.config import AggregatorConfig
from reactmesh.region_node.aggregator.core import Aggregator
from reactmesh.region_node.aggregator.pending import ForwardStream
from reactmesh.region_node.aggregator.retention import FLOOR_STEP_MS
from reactmesh.region_node.state import WATERMARKS, RegionState
from reactmesh.v1 import aggregator_pb2 as pb
from reactmesh.v1 import common_pb2

TTL_S = 60


@dataclass
class Link:
    """One direction of a gossip link: what the receiver has acknowledged, per collection."""

    src: RegionState
    dst: RegionState
    only: frozenset[str] | None = None
    acked: dict[str, int] = field(default_factory=dict)

    def pump(self) -> None:
        parts, upto = self.src.delta_since(self.acked, only=self.only)
        for collection, envelope in parts:
            self.dst.merge_part(collection, envelope)
        self.acked = upto


def entry(sid: bytes, seq: int) -> pb.ForwardedBatch:
    return pb.ForwardedBatch(
        session_id=sid, seq=seq, stream_id="s1", counts=[common_pb2.ReactionCount(emoji="like", count=1)]
    )


async def aggregator(tmp_path: Path, region: str, clock: FakeClock) -> Aggregator:
    cfg = AggregatorConfig(
        node_id=f"{region}/agg-0", region=region, db_path=str(tmp_path / f"{region}.db"), watermark_ttl_s=TTL_S
    )
    agg = Aggregator(cfg, clock)
    await agg.start()
    return agg


async def send(agg: Aggregator, *entries: pb.ForwardedBatch) -> list[int]:
    """Forward one EdgeBatch, commit it, and return the entries' outcomes."""
    fwd = ForwardStream()
    agg.attach(fwd)
    agg.receive(fwd, pb.EdgeBatch(batch_id=1, entries=entries))
    await agg.tick()
    ack = fwd.out.get_nowait()
    assert isinstance(ack, pb.EdgeAck)
    agg.detach(fwd)
    return list(ack.outcomes)


def mesh(agg_a: Aggregator, agg_b: Aggregator) -> tuple[RegionState, RegionState, list[Link]]:
    """a's aggregator -> broadcaster a <-> broadcaster b -> b's aggregator (watermarks only, as the route has it)."""
    bcast_a, bcast_b = RegionState(), RegionState()
    links = [
        Link(agg_a.state, bcast_a),
        Link(agg_b.state, bcast_b),
        Link(bcast_a, bcast_b),
        Link(bcast_b, bcast_a),
        Link(bcast_b, agg_b.state, only=frozenset({WATERMARKS})),
        Link(bcast_a, agg_a.state, only=frozenset({WATERMARKS})),
    ]
    return bcast_a, bcast_b, links


def settle(links: list[Link]) -> None:
    for _ in range(3):
        for link in links:
            link.pump()


def sessions(state: RegionState) -> Mapping[bytes | str, int]:
    return state.watermarks.value()


async def test_a_watermark_expires_in_every_region_once_its_session_is_silent_past_the_ttl(tmp_path: Path) -> None:
    clock = FakeClock()
    agg_a, agg_b = await aggregator(tmp_path, "a", clock), await aggregator(tmp_path, "b", clock)
    try:
        bcast_a, bcast_b, links = mesh(agg_a, agg_b)
        sid = b"\x07" * 16
        assert await send(agg_a, entry(sid, 1), entry(sid, 2)) == [pb.EdgeAck.APPLIED] * 2
        settle(links)
        # Failover within the TTL: region b knows the session and counts a resend once.
        assert all(sessions(s).get(sid) == 2 for s in (bcast_a, bcast_b, agg_b.state))
        assert await send(agg_b, entry(sid, 2)) == [pb.EdgeAck.DUPLICATE]

        await clock.advance(TTL_S + FLOOR_STEP_MS // 1000 + 2)
        await agg_a.tick()  # expiry runs from the tick and raises the replicated floor
        settle(links)
        for state in (agg_a.state, bcast_a, bcast_b, agg_b.state):
            assert sid not in sessions(state)
            assert state.watermarks.floor == agg_a.state.watermarks.floor > 0
        # A stale copy of the entry arriving late (a delayed delta) cannot bring it back anywhere.
        stale = RegionState()
        stale.watermarks.set(sid, 2, stamp=agg_a.state.watermarks.floor - 1)
        for state in (bcast_a, bcast_b, agg_b.state):
            state.merge(WATERMARKS, stale.watermarks.copy())
            assert sid not in sessions(state)
    finally:
        await agg_a.close()
        await agg_b.close()


async def test_gossiped_watermarks_are_bounded_by_the_sessions_active_within_the_ttl(tmp_path: Path) -> None:
    clock = FakeClock()
    agg_a, agg_b = await aggregator(tmp_path, "a", clock), await aggregator(tmp_path, "b", clock)
    try:
        bcast_a, bcast_b, links = mesh(agg_a, agg_b)
        per_second = 5
        seen = 0
        for second in range(8 * TTL_S):
            new = [entry((seen + i + 1).to_bytes(16, "big"), 1) for i in range(per_second)]
            seen += per_second
            await send(agg_a if second % 2 else agg_b, *new)
            await clock.advance(1)
            settle(links)
        # Held: the sessions of the TTL plus at most one floor step (a minute) and a tick.
        active_within_ttl = per_second * (TTL_S + FLOOR_STEP_MS // 1000 + 2)
        for state in (agg_a.state, agg_b.state, bcast_a, bcast_b):
            assert len(sessions(state)) <= active_within_ttl < seen / 3
    finally:
        await agg_a.close()
        await agg_b.close()
