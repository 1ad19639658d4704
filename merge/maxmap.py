"""A map of max-registers: key (bytes or str) -> the largest non-negative integer written.

For values that only rise, such as the highest sequence number applied per sender: the join of two
maps is the key-wise maximum (a max-register per key, the simplest state-based CRDT of Shapiro et
al. 2011), which is commutative, associative and idempotent. 0 is the bottom: a key never written
and a key at 0 are the same, so zeros are never stored. ``set`` returns the delta (Almeida et al.,
"Delta State Replicated Data Types", 2018), and ``delta_since(v)`` the join of every change after
the local version v, read from a ``merge.deltalog.DeltaLog``.

Expiry that holds everywhere. Each entry also carries a stamp (Unix ms of the write that set it), and an entry is
the pair (stamp, value) joined by lexicographic max: the later write wins, the larger value among writes of the
same stamp; with every stamp 0 this is exactly the max-register above. The map has a floor (a max-register too):
an entry stamped before the floor is gone, and a merge never brings it back. The state is (floor, the entries
stamped at or after it), and the join is (max of the floors, the key-wise join of the entries, filtered by that
floor). Because the entry order puts the stamp first, filtering commutes with the entry join, so this is still a
join: commutative, associative and idempotent. ``expire(f)``
raises the floor, an inflation like any write, and travels in deltas, so one replica's expiry reaches every
replica and all of them drop the same entries, whatever order they hear things in. Memory is then bounded by the
keys written since the floor, not by every key ever written. Entries written without a stamp (0) are never
expired while the floor is 0.

Keys are ``bytes`` (such as 16-byte ids) or ``str``, of at most MAX_KEY_BYTES bytes (UTF-8 for str);
``b"a"`` and ``"a"`` are different keys. Values are at most 2**63 - 1 (SQLite's INTEGER), stamps below 2**42 ms
(the year 2109). Equality: the same floor and the same keys with the same values and stamps.

Encoding (type "max_map", version 2; version 1 is still read, as stamps and floor 0). No protobuf message fits
bytes keys, so the envelope body is a compact binary form, about 27 bytes per 16-byte key::

    body   := floor:uvarint count:uvarint record{count}
    record := kind:u8 (0 = bytes key, 1 = UTF-8 str key) key_len:uvarint key:byte{key_len} value:uvarint stamp:uvarint
    (version 1: body := count:uvarint record{count}, record without the stamp)

(uvarint: protobuf's base-128 varint, at most 10 bytes.) The body is never empty, so an envelope
truncated before its body is rejected. ``decode`` rejects a missing count, truncated records, an
unknown kind, invalid UTF-8, oversized keys or values, and trailing bytes with DecodeError; a key
repeated within one body keeps its maximum.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import ClassVar

from reactmesh.merge import tags
from reactmesh.merge.codec import open_envelope, seal_as
from reactmesh.merge.contract import Replicated
from reactmesh.merge.deltalog import DeltaLog
from reactmesh.merge.errors import CRDTMisuse, DecodeError
from reactmesh.merge.tags import Tag

Key = bytes | str

MAX_KEY_BYTES = 1024
MAX_VALUE = 2**63 - 1
MAX_STAMP = 2**42 - 1
_SHIFT = 63  # packed entry = stamp << 63 | value, so int order is (stamp, value) order

_KIND_BYTES = 0
_KIND_STR = 1


class _Floor:
    """The delta log's key for the floor, so a floor change is ordered and bounded like any key's change."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<floor>"


_FLOOR = _Floor()


