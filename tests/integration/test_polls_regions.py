"""Live polls across three regions: three broadcasters in one process, each with its ReplicaState,
poll file and Polls service, gossiping over real gRPC on loopback (GossipServicer + Dialers, all to
all). Every region's wall clock is a FakeClock with its own skew, so every vote's HLC stamp, and so
the ground truth, is known exactly; gossip runs on the system clock.

Proves: thousands of voters, many changing their vote, some voting in two regions at once, one
region partitioned during voting: after healing, every region holds the same PollSet and tallies
equal to each voter's last vote by HLC. Close race: while a region is cut off, the host closes the
poll elsewhere; votes the cut-off region takes meanwhile count iff stamped before the close, in
every region, and the connected regions refuse later votes with FAILED_PRECONDITION."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from pathlib import Path

import grpc
import pytest

from reactmesh.edge.errors import ServiceError
from reactmesh.merge.clock import FakeClock, SystemClock
from reactmesh.merge.gossip import GossipConfig
from reactmesh.merge.hlc import HlcTimestamp
from reactmesh.merge.polls import PollSet, deadline_stamp
from reactmesh.region_node.broadcaster.config import BroadcasterConfig
from reactmesh.region_node.broadcaster.core import Broadcaster
from reactmesh.region_node.polls.book import PollBook
from reactmesh.region_node.polls.config import PollsConfig
from reactmesh.region_node.polls.service import PollsServicer, attach_polls
from reactmesh.region_node.polls.store import PollStore
from reactmesh.region_node.replication import Dialer, GossipServicer
from reactmesh.region_node.state import RegionGossipNode, RegionState
from reactmesh.v1 import polls_pb2, polls_pb2_grpc
from tests.support.polling import eventually

T0 = 1_700_000_000_000
SKEW_MS = {"a": 0, "b": 7, "c": -5}
FAST = GossipConfig(max_keys_per_delta=500, max_inflight_deltas=4, poll_interval_s=0.005, digest_interval_s=0)
CONFIG = PollsConfig(require_known_stream=False)
VOTERS = 3000
STREAM = "final"

Ballot = tuple[HlcTimestamp, int]


class Region:
    def __init__(self, name: str, db: Path) -> None:
        self.name = name
        self.db = db
        self.clock = FakeClock(start_wall_ms=T0 + SKEW_MS[name])
        self.state = RegionState(extra={"polls": PollSet()})
        self.broadcaster = Broadcaster(BroadcasterConfig(), self.clock, self.state)
        self.gossip = RegionGossipNode(f"{name}/bcast-0", name, "broadcaster", self.state, SystemClock(), FAST)
        self.server = grpc.aio.server()
        self.servicer: PollsServicer
        self.address = ""

    async def start(self) -> None:
        self.servicer = await attach_polls(
            self.state, self.broadcaster, self.clock, f"{self.name}/bcast-0", str(self.db), CONFIG
        )
        self.servicer.add_to_server(self.server)
        GossipServicer(self.gossip).add_to_server(self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        self.address = f"127.0.0.1:{port}"
        self.channel = grpc.aio.insecure_channel(self.address)
        self.stub = polls_pb2_grpc.PollsStub(self.channel)

    @property
    def book(self) -> PollBook:
        return self.servicer.book

    @property
    def polls(self) -> PollSet:
        return self.book.polls

    async def stop(self) -> None:
        await self.servicer.close()
        await self.broadcaster.close()
        await self.channel.close()
        await self.server.stop(None)


class Mesh:
    """Three regions; region x dials every region after it, so each pair shares one session."""

    def __init__(self, regions: dict[str, Region]) -> None:
        self.regions = regions
        self.links: dict[tuple[str, str], Dialer] = {}
        self.ballots: dict[tuple[str, str], list[Ballot]] = {}

    def connect(self, src: str, dst: str) -> None:
        dialer = Dialer(
            self.regions[src].gossip,
            self.regions[dst].address,
            SystemClock(),
            backoff_initial_s=0.01,
            backoff_max_s=0.1,
        )
        dialer.start()
        self.links[(src, dst)] = dialer

    def connect_all(self) -> None:
        names = sorted(self.regions)
        for i, src in enumerate(names):
            for dst in names[i + 1 :]:
                self.connect(src, dst)

    async def cut_off(self, name: str) -> None:
        """Partition region ``name``: close every link it is part of."""
        for link in [link for link in self.links if name in link]:
            await self.links.pop(link).close()

    def heal(self, name: str) -> None:
        for other in self.regions:
            if other != name:
                self.connect(*sorted((name, other)))

    async def close(self) -> None:
        for dialer in self.links.values():
            await dialer.close()
        for region in self.regions.values():
            await region.stop()

    async def advance(self, ms: int, names: Iterable[str] | None = None) -> None:
        for name in names or self.regions:
            await self.regions[name].clock.advance(ms / 1000)

    async def vote(self, region: str, poll_id: str, voter: str, option: int) -> None:
        _, stamp = await self.regions[region].book.vote(poll_id, voter, option)
        self.ballots.setdefault((poll_id, voter), []).append((stamp, option))

    def expected(self, poll_id: str, close: HlcTimestamp | None = None) -> dict[str, int]:
        """Each voter's counted option: their latest vote stamped before the close."""
        out: dict[str, int] = {}
        for (pid, voter), ballots in self.ballots.items():
            counted = [b for b in ballots if close is None or b[0] < close]
            if pid == poll_id and counted:
                out[voter] = max(counted)[1]
        return out

    def converged(self, poll_id: str, expected: dict[str, int]) -> bool:
        tally = Counter(expected.values())
        want = tuple(tally[i] for i in range(3))
        return all(r.polls.tally(poll_id) == want for r in self.regions.values())

    async def settle(self, poll_id: str, expected: dict[str, int]) -> None:
        await eventually(lambda: self.converged(poll_id, expected), within=20.0)
        first = self.regions["a"].polls
        await eventually(lambda: all(r.polls == first for r in self.regions.values()), within=20.0)
        for region in self.regions.values():
            votes = region.polls.votes(poll_id)
            assert votes is not None and votes.value() == expected


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    regions = {name: Region(name, tmp_path / f"{name}.db") for name in SKEW_MS}
    for region in regions.values():
        await region.start()
    m = Mesh(regions)
    m.connect_all()
    yield m
    await m.close()


