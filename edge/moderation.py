"""What an edge knows of the mesh's moderation: the MUTES, DRAINS and FLAGS maps, replicated to it by gossip.

The broadcaster's Admin service writes mutes and drains (``region_node.moderation``); gossip brings them to every
aggregator and from there to every edge, where ``Edge.admit`` consults them per batch: a viewer with a mute in
force is rejected VIEWER_MUTED, a stream with a drain in force STREAM_DRAINED. Flags go the other way: the edge's
anomaly detector (``edge.abuse``) raises one, ``raise_flag`` writes it into FLAGS, and gossip takes it to every
broadcaster (``Admin.ListFlagged``) and every other edge (shadow-mute, when on, uses flags from anywhere).

Each map is an ``merge.expiring.ExpiringMap``; a lookup is one dict read. Flags run at most ``FLAG_LONGEST_MS``
past their stamp, and each raise lifts the FLAGS floor to now minus that, so flags cost memory only while recent.
"""

from __future__ import annotations

from dataclasses import dataclass

from reactmesh.edge.abuse import Flag
from reactmesh.merge.clock import Clock
from reactmesh.merge.expiring import MAX_DURATION_MS, MAX_TEXT_CHARS, ExpiringMap
from reactmesh.merge.hlc import HlcTimestamp, HybridLogicalClock

FLAG_LONGEST_MS = 86_400_000
"""The longest a flag stays in force (a day); ``flag_ttl_s`` beyond it is cut to it."""


@dataclass(frozen=True, slots=True)
class FlagNote:
    """A flag's kind and detail, as the FLAGS record's note carries them ("kind: detail")."""

    kind: str
    detail: str

    def encode(self) -> str:
        return f"{self.kind}: {self.detail}"[:MAX_TEXT_CHARS]

    @classmethod
    def parse(cls, note: str) -> FlagNote:
        kind, _, detail = note.partition(": ")
        return cls(kind, detail)


class EdgeModeration:
    """The three maps an edge holds, its lookups, and its own writes (flags, and local test hooks)."""

    def __init__(self, node_id: str, clock: Clock) -> None:
        self.mutes = ExpiringMap()
        self.drains = ExpiringMap()
        self.flags = ExpiringMap()
        self._clock = clock
        self._node_id = node_id
        self._hlc = HybridLogicalClock(node_id, clock)

    def muted(self, viewer_id: str, now_ms: int) -> bool:
        return self.mutes.in_force(viewer_id, now_ms) is not None

    def drained(self, stream_id: str, now_ms: int) -> bool:
        return self.drains.in_force(stream_id, now_ms) is not None

    def flagged(self, viewer_id: str, now_ms: int) -> bool:
        return self.flags.in_force(viewer_id, now_ms) is not None

    def raise_flag(self, flag: Flag, ttl_s: float) -> None:
        """Record ``flag`` in FLAGS for ``ttl_s`` (at most a day), stamped by this edge; gossip sends it on."""
        stamp = self._stamp(self.flags)
        until = stamp.wall_ms + min(int(ttl_s * 1000), FLAG_LONGEST_MS)
        note = FlagNote(str(flag.kind.value), f"stream {flag.stream_id}: {flag.detail}").encode()
        self.flags.set(flag.viewer_id, until, stamp, note=note, actor=self._node_id[:MAX_TEXT_CHARS])
        self.flags.expire(self._clock.wall_ms() - FLAG_LONGEST_MS)

    # -- local writes: the edge alone, not replicated (the Admin service is the mesh-wide way) --

    def mute(self, viewer_id: str, until_ms: int) -> None:
        stamp = self._stamp(self.mutes)
        self.mutes.set(viewer_id, max(0, min(until_ms, stamp.wall_ms + MAX_DURATION_MS)), stamp)

    def unmute(self, viewer_id: str) -> None:
        self.mutes.set(viewer_id, 0, self._stamp(self.mutes))

    def drain(self, stream_id: str, until_ms: int) -> None:
        stamp = self._stamp(self.drains)
        self.drains.set(stream_id, max(0, min(until_ms, stamp.wall_ms + MAX_DURATION_MS)), stamp)

    def undrain(self, stream_id: str) -> None:
        self.drains.set(stream_id, 0, self._stamp(self.drains))

    def _stamp(self, m: ExpiringMap) -> HlcTimestamp:
        latest = m.latest_stamp()
        if latest is not None and latest.wall_ms - self._clock.wall_ms() <= HybridLogicalClock.DEFAULT_MAX_DRIFT_MS:
            self._hlc.update(latest)
        return self._hlc.now()
