"""A map of G-counters: key -> (replica id -> count), with per-peer delta extraction.

Keys are tuples of str and int, such as ``("a", "b")`` or ``("a", "b", 60)``, so a family of
counters (one per name, or one per name and time bucket) is itself one CRDT. Each key is an
independent G-counter (Shapiro et al. 2011, section 3.1.1); the map's merge is the key-wise
G-counter merge, which keeps every law (commutative, associative, idempotent).

Deltas (Almeida et al., "Delta State Replicated Data Types", 2018): ``increment`` returns the
delta-state of its key, and every change stamps the key in a ``merge.deltalog.DeltaLog``, so
``delta_since(v)`` returns the sub-state of the keys changed after version v — the join of every
delta since then — and a replica that records the version each peer acknowledged sends that peer
exactly what it has not acknowledged (Akka's delta/resetDelta, per peer).

Equality: same keys with the same non-zero slots.
Pruning (retention of old time buckets) is a local operation, not a CRDT mutation: every replica
prunes by the same rule, and callers drop pruned keys from incoming deltas; a pruned key leaves
the version log too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import ClassVar, overload

from reactmesh.merge import tags
from reactmesh.merge.codec import open_as, parse_body, seal_as
from reactmesh.merge.contract import Replicated
from reactmesh.merge.deltalog import DeltaLog
from reactmesh.merge.errors import CRDTMisuse, DecodeError
from reactmesh.merge.tags import Tag
from reactmesh.v1 import crdt_pb2

Key = tuple[str | int, ...]
_SEP = "\x1f"


def encode_key(key: Key) -> str:
    """Encode a key tuple as text: each part tagged 's' (str) or 'i' (int), joined by 0x1f."""
    if not key:
        raise CRDTMisuse("a key needs at least one part")
    parts = []
    for part in key:
        if isinstance(part, str):
            if _SEP in part:
                raise CRDTMisuse(f"key part {part!r} contains the separator 0x1f")
            parts.append(f"s{part}")
        elif isinstance(part, int) and not isinstance(part, bool):
            parts.append(f"i{int(part)}")
        else:
            raise CRDTMisuse(f"key part {part!r} is neither str nor int")
    return _SEP.join(parts)


def decode_key(text: str) -> Key:
    """Inverse of encode_key; DecodeError for text it did not produce."""
    out: list[str | int] = []
    if not text:
        raise DecodeError("empty key")
    for part in text.split(_SEP):
        tag, rest = part[:1], part[1:]
        if tag == "s":
            out.append(rest)
        elif tag == "i":
            try:
                out.append(int(rest))
            except ValueError as exc:
                raise DecodeError(f"bad integer key part {rest!r}") from exc
        else:
            raise DecodeError(f"bad key part {part!r}")
    return tuple(out)


class KeyedGCounter:
    """key -> G-counter slots; merge = key-wise per-replica max; value(key) = sum of slots."""

    TAG: ClassVar[Tag] = tags.KEYED_GCOUNTER
    TYPE: ClassVar[str] = TAG.type

    __slots__ = ("_log", "_slots")

    def __init__(self) -> None:
        self._slots: dict[Key, dict[str, int]] = {}
        self._log: DeltaLog[Key] = DeltaLog()

    @classmethod
    def new(cls) -> KeyedGCounter:
        return cls()

    # -- reading -----------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """Local change counter; pass it back to ``delta_since`` later."""
        return self._log.version

    @overload
    def value(self) -> dict[Key, int]: ...

    @overload
    def value(self, key: Key) -> int: ...

    def value(self, key: Key | None = None) -> dict[Key, int] | int:
        """The count of ``key`` (0 if absent); without a key, every key's count."""
        if key is None:
            return dict(self.items())
        slots = self._slots.get(key)
        return sum(slots.values()) if slots else 0

    def slots(self, key: Key) -> Mapping[str, int]:
        return self._slots.get(key, {})

    def keys(self) -> Iterable[Key]:
        return self._slots.keys()

    def items(self) -> Iterator[tuple[Key, int]]:
        """(key, value) pairs."""
        for key, slots in self._slots.items():
            yield key, sum(slots.values())

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, key: object) -> bool:
        return key in self._slots

    # -- mutating ----------------------------------------------------------------------------

    def increment(self, key: Key, replica: str, n: int = 1) -> KeyedGCounter:
        """Add ``n`` (>= 0) to ``replica``'s slot of ``key``; return the delta."""
        if not replica:
            raise CRDTMisuse("replica id must be a non-empty string")
        if n < 0:
            raise CRDTMisuse(f"a G-counter only grows: increment by {n} refused")
        delta = KeyedGCounter()
        if n == 0:
            return delta
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = {}
        new = slots.get(replica, 0) + n
        slots[replica] = new
        self._log.touch(key)
        delta._slots[key] = {replica: new}
        return delta

    def merge(self, other: KeyedGCounter) -> list[Key]:
        """Join ``other`` (a state or a delta) in place; return the keys whose value grew."""
        grown: list[Key] = []
        for key, theirs in other._slots.items():
            mine = self._slots.get(key)
            if mine is None:
                if not theirs:
                    continue
                self._slots[key] = dict(theirs)
                self._log.touch(key)
                grown.append(key)
                continue
            changed = False
            for replica, count in theirs.items():
                if count > mine.get(replica, 0):
                    mine[replica] = count
                    changed = True
            if changed:
                self._log.touch(key)
                grown.append(key)
        return grown

    def prune(self, drop: Callable[[Key], bool]) -> int:
        """Forget every key for which ``drop(key)`` is true (local retention); return how many."""
        doomed = [k for k in self._slots if drop(k)]
        for k in doomed:
            del self._slots[k]
            self._log.forget(k)
        return len(doomed)

    # -- deltas ------------------------------------------------------------------------------

    def delta_since(self, version: int, limit: int | None = None) -> tuple[KeyedGCounter, int]:
        """The join of every change after ``version``, and the version it brings a peer up to.

        With ``limit``, at most that many keys (the oldest changes first); the returned version
        then covers only what was included, so the caller can send the rest in later rounds.
        """
        changed, upto = self._log.since(version, limit)
        delta = KeyedGCounter()
        for key in changed:
            delta._slots[key] = dict(self._slots[key])
        return delta, upto

    def subset(self, keys: Iterable[Key]) -> KeyedGCounter:
        """The sub-state holding only ``keys`` (those present)."""
        out = KeyedGCounter()
        for key in keys:
            slots = self._slots.get(key)
            if slots:
                out._slots[key] = dict(slots)
        return out

    def copy(self) -> KeyedGCounter:
        out = KeyedGCounter()
        for key, slots in self._slots.items():
            out._slots[key] = dict(slots)
            out._log.touch(key)
        return out

    # -- equality and codec ------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeyedGCounter):
            return False
        mine = {k: {r: c for r, c in s.items() if c} for k, s in self._slots.items()}
        theirs = {k: {r: c for r, c in s.items() if c} for k, s in other._slots.items()}
        return {k: s for k, s in mine.items() if s} == {k: s for k, s in theirs.items() if s}

    def __hash__(self) -> int:
        raise TypeError("KeyedGCounter is mutable and unhashable")

    def __repr__(self) -> str:
        return f"KeyedGCounter({self._slots!r})"

    def encode(self) -> bytes:
        index: dict[str, int] = {}
        body = crdt_pb2.KeyedGCounterState()
        for key, slots in self._slots.items():
            entry = body.keys.add(key=encode_key(key))
            for replica, count in slots.items():
                i = index.get(replica)
                if i is None:
                    i = index[replica] = len(index)
                    body.replicas.append(replica)
                entry.replica_index.append(i)
                entry.counts.append(count)
        return seal_as(self.TAG, body)

    @classmethod
    def decode(cls, data: bytes) -> KeyedGCounter:
        raw = open_as(data, cls.TAG)
        body = crdt_pb2.KeyedGCounterState()
        parse_body(raw, body, cls.TYPE)
        replicas = list(body.replicas)
        if any(not r for r in replicas):
            raise DecodeError("keyed_gcounter body: empty replica id")
        out = cls()
        for entry in body.keys:
            if len(entry.replica_index) != len(entry.counts):
                raise DecodeError("keyed_gcounter body: replica_index and counts differ in length")
            key = decode_key(entry.key)
            slots = out._slots.get(key) or {}
            for i, count in zip(entry.replica_index, entry.counts, strict=True):
                if i >= len(replicas):
                    raise DecodeError(f"keyed_gcounter body: replica index {i} out of range")
                replica = replicas[i]
                if count > slots.get(replica, 0):
                    slots[replica] = count
            if slots:  # a key with no positive count is the bottom: absent
                out._slots[key] = slots
                out._log.touch(key)
        return out


_: type[Replicated] = KeyedGCounter
