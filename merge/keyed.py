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

Representation (for memory: a node holds one entry per live (stream, emoji) and open window). One dict, key ->
one int holding every slot of the key and the delta log's version of its latest change::

    held := slot_{n-1} ... slot_1 slot_0 version     (version: 64 bits, each slot: 96 bits)
    slot := replica_index:32 count:64                 (replica_index: into this counter's replica table)

so a key with one replica slot costs one dict slot, its key tuple and a 44-byte int, instead of a dict per key
and a second dict of versions. The dict is kept in version order (a changed key is re-inserted), so it is its
own delta log, under the rules of ``merge.deltalog``. Replica ids and the str parts of keys are interned. Counts
are at most 2**64 - 1 (the wire's uint64).

Equality: same keys with the same non-zero slots.
Pruning (retention of old time buckets) is a local operation, not a CRDT mutation: every replica
prunes by the same rule, and callers drop pruned keys from incoming deltas; a pruned key leaves
the version log too.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, KeysView
from typing import ClassVar, overload

from reactmesh.merge import tags
from reactmesh.merge.codec import open_as, parse_body, seal_as
from reactmesh.merge.contract import Replicated
from reactmesh.merge.errors import CRDTMisuse, DecodeError
from reactmesh.merge.tags import Tag
from reactmesh.v1 import crdt_pb2

Key = tuple[str | int, ...]
_SEP = "\x1f"

MAX_COUNT = 2**64 - 1
MAX_REPLICAS = 2**32
_VBITS = 64
_VMASK = (1 << _VBITS) - 1
_CBITS = 64
_CMASK = (1 << _CBITS) - 1
_RMASK = MAX_REPLICAS - 1
_SLOT_BITS = 96


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

    __slots__ = ("_held", "_index", "_replicas", "_version")

    def __init__(self) -> None:
        self._held: dict[Key, int] = {}  # see the module docstring
        self._replicas: list[str] = []
        self._index: dict[str, int] = {}
        self._version = 0

    @classmethod
    def new(cls) -> KeyedGCounter:
        return cls()

    # -- reading -----------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """Local change counter; pass it back to ``delta_since`` later."""
        return self._version

    @overload
    def value(self) -> dict[Key, int]: ...

    @overload
    def value(self, key: Key) -> int: ...

    def value(self, key: Key | None = None) -> dict[Key, int] | int:
        """The count of ``key`` (0 if absent); without a key, every key's count."""
        if key is None:
            return dict(self.items())
        held = self._held.get(key)
        return _sum(held) if held else 0

    def slots(self, key: Key) -> dict[str, int]:
        """replica id -> count of ``key`` (empty if absent); a copy."""
        held = self._held.get(key)
        if not held:
            return {}
        names = self._replicas
        return {names[r]: c for r, c in _slots(held)}

    def slot(self, key: Key, replica: str) -> int:
        """``replica``'s count of ``key`` (0 if absent)."""
        held = self._held.get(key)
        r = self._index.get(replica)
        if not held or r is None:
            return 0
        for rr, c in _slots(held):
            if rr == r:
                return c
        return 0

    def keys(self) -> KeysView[Key]:
        return self._held.keys()

    def items(self) -> Iterator[tuple[Key, int]]:
        """(key, value) pairs."""
        for key, held in self._held.items():
            yield key, _sum(held)

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, key: object) -> bool:
        return key in self._held

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
        r = self._rid(replica)
        held = self._held.get(key)
        pairs = list(_slots(held)) if held else []
        for i, (rr, c) in enumerate(pairs):
            if rr == r:
                new = c + n
                pairs[i] = (r, new)
                break
        else:
            new = n
            pairs.append((r, n))
            if held is None:
                key = _intern(key)
        if new > MAX_COUNT:
            raise CRDTMisuse(f"a slot count is at most 2**64 - 1, {new} refused")
        self._put(key, _pack(pairs))
        delta._put(key, _pack([(delta._rid(replica), new)]))
        return delta

    def merge(self, other: KeyedGCounter) -> list[Key]:
        """Join ``other`` (a state or a delta) in place; return the keys whose value grew."""
        grown: list[Key] = []
        if not other._held:
            return grown
        to_mine = [self._rid(name) for name in other._replicas]
        get = self._held.get
        for key, theirs in other._held.items():
            mine = get(key)
            if mine is None:
                self._put(_intern(key), _pack([(to_mine[r], c) for r, c in _slots(theirs)]))
                grown.append(key)
                continue
            joined = dict(_slots(mine))
            changed = False
            for r, c in _slots(theirs):
                r = to_mine[r]
                if c > joined.get(r, 0):
                    joined[r] = c
                    changed = True
            if changed:
                self._put(key, _pack(joined.items()))
                grown.append(key)
        return grown

    def prune(self, drop: Callable[[Key], bool]) -> int:
        """Forget every key for which ``drop(key)`` is true (local retention); return how many."""
        held = self._held
        doomed = [k for k in held if drop(k)]
        for k in doomed:
            del held[k]
        return len(doomed)

    def _rid(self, replica: str) -> int:
        r = self._index.get(replica)
        if r is None:
            r = len(self._replicas)
            if r >= MAX_REPLICAS:
                raise CRDTMisuse(f"a keyed_gcounter holds at most {MAX_REPLICAS} replica ids")
            replica = sys.intern(replica)
            self._replicas.append(replica)
            self._index[replica] = r
        return r

    def _put(self, key: Key, packed: int) -> None:
        """Store ``packed`` slots as ``key``'s latest change (last in version order)."""
        self._version += 1
        held = self._held
        held.pop(key, None)
        held[key] = packed << _VBITS | self._version

    # -- deltas ------------------------------------------------------------------------------

    def delta_since(self, version: int, limit: int | None = None) -> tuple[KeyedGCounter, int]:
        """The join of every change after ``version``, and the version it brings a peer up to.

        With ``limit``, at most that many keys (the oldest changes first); the returned version
        then covers only what was included, so the caller can send the rest in later rounds.
        ``merge.deltalog`` states what the returned version guarantees; this counter keeps the same rules.
        """
        if limit is not None and limit < 0:
            raise CRDTMisuse(f"delta_since limit must be >= 0, got {limit}")
        changed: list[tuple[Key, int]] = []
        for key, held in reversed(self._held.items()):
            if held & _VMASK <= version:
                break
            changed.append((key, held))
        changed.reverse()
        if limit is not None and len(changed) > limit:
            del changed[limit:]
            upto = changed[-1][1] & _VMASK if changed else version
        else:
            upto = max(self._version, version)
        return self._sub(changed), upto

    def subset(self, keys: Iterable[Key]) -> KeyedGCounter:
        """The sub-state holding only ``keys`` (those present)."""
        get = self._held.get
        return self._sub((k, h) for k in keys if (h := get(k)))

    def copy(self) -> KeyedGCounter:
        return self._sub(self._held.items())

    def _sub(self, entries: Iterable[tuple[Key, int]]) -> KeyedGCounter:
        """A counter holding ``entries`` (key, held) of this one, sharing its replica table's order."""
        out = KeyedGCounter()
        out._replicas = list(self._replicas)
        out._index = dict(self._index)
        for key, held in entries:
            out._put(key, held >> _VBITS)
        return out

    # -- equality and codec ------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeyedGCounter) or len(self._held) != len(other._held):
            return False
        return all(key in other._held and self.slots(key) == other.slots(key) for key in self._held)

    def __hash__(self) -> int:
        raise TypeError("KeyedGCounter is mutable and unhashable")

    def __repr__(self) -> str:
        return f"KeyedGCounter({ {k: self.slots(k) for k in self._held}!r})"

    def encode(self) -> bytes:
        index: dict[int, int] = {}
        names = self._replicas
        body = crdt_pb2.KeyedGCounterState()
        for key, held in self._held.items():
            entry = body.keys.add(key=encode_key(key))
            for r, count in _slots(held):
                i = index.get(r)
                if i is None:
                    i = index[r] = len(index)
                    body.replicas.append(names[r])
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
        found: dict[Key, dict[int, int]] = {}
        for entry in body.keys:
            if len(entry.replica_index) != len(entry.counts):
                raise DecodeError("keyed_gcounter body: replica_index and counts differ in length")
            key = decode_key(entry.key)
            slots = found.get(key) or {}
            for i, count in zip(entry.replica_index, entry.counts, strict=True):
                if i >= len(replicas):
                    raise DecodeError(f"keyed_gcounter body: replica index {i} out of range")
                r = out._rid(replicas[i])
                if count > slots.get(r, 0):
                    slots[r] = count
            if slots:  # a key with no positive count is the bottom: absent
                found[key] = slots
        for key, slots in found.items():
            out._put(_intern(key), _pack(slots.items()))
        return out


def _slots(held: int) -> Iterator[tuple[int, int]]:
    """(replica index, count) of every slot in a held int."""
    s = held >> _VBITS
    while s:
        yield s >> _CBITS & _RMASK, s & _CMASK
        s >>= _SLOT_BITS


def _sum(held: int) -> int:
    s = held >> _VBITS
    if not s >> _SLOT_BITS:
        return s & _CMASK
    total = 0
    while s:
        total += s & _CMASK
        s >>= _SLOT_BITS
    return total


def _pack(pairs: Iterable[tuple[int, int]]) -> int:
    """The slots (replica index, count > 0) as one int, the first lowest."""
    out = 0
    shift = 0
    for r, c in pairs:
        out |= (r << _CBITS | c) << shift
        shift += _SLOT_BITS
    return out


def _intern(key: Key) -> Key:
    """``key`` with its str parts interned, so the many keys of one stream share its strings."""
    return tuple(sys.intern(p) if type(p) is str else p for p in key)


_: type[Replicated] = KeyedGCounter
