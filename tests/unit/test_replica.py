"""ReplicaState holds exactly the collections its caller names; GossipNode's routes, digests and
origin tracking are parameters, with neutral defaults (everything routed, nothing digested, no origin)."""

from __future__ import annotations

import asyncio

import pytest

from reactmesh.merge.clock import FakeClock
from reactmesh.merge.errors import DecodeError
from reactmesh.merge.gossip import GossipConfig, GossipNode, everything
from reactmesh.merge.keyed import KeyedGCounter
from reactmesh.merge.maxmap import MaxMap
from reactmesh.merge.replica import ReplicaState
from reactmesh.v1 import gossip_pb2

T0 = 1_700_000_000_000


def counts(key: str, n: int) -> KeyedGCounter:
    delta = KeyedGCounter()
    delta.increment((key,), "r1", n)
    return delta


def state() -> ReplicaState:
    return ReplicaState({"counts": KeyedGCounter(), "seen": MaxMap()})


def test_a_replica_state_holds_exactly_the_collections_it_is_given() -> None:
    assert ReplicaState({}).collections == {}
    s = state()
    assert list(s.collections) == ["counts", "seen"]
    assert s.versions() == {"counts": 0, "seen": 0}


def test_collection_returns_the_named_collection_checked_against_its_type() -> None:
    s = state()
    assert s.collection("counts", KeyedGCounter) is s.collections["counts"]
    with pytest.raises(TypeError, match="'seen' holds MaxMap, not KeyedGCounter"):
        s.collection("seen", KeyedGCounter)
    with pytest.raises(KeyError):
        s.collection("absent", MaxMap)


def test_an_empty_collection_name_is_refused() -> None:
    with pytest.raises(ValueError, match="non-empty name"):
        ReplicaState({"": MaxMap()})


def test_merge_reaches_only_known_collections_of_the_same_type() -> None:
    s = state()
    heard: list[tuple[str, list[object]]] = []
    s.add_listener(lambda name, _, grown: heard.append((name, list(grown))))
    assert s.merge_part("counts", counts("a", 2).encode()) == [("a",)]
    assert heard == [("counts", [("a",)])]
    with pytest.raises(DecodeError, match="unknown collection 'other'"):
        s.merge_part("other", counts("a", 2).encode())
    with pytest.raises(TypeError, match="holds MaxMap, not KeyedGCounter"):
        s.merge("seen", counts("a", 2))


def test_delta_since_reads_every_collection_from_the_versions_given() -> None:
    s = state()
    s.merge("counts", counts("a", 1))
    s.merge("seen", MaxMap().set("k", 3))
    parts, upto = s.delta_since({})
    assert [name for name, _ in parts] == ["counts", "seen"]
    assert upto == {"counts": 1, "seen": 1}
    assert s.delta_since(upto) == ([], upto)
    assert s.delta_since({}, only={"seen"})[1] == {"seen": 1}


def test_gossip_defaults_name_no_collection() -> None:
    assert GossipConfig().digest_collections == ()
    assert everything("any", "other") is None
    node = GossipNode("n", "r", "role", state(), FakeClock(T0))
    assert node.origin_collection is None


class OneWay:
    """A transport whose peer says Hello and then only listens; what we write is kept."""

    def __init__(self) -> None:
        self.written: list[gossip_pb2.GossipMessage] = []
        self._hello = gossip_pb2.GossipMessage(hello=gossip_pb2.Hello(node_id="peer", region="p", role="role"))
        self.ended = asyncio.Event()

    async def read(self) -> object:
        if self._hello is not None:
            hello, self._hello = self._hello, None
            return hello
        await self.ended.wait()
        return None

    async def write(self, message: gossip_pb2.GossipMessage) -> None:
        self.written.append(message)

    def deltas(self) -> list[gossip_pb2.Delta]:
        return [m.delta for m in self.written if m.WhichOneof("body") == "delta"]


async def first_delta(node: GossipNode) -> gossip_pb2.Delta:
    transport = OneWay()
    session = asyncio.create_task(node.run_session(transport, dialer=True))
    try:
        for _ in range(100):
            if transport.deltas():
                return transport.deltas()[0]
            await asyncio.sleep(0)
        raise AssertionError("no Delta sent")
    finally:
        transport.ended.set()
        await session


@pytest.mark.parametrize(
    ("origin", "grown", "origin_ms"),
    [("counts", "counts", T0), ("counts", "seen", T0 + 5000), (None, "counts", T0 + 5000)],
    ids=["origin-collection-grew", "another-collection-grew", "no-origin-collection"],
)
async def test_a_delta_is_dated_by_the_growth_of_the_origin_collection_only(
    origin: str | None, grown: str, origin_ms: int
) -> None:
    clock = FakeClock(T0)
    s = state()
    node = GossipNode("n", "r", "role", s, clock, origin_collection=origin)
    s.merge(grown, counts("a", 1) if grown == "counts" else MaxMap().set("k", 1))
    await clock.advance(5)
    delta = await first_delta(node)
    assert [p.collection for p in delta.parts] == [grown]
    assert (delta.origin_time_ms, delta.origin_region) == (origin_ms, "r")


async def test_the_default_route_sends_every_collection_to_any_role() -> None:
    s = state()
    s.merge("counts", counts("a", 1))
    s.merge("seen", MaxMap().set("k", 1))
    delta = await first_delta(GossipNode("n", "r", "role", s, FakeClock(T0)))
    assert [p.collection for p in delta.parts] == ["counts", "seen"]
