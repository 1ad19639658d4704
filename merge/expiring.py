"""A map of records that expire: key (str) -> the latest record written, in force until its ``until_ms``.

For operator and detector decisions that must hold in every region for a while and then vanish: viewer mutes,
stream drains, abuse flags. Each key holds one LWW register (Shapiro et al. 2011, section 3.2.1) of
``Expiring(stamp, until_ms, note, actor)``, stamps from a hybrid logical clock (``merge.hlc``), so the write
with the greatest stamp wins in every region, whichever region took it. A later write lifts an earlier one by
carrying ``until_ms = 0`` (an unmute). A record is *in force* at wall time t iff ``t < until_ms``.

Expiry that holds everywhere, as in ``merge.maxmap``: the map has a floor (a max-register of Unix ms) and an
entry stamped before the floor is gone, and no merge brings it back. The state is (floor, entries stamped at or
after it); the join is (max of the floors, the key-wise max of the records, filtered by that floor). Records
are ordered by their stamp first, so the filter commutes with the record join and the whole is still a join:
commutative, associative and idempotent, and a delta (Almeida, Shoker and Baquero, "Delta State Replicated Data
Types", 2018) merges exactly like a full state. ``expire(f)`` raises the floor; it travels in deltas, so every
replica drops the same entries whatever order it hears things in.

When raising the floor is safe: a record runs at most ``MAX_DURATION_MS`` past its own stamp (``set`` and
``decode`` refuse longer ones), so ``expire(now - d)`` by a writer whose records run at most ``d`` removes only
records no longer in force, and a removed winner leaves the key out of force exactly as its expired record did.
Memory is bounded by the keys written since the floor, never by all keys ever written, and each ``expire``
costs O(log n) per entry it removes (a heap of stamps), never a scan.

Deltas for peers: every change stamps its key in a ``merge.deltalog.DeltaLog``; a floor change takes a version
of its own (``tick``) and rides along in ``delta_since`` whenever that version falls in the covered range.

Equality: the same floor and the same record for every key. Equal maps may encode to different bytes.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from reactmesh.merge import tags
from reactmesh.merge.codec import open_as, parse_body, seal_as
from reactmesh.merge.contract import Replicated
from reactmesh.merge.deltalog import DeltaLog
from reactmesh.merge.errors import CRDTMisuse, DecodeError
from reactmesh.merge.hlc import HlcTimestamp
from reactmesh.merge.tags import Tag
from reactmesh.v1 import crdt_pb2

MAX_DURATION_MS = 30 * 86_400_000
"""The longest a record may run past its stamp's wall time: 30 days (the Admin API's longest mute)."""

MAX_TEXT_CHARS = 1024
"""The longest ``note`` or ``actor``."""


@dataclass(frozen=True, order=True, slots=True)
class Expiring:
    """One record: written at ``stamp``, in force while the wall clock is before ``until_ms``."""

    stamp: HlcTimestamp
    until_ms: int
    note: str = ""
    actor: str = ""

    def in_force(self, now_ms: int) -> bool:
        return now_ms < self.until_ms


def _check(key: str, record: Expiring) -> str | None:
    """Why ``record`` cannot be stored under ``key``, or None."""
    if not key:
        return "key must be a non-empty string"
    if not 0 <= record.until_ms <= record.stamp.wall_ms + MAX_DURATION_MS:
        return (
            f"until_ms {record.until_ms} of key {key!r} must be 0..stamp + {MAX_DURATION_MS} ms "
            f"(stamp wall {record.stamp.wall_ms})"
        )
    if len(record.note) > MAX_TEXT_CHARS or len(record.actor) > MAX_TEXT_CHARS:
        return f"note and actor of key {key!r} must be at most {MAX_TEXT_CHARS} chars"
    return None


class ExpiringMap:
    """key (str) -> the greatest-stamped Expiring record; entries stamped before ``floor_ms`` are gone."""

    TAG: ClassVar[Tag] = tags.EXPIRING_MAP
    TYPE: ClassVar[str] = TAG.type

    __slots__ = ("_by_stamp", "_entries", "_floor", "_floor_version", "_latest", "_log")

    def __init__(self) -> None:
        self._entries: dict[str, Expiring] = {}
        self._floor = 0
        self._floor_version = 0
        self._log: DeltaLog[str] = DeltaLog()
        # (stamp wall ms, key) of every write kept, stale ones included; popped lazily by ``expire``.
        self._by_stamp: list[tuple[int, str]] = []
        self._latest: HlcTimestamp | None = None

    @classmethod
    def new(cls) -> ExpiringMap:
        return cls()

    # -- reading -----------------------------------------------------------------------------

    @property
    def version(self) -> int:
        return self._log.version

    @property
    def floor_ms(self) -> int:
        return self._floor

    def value(self) -> dict[str, Expiring]:
        """key -> its winning record, in force or not."""
        return dict(self._entries)

    def get(self, key: str) -> Expiring | None:
        return self._entries.get(key)

    def in_force(self, key: str, now_ms: int) -> Expiring | None:
        """``key``'s record if it is in force at ``now_ms``."""
        record = self._entries.get(key)
        return record if record is not None and now_ms < record.until_ms else None

    def items_in_force(self, now_ms: int) -> Iterator[tuple[str, Expiring]]:
        """(key, record) of every record in force at ``now_ms``."""
        return ((k, r) for k, r in self._entries.items() if now_ms < r.until_ms)

    def latest_stamp(self) -> HlcTimestamp | None:
        """The greatest stamp this replica has held (records since dropped included), to feed
        ``HybridLogicalClock.update``; O(1)."""
        return self._latest

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    # -- mutating ----------------------------------------------------------------------------

    def set(self, key: str, until_ms: int, stamp: HlcTimestamp, note: str = "", actor: str = "") -> ExpiringMap:
        """Write ``key``'s record; return the delta (empty if an equal or later record, or the floor, wins).

        CRDTMisuse for an empty key, ``until_ms`` outside 0..stamp + MAX_DURATION_MS, or text too long.
        """
        record = Expiring(stamp, until_ms, note, actor)
        why = _check(key, record)
        if why is not None:
            raise CRDTMisuse(f"expiring_map: {why}")
        delta = ExpiringMap()
        if self._absorb(key, record):
            delta._entries[key] = record
        return delta

    def expire(self, floor_ms: int) -> ExpiringMap:
        """Raise the floor to ``floor_ms`` (only upwards), dropping every entry stamped before it; return the delta.

        Safe when every record stamped before ``floor_ms`` is no longer in force (see the module docstring).
        """
        delta = ExpiringMap()
        if floor_ms > self._floor:
            self._raise_floor(floor_ms)
            delta._floor = floor_ms
        return delta

    def merge(self, other: ExpiringMap) -> list[str]:
        """Join ``other`` (a state or a delta) in place; return the keys whose record changed."""
        if other._floor > self._floor:
            self._raise_floor(other._floor)
        return [key for key, record in other._entries.items() if self._absorb(key, record)]

    def _absorb(self, key: str, record: Expiring) -> bool:
        if record.stamp.wall_ms < self._floor:
            return False
        old = self._entries.get(key)
        if old is not None and old >= record:
            return False
        self._entries[key] = record
        self._log.touch(key)
        if self._latest is None or record.stamp > self._latest:
            self._latest = record.stamp
        heap = self._by_stamp
        heapq.heappush(heap, (record.stamp.wall_ms, key))
        if len(heap) > 2 * len(self._entries) + 64:  # stale pairs of overwritten or dropped keys
            self._compact()
        return True

    def _compact(self) -> None:
        self._by_stamp = [(r.stamp.wall_ms, k) for k, r in self._entries.items()]
        heapq.heapify(self._by_stamp)

    def _raise_floor(self, floor_ms: int) -> None:
        self._floor = floor_ms
        self._floor_version = self._log.tick()
        heap, entries = self._by_stamp, self._entries
        while heap and heap[0][0] < floor_ms:
            _, key = heapq.heappop(heap)
            record = entries.get(key)
            if record is not None and record.stamp.wall_ms < floor_ms:
                del entries[key]
                self._log.forget(key)

    # -- deltas ------------------------------------------------------------------------------

    def delta_since(self, version: int, limit: int | None = None) -> tuple[ExpiringMap, int]:
        """The join of every change after ``version`` (at most ``limit`` keys) and the version it covers."""
        changed, upto = self._log.since(version, limit)
        delta = ExpiringMap()
        for key in changed:
            delta._entries[key] = self._entries[key]
        if self._floor and version < self._floor_version <= upto:
            delta._floor = self._floor
        return delta, upto

    def copy(self) -> ExpiringMap:
        out = ExpiringMap()
        out.merge(self)
        return out

    # -- equality and codec ------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExpiringMap) and self._floor == other._floor and self._entries == other._entries

    def __hash__(self) -> int:
        raise TypeError("ExpiringMap is mutable and unhashable")

    def __repr__(self) -> str:
        return f"ExpiringMap(floor_ms={self._floor}, entries={self._entries!r})"

    def encode(self) -> bytes:
        body = crdt_pb2.ExpiringMapState(floor_ms=self._floor)
        add = body.entries.add
        for key, r in self._entries.items():
            add(key=key, stamp=r.stamp.to_proto(), until_ms=r.until_ms, note=r.note, actor=r.actor)
        return seal_as(self.TAG, body)

    @classmethod
    def decode(cls, data: bytes) -> ExpiringMap:
        """The map ``data`` encodes; DecodeError for anything else (a record out of bounds included)."""
        raw = open_as(data, cls.TAG)
        body = crdt_pb2.ExpiringMapState()
        parse_body(raw, body, cls.TYPE)
        if body.floor_ms < 0:
            raise DecodeError(f"expiring_map body: negative floor {body.floor_ms}")
        out = cls()
        if body.floor_ms:
            out._raise_floor(body.floor_ms)
        for entry in body.entries:
            if not entry.HasField("stamp"):
                raise DecodeError(f"expiring_map body: entry for key {entry.key!r} has no stamp")
            record = Expiring(HlcTimestamp.from_proto(entry.stamp), entry.until_ms, entry.note, entry.actor)
            why = _check(entry.key, record)
            if why is not None:
                raise DecodeError(f"expiring_map body: {why}")
            out._absorb(entry.key, record)
        return out


_: type[Replicated] = ExpiringMap
