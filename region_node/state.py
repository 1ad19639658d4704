"""A region node's replicated state: the collections reactmesh gossips, by name, and how each travels.

- ``TOTALS`` ("totals"): KeyedGCounter keyed (stream, emoji), the exact reaction counts.
- ``WINDOWS`` ("windows"): KeyedGCounter keyed (stream, emoji, window_start_s), per-second history,
  so history merges across regions like the totals do. Each node prunes it by its own retention,
  so anti-entropy digests leave it out (a repair would bring pruned windows back).
- ``WATERMARKS`` ("watermarks"): MaxMap session id -> highest applied seq, so an aggregator in
  another region can tell a batch counted here from a new one after a client fails over.
- ``MUTES``, ``DRAINS``, ``FLAGS`` ("mutes", "drains", "flags"): ExpiringMaps (``merge.expiring``) of the
  moderation (``region_node.moderation``): viewer id -> mute, stream id -> drain, viewer id -> abuse flag.
- ``POLLS`` ("polls"): a PollSet, held only by broadcasters (``RegionState(extra={POLLS: PollSet()})``).
- ``COMMENTS`` ("comments"): a CommentSet (``merge.comments``), held only by broadcasters like POLLS, so it
  travels broadcaster <-> broadcaster between regions and never to aggregators or edges.
- ``LATE_DELETES`` ("comment_deletes"): an ExpiringMap comment id -> delete, for comments already out of the
  CommentSet's hot window (only their comment files hold them); held and sent like COMMENTS.

``RegionState`` is a ReplicaState holding the standard collections (``standard_collections``: every one above
but POLLS and COMMENTS) plus any extra; an edge holds only the moderation (``moderation_collections``).
The gossip policy that merge.gossip takes as parameters lives here too: ``region_route`` (what each
role sends each other role), ``DIGESTED`` (what digests cover, the ``region_gossip_config`` default)
and the origin collection, TOTALS, whose growth dates a Delta for replication lag.
``RegionGossipNode`` is a GossipNode with all three.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from reactmesh.merge.clock import Clock
from reactmesh.merge.comments import CommentSet
from reactmesh.merge.contract import Replicated
from reactmesh.merge.expiring import ExpiringMap
from reactmesh.merge.gossip import GossipConfig, GossipNode, Route
from reactmesh.merge.keyed import KeyedGCounter
from reactmesh.merge.maxmap import MaxMap
from reactmesh.merge.replica import ReplicaState

TOTALS = "totals"
WINDOWS = "windows"
WATERMARKS = "watermarks"
MUTES = "mutes"
DRAINS = "drains"
FLAGS = "flags"
POLLS = "polls"
COMMENTS = "comments"
LATE_DELETES = "comment_deletes"
MODERATION = frozenset({MUTES, DRAINS, FLAGS})
"""The moderation collections: every node holds them, edges nothing else."""
COLLECTIONS = (TOTALS, WINDOWS, WATERMARKS, MUTES, DRAINS, FLAGS)
"""The collections every aggregator and broadcaster holds."""

DIGESTED = (TOTALS, WATERMARKS)
"""The collections anti-entropy digests cover by default."""


def moderation_collections() -> dict[str, Replicated]:
    """Fresh, empty MUTES, DRAINS and FLAGS."""
    return {MUTES: ExpiringMap(), DRAINS: ExpiringMap(), FLAGS: ExpiringMap()}


def comment_collections() -> dict[str, Replicated]:
    """Fresh, empty COMMENTS and LATE_DELETES: what a broadcaster adds for live comments."""
    return {COMMENTS: CommentSet(), LATE_DELETES: ExpiringMap()}


def standard_collections() -> dict[str, Replicated]:
    """Fresh, empty TOTALS, WINDOWS, WATERMARKS and the moderation collections."""
    return {TOTALS: KeyedGCounter(), WINDOWS: KeyedGCounter(), WATERMARKS: MaxMap(), **moderation_collections()}


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


_TO_AGGREGATORS = frozenset({WATERMARKS, *MODERATION})
_FROM_EDGES = frozenset({FLAGS})


def region_route(my_role: str, peer_role: str) -> Route:
    """Who sends whom what. Aggregators feed broadcasters everything and edges the moderation; broadcasters
    (region gateways) feed other broadcasters everything and their own region's aggregators the session
    watermarks (so an aggregator can recognise a batch that another region already counted when a client
    fails over) and the moderation; edges feed their aggregators the abuse flags they raise. So a mute taken by
    any broadcaster reaches every edge of every region in three hops, and a flag raised by any edge every
    broadcaster."""
    if my_role == "aggregator":
        return MODERATION if peer_role == "edge" else None
    if my_role == "broadcaster":
        return None if peer_role == "broadcaster" else _TO_AGGREGATORS
    if my_role == "edge":
        return _FROM_EDGES if peer_role == "aggregator" else frozenset()
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