async def gather_in_chunks(coros: Sequence[Awaitable[None]], size: int = 250) -> None:
    for i in range(0, len(coros), size):
        await asyncio.gather(*coros[i : i + size])


async def test_thousands_of_voters_across_three_regions_converge_to_each_voters_last_vote(mesh: Mesh) -> None:
    rng = random.Random(7)
    names = sorted(mesh.regions)
    created = await mesh.regions["a"].book.create(STREAM, "Man of the match?", ["keeper", "striker", "captain"])
    poll_id = created.poll_id
    await eventually(lambda: all(r.polls.spec(poll_id) is not None for r in mesh.regions.values()))

    # Everyone votes once, wherever they watch from.
    voters = [f"viewer-{i}" for i in range(VOTERS)]
    await gather_in_chunks([mesh.vote(rng.choice(names), poll_id, v, rng.randrange(3)) for v in voters])
    await mesh.advance(40)

    # Region c is cut off while many change their vote, some of them in c.
    await mesh.cut_off("c")
    changers = rng.sample(voters, VOTERS * 2 // 5)
    await gather_in_chunks([mesh.vote(rng.choice(names), poll_id, v, rng.randrange(3)) for v in changers])
    await mesh.advance(40)
    assert mesh.regions["c"].polls.tally(poll_id) != mesh.regions["a"].polls.tally(poll_id)
    mesh.heal("c")

    # Some vote in two regions at once: neither region has seen the other's vote; the greater stamp wins.
    doubles = rng.sample(voters, VOTERS // 10)
    pairs = []
    for v in doubles:
        first, second = rng.sample(names, 2)
        pairs += [mesh.vote(first, poll_id, v, rng.randrange(3)), mesh.vote(second, poll_id, v, rng.randrange(3))]
    await gather_in_chunks(pairs)

    expected = mesh.expected(poll_id)
    assert len(expected) == VOTERS
    await mesh.settle(poll_id, expected)
    assert sum(1 for b in mesh.ballots.values() if len(b) > 1) > VOTERS // 3

    # What viewers are shown agrees too, in every region.
    for region in mesh.regions.values():
        region.broadcaster.tick()
    shown = {name: list(r.broadcaster.shown_polls(STREAM)[poll_id].tallies) for name, r in mesh.regions.items()}
    assert len({tuple(t) for t in shown.values()}) == 1
    assert sum(shown["a"]) == VOTERS

    # Each region's poll file holds the merged state, its peers' votes included.
    for region in mesh.regions.values():
        await region.book.flush()
        reader = await PollStore.open(region.db)
        try:
            assert await reader.load() == region.polls
        finally:
            await reader.close()


async def test_votes_in_flight_during_a_close_count_iff_stamped_before_it_in_every_region(mesh: Mesh) -> None:
    a, b, c = (mesh.regions[n] for n in "abc")
    created = await a.book.create(STREAM, "Extra time?", ["yes", "no", "penalties"])
    poll_id = created.poll_id
    await eventually(lambda: all(r.polls.spec(poll_id) is not None for r in mesh.regions.values()))
    early = [f"early-{i}" for i in range(300)]
    await gather_in_chunks([mesh.vote("abc"[i % 3], poll_id, v, 0) for i, v in enumerate(early)])
    await mesh.settle(poll_id, mesh.expected(poll_id))

    await mesh.advance(1000)  # every clock moves past every stamp seen so far
    await mesh.cut_off("c")
    await mesh.advance(500, "a")
    closed = await a.stub.ClosePoll(polls_pb2.ClosePollRequest(poll_id=poll_id))
    close_stamp = a.polls.closed_at(poll_id)
    assert close_stamp is not None and closed.closed_at_ms == close_stamp.wall_ms == T0 + 1500 + SKEW_MS["a"]

    # Region c has not heard of the close: it takes votes stamped before it...
    await mesh.advance(200, "c")
    before = [f"before-{i}" for i in range(200)]
    await gather_in_chunks([mesh.vote("c", poll_id, v, 1) for v in before])
    # ...and after it: new voters, and early voters changing their mind.
    await mesh.advance(400, "c")
    after = [f"after-{i}" for i in range(200)]
    await gather_in_chunks([mesh.vote("c", poll_id, v, 2) for v in after + early[:100]])
    assert c.polls.tally(poll_id)[2] == 300

    # The connected regions refuse votes once they know of the close, whatever their clock says.
    await eventually(lambda: b.polls.closed_at(poll_id) == close_stamp)
    for region in (a, b):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await region.stub.Vote(polls_pb2.VoteRequest(poll_id=poll_id, viewer_id="late", option=0))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    mesh.heal("c")
    expected = mesh.expected(poll_id, close_stamp)
    assert Counter(expected.values()) == Counter({0: 300, 1: 200})
    await mesh.settle(poll_id, expected)
    for region in mesh.regions.values():
        assert region.polls.closed_at(poll_id) == close_stamp
        assert region.book.get(poll_id).closed


async def test_every_region_closes_at_the_closing_time_with_the_same_stamp(mesh: Mesh) -> None:
    a, b, c = (mesh.regions[n] for n in "abc")
    closes_at = T0 + 2000
    created = await a.book.create(STREAM, "Who lifts the cup?", ["home", "away", "nobody"], closes_at)
    poll_id = created.poll_id
    await eventually(lambda: all(r.polls.spec(poll_id) is not None for r in mesh.regions.values()))
    await mesh.cut_off("c")
    await mesh.advance(2001)  # a and b are past the closing time; c (5 ms behind) is not
    # Each book's ticker (on its region's clock) issued the deadline close on its own.
    assert [r.polls.closed_at(poll_id) is not None for r in (a, b, c)] == [True, True, False]
    await mesh.vote("c", poll_id, "just-in-time", 1)
    await mesh.advance(10, "c")
    c.book.tick()  # the ticker's next wake-up may be a few ms away yet
    assert c.polls.closed_at(poll_id) == a.polls.closed_at(poll_id)
    with pytest.raises(ServiceError) as err:
        await mesh.vote("c", poll_id, "too-late", 2)
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    mesh.heal("c")
    await mesh.settle(poll_id, {"just-in-time": 1})
    stamps = {r.polls.closed_at(poll_id) for r in mesh.regions.values()}
    assert stamps == {deadline_stamp(closes_at)}
    assert all(r.book.get(poll_id).tallies == (0, 1, 0) for r in mesh.regions.values())
