"""A region node's replicated state: the collections reactmesh gossips, by name, and how each travels.

- ``TOTALS`` ("totals"): KeyedGCounter keyed (stream, emoji), the exact reaction counts.
- ``WINDOWS`` ("windows"): KeyedGCounter keyed (stream, emoji, window_start_s), per-second history,
  so history merges across regions like the totals do. Each node prunes it by its own retention,
  so anti-entropy digests leave it out (a repair would bring pruned windows back).
- ``WATERMARKS`` ("watermarks"): MaxMap session id -> highest applied seq, so an aggregator in
  another region can tell a batch counted here from a new one after a client fails over.
- ``POLLS`` ("polls"): a PollSet, held only by broadcasters (``RegionState(extra={POLLS: PollSet()})``).

``RegionState`` is a ReplicaState holding the first three (``standard_collections``) plus any extra.
The gossip policy that merge.gossip takes as parameters lives here too: ``region_route`` (what each
role sends each other role), ``DIGESTED`` (what digests cover, the ``region_gossip_config`` default)
and the origin collection, TOTALS, whose growth dates a Delta for replication lag.
``RegionGossipNode`` is a GossipNode with all three.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from reactmesh.merge.clock import Clock
from reactmesh.merge.contract import Replicated
from reactmesh.merge.gossip import GossipConfig, GossipNode, Route
from reactmesh.merge.keyed import KeyedGCounter
from reactmesh.merge.maxmap import MaxMap
from reactmesh.merge.replica import ReplicaState

TOTALS = "totals"
WINDOWS = "windows"
WATERMARKS = "watermarks"
POLLS = "polls"
COLLECTIONS = (TOTALS, WINDOWS, WATERMARKS)
"""The collections every region node holds."""

DIGESTED = (TOTALS, WATERMARKS)
"""The collections anti-entropy digests cover by default."""


def standard_collections() -> dict[str, Replicated]:
    """Fresh, empty TOTALS, WINDOWS and WATERMARKS."""
    return {TOTALS: KeyedGCounter(), WINDOWS: KeyedGCounter(), WATERMARKS: MaxMap()}


class RegionState(ReplicaState):
    """The standard collections plus ``extra`` (name -> collection); ValueError if a name is taken twice."""

    def __init__(self, extra: Mapping[str, Replicated] | None = None) -> None:
        collections = standard_collections()
        for name, coll in (extra or {}).items():
            if name in collections:
                raise ValueError(f"collection {name!r} already exists")
            collections[name] = coll
        super().__init__(collections)

    @property
    def totals(self) -> KeyedGCounter:
        return self.collection(TOTALS, KeyedGCounter)

    @property
    def windows(self) -> KeyedGCounter:
        return self.collection(WINDOWS, KeyedGCounter)

    @property
    def watermarks(self) -> MaxMap:
        return self.collection(WATERMARKS, MaxMap)


def region_route(my_role: str, peer_role: str) -> Route:
    """Aggregators feed everyone everything; broadcasters (region gateways) feed other broadcasters
    everything and their own region's aggregators the session watermarks, so an aggregator can
    recognise a batch that another region already counted when a client fails over."""
    if my_role == "aggregator":
        return None
    if my_role == "broadcaster":
        return None if peer_role == "broadcaster" else frozenset({WATERMARKS})
    return frozenset()


def region_gossip_config() -> GossipConfig:
    """GossipConfig's defaults with ``digest_collections=DIGESTED``."""
    return GossipConfig(digest_collections=DIGESTED)


class RegionGossipNode(GossipNode):
    """A GossipNode with the region's policy: ``region_route``, TOTALS as the origin collection, and
    ``region_gossip_config()`` when no config is given."""

    def __init__(
        self,
        node_id: str,
        region: str,
        role: str,
        state: ReplicaState,
        clock: Clock,
        config: GossipConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(
            node_id,
            region,
            role,
            state,
            clock,
            config or region_gossip_config(),
            region_route,
            rng,
            origin_collection=TOTALS,
        )
