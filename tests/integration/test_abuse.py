"""Anti-abuse at a real Edge over real gRPC on loopback, in front of a real Aggregator (SQLite store), a FakeClock.

A synthetic bot (one emoji, offering more than the per-viewer cap, a new session every few seconds) taps next to
honest viewers (a varied mix well below the cap, one of them reconnecting twice). Proves: the bot is flagged for
every signal and the honest viewers for none, the flag listeners and the Prometheus collector see it; with
``shadow_mute`` the bot's taps after its first flag are acked ACCEPTED but are not in the aggregator's committed
totals, while every honest tap is counted exactly; viewers the flag lookup reports are shadow-muted too, and a
failing flag listener or lookup breaks no admission.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from prometheus_client import CollectorRegistry

from reactmesh.edge.abuse import AbuseConfig, Flag, FlagKind
from reactmesh.edge.config import EdgeConfig
from reactmesh.edge.service import Edge
from reactmesh.merge.clock import FakeClock
from reactmesh.region_node.aggregator.config import AggregatorConfig
from reactmesh.region_node.aggregator.core import Aggregator
from reactmesh.region_node.aggregator.service import AggregatorService
from reactmesh.region_node.metrics.edge import EdgeCollector
from reactmesh.v1 import ingest_pb2, ingest_pb2_grpc
from tests.support.edge import batch, edge_rig, session, stream_exchange

Ack = ingest_pb2.BatchAck
STREAM = "live-1"
STEP_S = 0.5  # one client batch per viewer per step, as the SDK would send a few per second
HONEST_MIX = ("like", "heart", "laugh", "wow", "sad")  # the bot taps "fire" only: its share of totals is exact


@dataclass
class Rig:
    edge: Edge
    aggregator: Aggregator
    clock: FakeClock
    stub: Any
    registry: CollectorRegistry
    flags: list[Flag]
    steps: int = 0

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, {"region": "a", **labels})

    def total(self, emoji: str) -> int:
        return int(self.aggregator.state.totals.value((STREAM, emoji)))


@asynccontextmanager
async def abuse_rig(tmp_path: Path, **abuse: Any) -> AsyncIterator[Rig]:
    clock = FakeClock()
    aggregator = Aggregator(AggregatorConfig(node_id="a/agg-0", region="a", db_path=str(tmp_path / "agg.db")), clock)
    await aggregator.start()
    agg_server = grpc.aio.server()
    AggregatorService(aggregator).add_to_server(agg_server)
    agg_address = f"127.0.0.1:{agg_server.add_insecure_port('127.0.0.1:0')}"
    await agg_server.start()
    config = EdgeConfig(
        region="a",
        aggregators=(agg_address,),
        flush_interval_ms=0,
        rate_per_s=10.0,
        burst=20,
        abuse=AbuseConfig(**abuse),
    )
    edge = Edge(config, clock)
    flags: list[Flag] = []
    edge.add_flag_listener(flags.append)
    registry = CollectorRegistry()
    registry.register(EdgeCollector("a", edge))  # type: ignore[arg-type]
    server = grpc.aio.server()
    edge.add_to_server(server)
    address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    await server.start()
    await edge.start()
    channel = grpc.aio.insecure_channel(address)
    try:
        yield Rig(edge, aggregator, clock, ingest_pb2_grpc.IngestStub(channel), registry, flags)
    finally:
        await channel.close()
        await edge.close(grace_s=0)
        await server.stop(None)
        await aggregator.close()
        await agg_server.stop(None)


class Viewer:
    """One viewer app: an Ingest stream per session, numbered batches, ``per_step`` taps from ``emojis``."""

    def __init__(self, rig: Rig, viewer_id: str, per_step: int, emojis: tuple[str, ...]) -> None:
        self.rig, self.viewer_id, self.per_step, self.emojis = rig, viewer_id, per_step, emojis
        self.rng = random.Random(viewer_id)
        self.sessions = 0
        self.acks: list[tuple[Counter[str], Ack]] = []  # (taps offered per emoji, ack)
        self._open()

    def _open(self) -> None:
        self.session, self.seq, self.call = os.urandom(16), 0, self.rig.stub.Stream()
        self.sessions += 1

    async def reconnect(self) -> None:
        await self.call.done_writing()
        async with asyncio.timeout(5):
            assert await self.call.read() is grpc.aio.EOF
        self._open()

    async def send(self) -> tuple[Counter[str], asyncio.Future[Any]]:
        counts = Counter(self.rng.choices(self.emojis, k=self.per_step))
        self.seq += 1
        await self.call.write(batch(self.session, self.seq, dict(counts), stream_id=STREAM, viewer_id=self.viewer_id))
        return counts, asyncio.ensure_future(self.call.read())


async def step(rig: Rig, viewers: list[Viewer]) -> None:
    """Every viewer sends one batch; the aggregator commits until every ack is back; the clock moves one step."""
    sent = [(v, *(await v.send())) for v in viewers]
    reads = [read for _, _, read in sent]
    async with asyncio.timeout(10):
        while not all(r.done() for r in reads):
            await rig.aggregator.tick()
            await asyncio.wait(reads, timeout=0.005)
    for viewer, counts, read in sent:
        ack = read.result()
        assert ack is not grpc.aio.EOF and ack.seq == viewer.seq
        viewer.acks.append((counts, ack))
    await rig.clock.advance(STEP_S)


async def run(rig: Rig, seconds: float, bot: Viewer, honest: list[Viewer]) -> None:
    """The bot opens a new session every 8 s (more than 4 within a minute); honest[0] reconnects at 12 s and 24 s."""
    for _ in range(round(seconds / STEP_S)):
        rig.steps += 1
        elapsed_s = rig.steps * STEP_S
        if elapsed_s % 8 == 0:
            await bot.reconnect()
        if elapsed_s in (12, 24):
            await honest[0].reconnect()
        await step(rig, [bot, *honest])


def crowd(rig: Rig) -> tuple[Viewer, list[Viewer]]:
    bot = Viewer(rig, "bot", 8, ("fire",))  # 16 taps/s offered against a cap of 10/s
    honest = [Viewer(rig, f"fan-{i}", 2, HONEST_MIX) for i in range(4)]  # 4 taps/s each
    return bot, honest


async def test_a_bot_at_the_cap_with_one_emoji_and_many_sessions_is_flagged_and_honest_viewers_are_not(
    tmp_path: Path,
) -> None:
    async with abuse_rig(tmp_path) as rig:
        bot, honest = crowd(rig)
        await run(rig, 40, bot, honest)

        assert {f.viewer_id for f in rig.flags} == {"bot"}
        assert sorted(f.kind for f in rig.flags) == sorted(FlagKind)
        assert all(f.stream_id == STREAM and f.detail for f in rig.flags)
        assert rig.edge.flagged("bot") and not any(rig.edge.flagged(v.viewer_id) for v in honest)
        assert sorted(f.kind for f in rig.edge.active_flags()) == sorted(FlagKind)
        assert honest[0].sessions == 3
        stats = rig.edge.statistics()
        assert stats["abuse_viewers_flagged"] == 1 and stats["abuse_viewers_tracked"] == 5
        assert stats["taps_shadow_muted"] == 0
        for kind in FlagKind:
            assert rig.sample("reactmesh_edge_abuse_flags_total", kind=kind.value) == 1
        assert rig.sample("reactmesh_edge_abuse_viewers_tracked") == 5
        assert rig.sample("reactmesh_edge_shadow_muted_taps_total") == 0
        # Flags are only signals here: the bot's granted taps were counted, as the acks said.
        assert rig.total("fire") == sum(ack.accepted_taps for _, ack in bot.acks)
        assert sum(ack.rate_limited_taps for _, ack in bot.acks) > 0


async def test_shadow_mute_acks_a_flagged_bots_taps_but_counts_only_honest_viewers_and_the_bots_before_its_flag(
    tmp_path: Path,
) -> None:
    async with abuse_rig(tmp_path, shadow_mute=True) as rig:
        bot, honest = crowd(rig)
        before_flag: list[Ack] = []
        while not rig.flags:
            await run(rig, STEP_S, bot, honest)
            if not rig.flags:
                before_flag.append(bot.acks[-1][1])
        flagged_at = len(bot.acks) - 1  # the batch that raised the first flag is muted too
        await run(rig, 30, bot, honest)

        later = [ack for _, ack in bot.acks[flagged_at:]]
        assert len(later) > 50
        assert all(ack.outcome == Ack.ACCEPTED for ack in later)
        assert all(ack.accepted_taps + ack.rate_limited_taps == 8 for ack in later), "acked as the limiter decides"
        muted = sum(ack.accepted_taps for ack in later)
        assert muted > 0
        assert rig.total("fire") == sum(ack.accepted_taps for ack in before_flag)
        for emoji in HONEST_MIX:
            offered = sum(counts[emoji] for v in honest for counts, _ in v.acks)
            assert rig.total(emoji) == offered > 0
        assert all(ack.outcome == Ack.ACCEPTED and ack.rate_limited_taps == 0 for v in honest for _, ack in v.acks)
        stats = rig.edge.statistics()
        assert stats["taps_shadow_muted"] == muted and stats["batches_shadow_muted"] == len(later)
        assert stats["taps_accepted"] == sum(rig.total(e) for e in (*HONEST_MIX, "fire"))
        assert rig.sample("reactmesh_edge_shadow_muted_taps_total") == muted
        assert {f.viewer_id for f in rig.flags} == {"bot"}


async def test_shadow_mute_covers_viewers_the_flag_lookup_reports_and_a_failing_hook_breaks_nothing() -> None:
    async with edge_rig(abuse=AbuseConfig(shadow_mute=True)) as rig:
        remote = {"flagged-elsewhere"}
        rig.edge.set_flag_lookup(remote.__contains__)

        def broken(flag: Flag) -> None:
            raise RuntimeError("listener bug")

        rig.edge.add_flag_listener(broken)
        sid, other = session(), session()
        muted = await stream_exchange(rig, [batch(sid, 1, {"heart": 3}, viewer_id="flagged-elsewhere")])
        counted = await stream_exchange(rig, [batch(other, 1, {"heart": 2}, viewer_id="fan")])
        assert muted[1].outcome == Ack.ACCEPTED and muted[1].accepted_taps == 3
        assert counted[1].outcome == Ack.ACCEPTED and counted[1].accepted_taps == 2
        assert rig.aggregator.received == [(other, 1)] and rig.aggregator.totals[("live-1", "heart")] == 2
        assert not rig.edge.flagged("flagged-elsewhere"), "flagged() is this edge's own flags"
        stats = rig.edge.statistics()
        assert stats["taps_shadow_muted"] == 3 and stats["taps_accepted"] == 2

        for _ in range(5):  # a local SESSIONS flag reaches the broken listener, and admission goes on
            await stream_exchange(rig, [batch(session(), 1, viewer_id="hopper")])
        assert [f.kind for f in rig.edge.active_flags()] == [FlagKind.SESSIONS]

        def failing(viewer_id: str) -> bool:
            raise RuntimeError("lookup bug")

        rig.edge.set_flag_lookup(failing)
        again = await stream_exchange(rig, [batch(sid, 2, {"heart": 1}, viewer_id="flagged-elsewhere")])
        assert again[2].accepted_taps == 1 and rig.aggregator.totals[("live-1", "heart")] == 3
