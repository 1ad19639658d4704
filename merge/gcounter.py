"""Grow-only counter (G-counter), state-based with deltas.

Shapiro et al., "A comprehensive study of Convergent and Commutative Replicated Data Types"
(INRIA RR-7506, 2011), section 3.1.1: each replica increments only its own slot; merge takes the
per-replica maximum; the value is the sum of slots. Deltas follow Almeida, Shoker and Baquero,
"Delta State Replicated Data Types" (2018): ``increment`` returns the delta-state {replica: new
count}, and merging that delta equals merging the full state.

Equality: two G-counters are equal when they hold the same non-zero slots.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from reactmesh.merge import tags
from reactmesh.merge.codec import open_as, parse_body, seal_as
from reactmesh.merge.contract import CRDT
from reactmesh.merge.errors import CRDTMisuse, DecodeError
from reactmesh.merge.tags import Tag
from reactmesh.v1 import crdt_pb2


class GCounter:
    """Replica id -> count; merge = per-replica max; value = sum."""

    TAG: ClassVar[Tag] = tags.GCOUNTER
    TYPE: ClassVar[str] = TAG.type

    __slots__ = ("_slots",)

    def __init__(self, slots: Mapping[str, int] | None = None) -> None:
        self._slots: dict[str, int] = {}
        if slots:
            for replica, count in slots.items():
                _check_slot(replica, count)
                if count:
                    self._slots[replica] = count

    @classmethod
    def new(cls) -> GCounter:
        return cls()

    def value(self) -> int:
        return sum(self._slots.values())

    @property
    def slots(self) -> Mapping[str, int]:
        return self._slots

    def increment(self, replica: str, n: int = 1) -> GCounter:
        """Add ``n`` (>= 0) to ``replica``'s slot; return the delta."""
        if not replica:
            raise CRDTMisuse("replica id must be a non-empty string")
        if n < 0:
            raise CRDTMisuse(f"a G-counter only grows: increment by {n} refused")
        new = self._slots.get(replica, 0) + n
        if new:
            self._slots[replica] = new
        delta = GCounter.__new__(GCounter)
        delta._slots = {replica: new} if new else {}
        return delta

    def merge(self, other: GCounter) -> list[str]:
        """Join ``other`` (a state or a delta) into this counter, in place; return the replicas whose slot grew."""
        mine = self._slots
        grown: list[str] = []
        for replica, count in other._slots.items():
            if count > mine.get(replica, 0):
                mine[replica] = count
                grown.append(replica)
        return grown

    def copy(self) -> GCounter:
        c = GCounter.__new__(GCounter)
        c._slots = dict(self._slots)
        return c

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GCounter) and self._slots == other._slots

    def __hash__(self) -> int:  # mutable: not hashable
        raise TypeError("GCounter is mutable and unhashable")

    def __repr__(self) -> str:
        return f"GCounter({self._slots!r})"

    def encode(self) -> bytes:
        replicas = sorted(self._slots)
        body = crdt_pb2.GCounterState(replicas=replicas, counts=[self._slots[r] for r in replicas])
        return seal_as(self.TAG, body)

    @classmethod
    def decode(cls, data: bytes) -> GCounter:
        raw = open_as(data, cls.TAG)
        body = crdt_pb2.GCounterState()
        parse_body(raw, body, cls.TYPE)
        if len(body.replicas) != len(body.counts):
            raise DecodeError("gcounter body: replicas and counts differ in length")
        slots: dict[str, int] = {}
        for replica, count in zip(body.replicas, body.counts, strict=True):
            if not replica:
                raise DecodeError("gcounter body: empty replica id")
            if count > slots.get(replica, 0):
                slots[replica] = count
        c = cls.__new__(cls)
        c._slots = slots
        return c


def _check_slot(replica: str, count: int) -> None:
    if not replica:
        raise CRDTMisuse("replica id must be a non-empty string")
    if count < 0:
        raise CRDTMisuse(f"slot {replica!r} has negative count {count}")


_: type[CRDT] = GCounter
