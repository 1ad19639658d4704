"""Last-writer-wins register map with a close marker: key -> int, e.g. one choice per voter.

A LWW register (Shapiro et al. 2011, section 3.2.1) keeps the value of the highest timestamp;
timestamps come from a hybrid logical clock (``merge.hlc``), so one key has one value globally
and may change it. The map also closes: a write counts only if stamped before the close, and the
close may reach a replica after later writes did. So each key keeps a bounded history rather
than one value:

- state of a key: the K (``history``, default 8) greatest (stamp, value) pairs of the union of
  every write seen for it; ``closed_at``: the earliest close seen, or None while open.
- merge: per key, union then keep the K greatest pairs; ``closed_at`` = min. Keeping the top K of
  a union is a join (the top K of A u B u C only needs the top K of each part), so merge is
  commutative, associative and idempotent, and deltas (Almeida et al., "Delta State Replicated
  Data Types", 2018) merge exactly like full states.
- counting value of a key: the value of its greatest pair stamped strictly before ``closed_at``
  (any pair while open); ``value()`` maps every key that has one to it; ``tally()`` counts keys
  per value.

The bound is part of the semantics: if a voter has K or more writes stamped at or after the
close, the earlier vote has been forgotten and the voter does not count. Writes a replica knows to
be after the close are not recorded at all (``set`` returns an empty delta), so only replicas
that have not yet heard of the close can add them. Pairs are ordered by (stamp, value), so even
two writes with the same stamp (impossible with distinct HLC replica ids) resolve the same way
everywhere. All replicas of a map must use the same K.

Incremental tallies: ``merge`` returns exactly the keys whose counting value changed (appeared,
disappeared or switched value). The map keeps ``tally()`` current itself; a caller keeping its own
per-value counts must remember the value it counted for each key, and for every returned key
subtract that and add ``value(key)``. ``set`` can change only its own key's counting value;
a close (``close``, or ``merge`` bringing an earlier one) re-counts every key once, which happens
once or twice per map.

Deltas for peers: every change stamps its key in a ``merge.deltalog.DeltaLog``; the close marker
takes a version of its own from the same log (``tick``), so ``delta_since(v)`` returns the join of
the keys changed after v plus the close marker whenever its version falls in the covered range.

Equality: same ``closed_at`` and the same pairs for every key. Equal maps may encode to
different bytes (entry order follows insertion).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import ClassVar, overload

from reactmesh.merge import tags
from reactmesh.merge.codec import open_as, parse_body, seal_as
from reactmesh.merge.contract import Replicated
from reactmesh.merge.deltalog import DeltaLog
from reactmesh.merge.errors import ConfigError, CRDTMisuse, DecodeError
from reactmesh.merge.hlc import HlcTimestamp
from reactmesh.merge.tags import Tag
from reactmesh.v1 import crdt_pb2

Pair = tuple[HlcTimestamp, int]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


class LwwMap:
    """key (str) -> bounded history of (stamp, value); counting value = latest before the close."""

    TAG: ClassVar[Tag] = tags.LWW_MAP
    TYPE: ClassVar[str] = TAG.type
    DEFAULT_HISTORY: ClassVar[int] = 8

    __slots__ = ("_close_version", "_closed_at", "_counting", "_history", "_k", "_log", "_tally")

    def __init__(self, history: int = DEFAULT_HISTORY) -> None:
        if history < 1:
            raise ConfigError("lww_map.history", "an integer >= 1", history)
        self._k = history
        # key -> pairs, greatest first, at most K.
        self._history: dict[str, list[Pair]] = {}
        self._closed_at: HlcTimestamp | None = None
        # Derived: key -> counting value, and value -> number of keys counting it.
        self._counting: dict[str, int] = {}
        self._tally: dict[int, int] = {}
        self._log: DeltaLog[str] = DeltaLog()
        self._close_version = 0

    @classmethod
    def new(cls) -> LwwMap:
        return cls()

    # -- reading -----------------------------------------------------------------------------

    @property
    def history_limit(self) -> int:
        """K: how many pairs each key keeps."""
        return self._k

    @property
    def version(self) -> int:
        """Local change counter; pass it back to ``delta_since`` later."""
        return self._log.version

    @property
    def closed_at(self) -> HlcTimestamp | None:
        return self._closed_at

    def counts(self, stamp: HlcTimestamp) -> bool:
        """Whether a write stamped ``stamp`` would count here (stamped before the known close)."""
        return self._closed_at is None or stamp < self._closed_at

    @overload
    def value(self) -> dict[str, int]: ...

    @overload
    def value(self, key: str) -> int | None: ...

    def value(self, key: str | None = None) -> dict[str, int] | int | None:
        """The counting value of ``key`` (None if it has none); without a key, all of them."""
        if key is None:
            return dict(self._counting)
        return self._counting.get(key)

    def tally(self) -> dict[int, int]:
        """value -> number of keys whose counting value it is (values nobody counts are absent)."""
        return dict(self._tally)

    def history(self, key: str) -> Sequence[Pair]:
        """The retained (stamp, value) pairs of ``key``, greatest first."""
        return tuple(self._history.get(key, ()))

    def keys(self) -> Iterable[str]:
        """Every key with a retained write (counting or not)."""
        return self._history.keys()

    def items(self) -> Iterator[tuple[str, int]]:
        """(key, counting value) pairs."""
        return iter(self._counting.items())

    def latest_stamp(self) -> HlcTimestamp | None:
        """The greatest stamp held (writes and close), to feed ``HybridLogicalClock.update``."""
        best = self._closed_at
        for pairs in self._history.values():
            top = pairs[0][0]
            if best is None or top > best:
                best = top
        return best

    def __iter__(self) -> Iterator[str]:
        return iter(self._history)

    def __len__(self) -> int:
        return len(self._history)

    def __contains__(self, key: object) -> bool:
        return key in self._history

    # -- mutating ----------------------------------------------------------------------------

    def set(self, key: str, value: int, stamp: HlcTimestamp) -> LwwMap:
        """Record the write ``key := value`` at ``stamp``; return the delta.

        The delta is empty when the write changes nothing: it is already known, older than the
        K retained writes, or stamped at or after the close this replica knows of.
        """
        if not key:
            raise CRDTMisuse("lww_map key must be a non-empty string")
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise CRDTMisuse(f"lww_map value {value} does not fit in int64")
        delta = LwwMap(self._k)
        if not self.counts(stamp):
            return delta
        pair = (stamp, value)
        if self._absorb(key, (pair,)):
            self._recount(key)
            delta._history[key] = [pair]
            delta._counting[key] = value
            delta._tally[value] = 1
        return delta

    def close(self, stamp: HlcTimestamp) -> LwwMap:
        """Close at ``stamp`` (the earliest close wins); return the delta, empty if already closed earlier."""
        delta = LwwMap(self._k)
        if self._closed_at is not None and self._closed_at <= stamp:
            return delta
        self._set_close(stamp)
        self._recount_all()
        delta._closed_at = stamp
        return delta

    def merge(self, other: LwwMap) -> list[str]:
        """Join ``other`` (a state or a delta) in place; return the keys whose counting value changed."""
        theirs = other._closed_at
        if theirs is not None and (self._closed_at is None or theirs < self._closed_at):
            self._set_close(theirs)
            for key, pairs in other._history.items():
                self._absorb(key, pairs)
            return self._recount_all()
        changed: list[str] = []
        for key, pairs in other._history.items():
            if self._absorb(key, pairs) and self._recount(key):
                changed.append(key)
        return changed

    def _absorb(self, key: str, pairs: Iterable[Pair]) -> bool:
        """Join ``pairs`` into ``key``'s history; True if it changed (the key is then touched)."""
        old = self._history.get(key)
        if old is None:
            new = sorted(set(pairs), reverse=True)[: self._k]
            if not new:
                return False
        else:
            union = set(old)
            union.update(pairs)
            if len(union) == len(old):
                return False
            new = sorted(union, reverse=True)[: self._k]
            if new == old:
                return False
        self._history[key] = new
        self._log.touch(key)
        return True

    def _set_close(self, stamp: HlcTimestamp) -> None:
        self._closed_at = stamp
        self._close_version = self._log.tick()

    def _recount(self, key: str) -> bool:
        """Recompute ``key``'s counting value and the tally; True if it changed."""
        new: int | None = None
        closed = self._closed_at
        for stamp, value in self._history.get(key, ()):
            if closed is None or stamp < closed:
                new = value
                break
        old = self._counting.get(key)
        if new == old:
            return False
        tally = self._tally
        if old is not None:
            left = tally[old] - 1
            if left:
                tally[old] = left
            else:
                del tally[old]
            del self._counting[key]
        if new is not None:
            self._counting[key] = new
            tally[new] = tally.get(new, 0) + 1
        return True

    def _recount_all(self) -> list[str]:
        return [key for key in self._history if self._recount(key)]

    # -- deltas ------------------------------------------------------------------------------

    def delta_since(self, version: int, limit: int | None = None) -> tuple[LwwMap, int]:
        """The join of every change after ``version``, and the version it brings a peer up to.

        With ``limit``, at most that many keys (the oldest changes first); the returned version
        then covers only what was included, so the caller can send the rest in later rounds. The
        close marker rides along whenever its change falls inside the covered range.
        """
        changed, upto = self._log.since(version, limit)
        delta = LwwMap(self._k)
        for key in changed:
            delta._history[key] = list(self._history[key])
        if self._closed_at is not None and version < self._close_version <= upto:
            delta._closed_at = self._closed_at
        delta._recount_all()
        return delta, upto

    def copy(self) -> LwwMap:
        out = LwwMap(self._k)
        for key, pairs in self._history.items():
            out._absorb(key, pairs)
        if self._closed_at is not None:
            out._set_close(self._closed_at)
        out._counting = dict(self._counting)
        out._tally = dict(self._tally)
        return out

    # -- equality and codec ------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LwwMap) and self._closed_at == other._closed_at and self._history == other._history

    def __hash__(self) -> int:
        raise TypeError("LwwMap is mutable and unhashable")

    def __repr__(self) -> str:
        return f"LwwMap(closed_at={self._closed_at}, history={self._history!r})"

    def encode(self) -> bytes:
        body = crdt_pb2.LwwMapState()
        add = body.entries.add
        for key, pairs in self._history.items():
            for stamp, value in pairs:
                entry = add(key=key, value=value)
                s = entry.stamp
                s.wall_ms = stamp.wall_ms
                s.logical = stamp.logical
                s.replica = stamp.replica
        if self._closed_at is not None:
            c = body.closed_at
            c.wall_ms = self._closed_at.wall_ms
            c.logical = self._closed_at.logical
            c.replica = self._closed_at.replica
        return seal_as(self.TAG, body)

    @classmethod
    def decode(cls, data: bytes, history: int = DEFAULT_HISTORY) -> LwwMap:
        """The map ``data`` encodes, keeping ``history`` pairs per key; DecodeError for anything else."""
        raw = open_as(data, cls.TAG)
        body = crdt_pb2.LwwMapState()
        parse_body(raw, body, cls.TYPE)
        groups: dict[str, list[Pair]] = {}
        for entry in body.entries:
            if not entry.key:
                raise DecodeError("lww_map body: entry with an empty key")
            if not entry.HasField("stamp"):
                raise DecodeError(f"lww_map body: entry for key {entry.key!r} has no stamp")
            stamp = HlcTimestamp.from_proto(entry.stamp)
            groups.setdefault(entry.key, []).append((stamp, entry.value))
        out = cls(history)
        if body.HasField("closed_at"):
            out._set_close(HlcTimestamp.from_proto(body.closed_at))
        for key, pairs in groups.items():
            out._absorb(key, pairs)
        out._recount_all()
        return out


_: type[Replicated] = LwwMap
