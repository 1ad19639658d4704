"""The region's collections and gossip policy, now named in region_node/state.py rather than in merge/:
the standard collections, the role routes, the digested collections and the origin collection."""

from __future__ import annotations

import pytest

from reactmesh.merge.clock import FakeClock
from reactmesh.merge.expiring import ExpiringMap
from reactmesh.merge.gossip import GossipConfig
from reactmesh.merge.keyed import KeyedGCounter
from reactmesh.merge.maxmap import MaxMap
from reactmesh.merge.polls import PollSet
from reactmesh.region_node.config import NodeConfig, from_mapping
from reactmesh.region_node.state import (
    DIGESTED,
    DRAINS,
    FLAGS,
    MUTES,
    POLLS,
    TOTALS,
    WATERMARKS,
    WINDOWS,
    RegionGossipNode,
    RegionState,
    region_route,
)


def test_a_region_state_holds_the_standard_collections_and_any_extra() -> None:
    s = RegionState()
    assert {name: type(c) for name, c in s.collections.items()} == {
        TOTALS: KeyedGCounter,
        WINDOWS: KeyedGCounter,
        WATERMARKS: MaxMap,
        MUTES: ExpiringMap,
        DRAINS: ExpiringMap,
        FLAGS: ExpiringMap,
    }
    assert s.totals is s.collections[TOTALS] and s.windows is s.collections[WINDOWS]
    assert s.watermarks is s.collections[WATERMARKS]
    polls = PollSet()
    assert RegionState(extra={POLLS: polls}).collections[POLLS] is polls


def test_an_extra_collection_may_not_replace_a_standard_one() -> None:
    with pytest.raises(ValueError, match="'totals' already exists"):
        RegionState(extra={TOTALS: KeyedGCounter()})


def test_two_region_states_share_no_collection() -> None:
    a, b = RegionState(), RegionState()
    a.totals.increment(("s", "like"), "r", 1)
    assert len(b.totals) == 0


@pytest.mark.parametrize(
    ("sender", "receiver", "route"),
    [
        ("aggregator", "aggregator", None),
        ("aggregator", "broadcaster", None),
        ("broadcaster", "broadcaster", None),
        ("broadcaster", "aggregator", frozenset({WATERMARKS, MUTES, DRAINS, FLAGS})),
        ("aggregator", "edge", frozenset({MUTES, DRAINS, FLAGS})),
        ("edge", "aggregator", frozenset({FLAGS})),
        ("edge", "broadcaster", frozenset()),
    ],
)
def test_region_route_feeds_aggregators_watermarks_and_moderation_and_edges_only_moderation(
    sender: str, receiver: str, route: frozenset[str] | None
) -> None:
    assert region_route(sender, receiver) == route


def test_a_region_gossip_node_tracks_totals_origins_and_digests_totals_and_watermarks() -> None:
    node = RegionGossipNode("a/agg-0", "a", "aggregator", RegionState(), FakeClock())
    assert node.origin_collection == TOTALS
    assert node.config.digest_collections == DIGESTED == (TOTALS, WATERMARKS)
    given = GossipConfig(digest_collections=(TOTALS,))
    assert RegionGossipNode("a/agg-0", "a", "aggregator", RegionState(), FakeClock(), given).config is given


def test_node_config_digests_the_region_collections_unless_told_otherwise() -> None:
    assert NodeConfig(region="a").gossip.digest_collections == DIGESTED
    assert from_mapping({"region": "a"}).gossip.digest_collections == DIGESTED
    assert from_mapping({"region": "a", "gossip": {"digest_buckets": 8}}).gossip.digest_collections == DIGESTED
    told = from_mapping({"region": "a", "gossip": {"digest_collections": ["totals"]}})
    assert told.gossip.digest_collections == (TOTALS,)