class MaxMap:
    """key -> max non-negative int (with the stamp of its write) above a floor; merge = key-wise max, floor max."""

    TAG: ClassVar[Tag] = tags.MAX_MAP
    TYPE: ClassVar[str] = TAG.type

    __slots__ = ("_floor", "_log", "_values")

    def __init__(self) -> None:
        # key -> stamp << _SHIFT | value: one int per key, ordered as the entries are.
        self._values: dict[Key, int] = {}
        self._log: DeltaLog[Key | _Floor] = DeltaLog()
        self._floor = 0

    @classmethod
    def new(cls) -> MaxMap:
        return cls()

    # -- reading -----------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """Local change counter; pass it back to ``delta_since`` later."""
        return self._log.version

    @property
    def floor(self) -> int:
        """Entries stamped before this (Unix ms) are expired everywhere this map's state has reached."""
        return self._floor

    def get(self, key: Key, default: int = 0) -> int:
        packed = self._values.get(key)
        return default if packed is None else packed & MAX_VALUE

    def stamp(self, key: Key) -> int:
        """The stamp of ``key``'s entry (0 if absent or written without one)."""
        return self._values.get(key, 0) >> _SHIFT

    def value(self) -> dict[Key, int]:
        return {k: p & MAX_VALUE for k, p in self._values.items()}

    def keys(self) -> Iterable[Key]:
        return self._values.keys()

    def items(self) -> Iterator[tuple[Key, int]]:
        return ((k, p & MAX_VALUE) for k, p in self._values.items())

    def stamped_items(self) -> Iterator[tuple[Key, int, int]]:
        """(key, value, stamp) of every entry."""
        return ((k, p & MAX_VALUE, p >> _SHIFT) for k, p in self._values.items())

    def __iter__(self) -> Iterator[Key]:
        return iter(self._values)

    def __len__(self) -> int:
        """Entries held, plus one for a raised floor (so a delta that only raises the floor is not empty)."""
        return len(self._values) + (1 if self._floor else 0)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    # -- mutating ----------------------------------------------------------------------------

    def set(self, key: Key, value: int, stamp: int = 0) -> MaxMap:
        """Join the write (``stamp``, ``value``) into ``key``'s entry; return the delta (empty if nothing changed).

        A write stamped before the floor is already expired and changes nothing.
        """
        _check_key(key)
        if not 0 <= value <= MAX_VALUE:
            raise CRDTMisuse(f"max_map value must be in [0, 2**63), got {value}")
        if not 0 <= stamp <= MAX_STAMP:
            raise CRDTMisuse(f"max_map stamp must be in [0, 2**42), got {stamp}")
        delta = MaxMap()
        if value and stamp >= self._floor:
            packed = self._join_entry(key, stamp << _SHIFT | value)
            if packed is not None:
                delta._values[key] = packed
        return delta

    def expire(self, floor: int) -> MaxMap:
        """Raise the floor to ``floor`` (Unix ms), dropping every entry stamped before it; return the delta."""
        if not 0 <= floor <= MAX_STAMP:
            raise CRDTMisuse(f"max_map floor must be in [0, 2**42), got {floor}")
        delta = MaxMap()
        if floor > self._floor:
            self._raise_floor(floor)
            delta._floor = floor
        return delta

    def merge(self, other: MaxMap) -> list[Key]:
        """Join ``other`` (a state or a delta) in place; return the keys whose entry grew."""
        if other._floor > self._floor:
            self._raise_floor(other._floor)
        floor = self._floor
        grown: list[Key] = []
        for key, packed in other._values.items():
            if packed >> _SHIFT >= floor and self._join_entry(key, packed) is not None:
                grown.append(key)
        return grown

    def _join_entry(self, key: Key, packed: int) -> int | None:
        """Join one packed entry; return the new packed value if the entry changed."""
        mine = self._values.get(key)
        if mine is not None and mine >= packed:
            return None
        self._values[key] = packed
        self._log.touch(key)
        return packed

    def _raise_floor(self, floor: int) -> None:
        self._floor = floor
        self._log.touch(_FLOOR)
        doomed = [k for k, p in self._values.items() if p >> _SHIFT < floor]
        for k in doomed:
            del self._values[k]
            self._log.forget(k)

    def prune(self, drop: Callable[[Key], bool]) -> int:
        """Forget every key for which ``drop(key)`` is true (local retention); return how many."""
        doomed = [k for k in self._values if drop(k)]
        for k in doomed:
            del self._values[k]
            self._log.forget(k)
        return len(doomed)

    # -- deltas ------------------------------------------------------------------------------

    def delta_since(self, version: int, limit: int | None = None) -> tuple[MaxMap, int]:
        """The join of every change after ``version``, and the version it brings a peer up to.

        With ``limit``, at most that many keys (the oldest changes first); the returned version
        then covers only what was included, so the caller can send the rest in later rounds.
        """
        changed, upto = self._log.since(version, limit)
        delta = MaxMap()
        values = self._values
        for key in changed:
            if isinstance(key, _Floor):
                delta._floor = self._floor
            else:
                delta._values[key] = values[key]
        return delta, upto

    def copy(self) -> MaxMap:
        out = MaxMap()
        for key, packed in self._values.items():
            out._values[key] = packed
            out._log.touch(key)
        if self._floor:
            out._floor = self._floor
            out._log.touch(_FLOOR)
        return out

    # -- equality and codec ------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MaxMap) and self._floor == other._floor and self._values == other._values

    def __hash__(self) -> int:
        raise TypeError("MaxMap is mutable and unhashable")

    def __repr__(self) -> str:
        return f"MaxMap(floor={self._floor}, {dict((k, (v, t)) for k, v, t in self.stamped_items())!r})"

    def encode(self) -> bytes:
        out = bytearray()
        _put_uvarint(out, self._floor)
        _put_uvarint(out, len(self._values))
        for key, packed in self._values.items():
            if isinstance(key, bytes):
                out.append(_KIND_BYTES)
                raw = key
            else:
                out.append(_KIND_STR)
                raw = key.encode()
            _put_uvarint(out, len(raw))
            out += raw
            _put_uvarint(out, packed & MAX_VALUE)
            _put_uvarint(out, packed >> _SHIFT)
        return seal_as(self.TAG, bytes(out))

    @classmethod
    def decode(cls, data: bytes) -> MaxMap:
        version, body = open_envelope(data, cls.TAG.type, cls.TAG.reads)
        if not body:
            raise DecodeError("max_map body is empty (no record count): truncated?")
        stamped = version >= 2
        floor, pos = _get_uvarint(body, 0) if stamped else (0, 0)
        if floor > MAX_STAMP:
            raise DecodeError(f"max_map body: floor {floor} exceeds 2**42 - 1")
        count, pos = _get_uvarint(body, pos)
        end = len(body)
        out = cls()
        values = out._values
        for i in range(count):
            if pos >= end:
                raise DecodeError(f"max_map body truncated: {count} records announced, {i} found")
            kind = body[pos]
            klen, pos = _get_uvarint(body, pos + 1)
            if klen > MAX_KEY_BYTES:
                raise DecodeError(f"max_map body: record {i} has a {klen}-byte key (at most {MAX_KEY_BYTES})")
            if pos + klen > end:
                raise DecodeError(f"max_map body truncated inside the key of record {i}")
            raw = body[pos : pos + klen]
            pos += klen
            key: Key
            if kind == _KIND_BYTES:
                key = raw
            elif kind == _KIND_STR:
                try:
                    key = raw.decode()
                except UnicodeDecodeError as exc:
                    raise DecodeError(f"max_map body: record {i} has a str key that is not UTF-8") from exc
            else:
                raise DecodeError(f"max_map body: record {i} has unknown key kind {kind}")
            value, pos = _get_uvarint(body, pos)
            if value > MAX_VALUE:
                raise DecodeError(f"max_map body: record {i} value {value} exceeds 2**63 - 1")
            stamp = 0
            if stamped:
                stamp, pos = _get_uvarint(body, pos)
                if stamp > MAX_STAMP:
                    raise DecodeError(f"max_map body: record {i} stamp {stamp} exceeds 2**42 - 1")
            if value and stamp >= floor:
                packed = stamp << _SHIFT | value
                if packed > values.get(key, 0):
                    values[key] = packed
        if pos != end:
            raise DecodeError(f"max_map body: {end - pos} trailing bytes after {count} records")
        for key in values:
            out._log.touch(key)
        if floor:
            out._floor = floor
            out._log.touch(_FLOOR)
        return out


def _check_key(key: Key) -> None:
    if isinstance(key, bytes):
        size = len(key)
    elif isinstance(key, str):
        try:
            size = len(key.encode())
        except UnicodeEncodeError as exc:
            raise CRDTMisuse(f"max_map str key {key!r} is not encodable as UTF-8") from exc
    else:
        raise CRDTMisuse(f"max_map key must be bytes or str, got {type(key).__name__}")
    if size > MAX_KEY_BYTES:
        raise CRDTMisuse(f"max_map key is {size} bytes (at most {MAX_KEY_BYTES})")


def _put_uvarint(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _get_uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it) of the varint at ``pos``; DecodeError if truncated or too long."""
    result = 0
    shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise DecodeError(f"max_map body truncated inside a varint at offset {pos}")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise DecodeError(f"max_map body: varint longer than 10 bytes ending at offset {pos}")


_: type[Replicated] = MaxMap
