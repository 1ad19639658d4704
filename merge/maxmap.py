"""A map of max-registers: key (bytes or str) -> the largest non-negative integer written.

For values that only rise, such as the highest sequence number applied per sender: the join of two
maps is the key-wise maximum (a max-register per key, the simplest state-based CRDT of Shapiro et
al. 2011), which is commutative, associative and idempotent. 0 is the bottom: a key never written
and a key at 0 are the same, so zeros are never stored. ``set`` returns the delta (Almeida et al.,
"Delta State Replicated Data Types", 2018), and ``delta_since(v)`` the join of every change after
the local version v, under the rules of ``merge.deltalog`` (stated there).

Representation (for memory: this map holds one entry per live session in every node). One dict, key -> one
int ``(stamp << 63 | value) << 64 | version``, where version is the local change counter at the key's latest
change; the dict is kept in version order (a changed key is re-inserted), so it is its own delta log and no
second per-key structure exists. About 100 bytes per key besides the key itself (a dict slot and a 48-byte int).

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

from bisect import bisect_left
from collections.abc import Callable, Iterator, KeysView
from typing import ClassVar

from reactmesh.merge import tags
from reactmesh.merge.codec import open_envelope, seal_as
from reactmesh.merge.contract import Replicated
from reactmesh.merge.errors import CRDTMisuse, DecodeError
from reactmesh.merge.tags import Tag

Key = bytes | str

MAX_KEY_BYTES = 1024
MAX_VALUE = 2**63 - 1
MAX_STAMP = 2**42 - 1
_SHIFT = 63  # an entry is stamp << 63 | value, so int order is (stamp, value) order
_VBITS = 64  # held as entry << 64 | version: the delta log's version of the key's latest change rides along
_VMASK = (1 << _VBITS) - 1

_KIND_BYTES = 0
_KIND_STR = 1


class MaxMap:
    """key -> max non-negative int (with the stamp of its write) above a floor; merge = key-wise max, floor max."""

    TAG: ClassVar[Tag] = tags.MAX_MAP
    TYPE: ClassVar[str] = TAG.type

    __slots__ = ("_floor", "_floor_version", "_held", "_version")

    def __init__(self) -> None:
        # key -> (stamp << 63 | value) << 64 | version: one dict entry and one int per key. The dict is kept in
        # version order (a changed key is re-inserted), so it is its own delta log (merge.deltalog's rules).
        self._held: dict[Key, int] = {}
        self._version = 0
        self._floor = 0
        self._floor_version = 0

    @classmethod
    def new(cls) -> MaxMap:
        return cls()

    # -- reading -----------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """Local change counter; pass it back to ``delta_since`` later."""
        return self._version

    @property
    def floor(self) -> int:
        """Entries stamped before this (Unix ms) are expired everywhere this map's state has reached."""
        return self._floor

    def get(self, key: Key, default: int = 0) -> int:
        held = self._held.get(key)
        return default if held is None else held >> _VBITS & MAX_VALUE

    def stamp(self, key: Key) -> int:
        """The stamp of ``key``'s entry (0 if absent or written without one)."""
        return self._held.get(key, 0) >> (_VBITS + _SHIFT)

    def value(self) -> dict[Key, int]:
        return {k: h >> _VBITS & MAX_VALUE for k, h in self._held.items()}

    def keys(self) -> KeysView[Key]:
        return self._held.keys()

    def items(self) -> Iterator[tuple[Key, int]]:
        return ((k, h >> _VBITS & MAX_VALUE) for k, h in self._held.items())

    def stamped_items(self) -> Iterator[tuple[Key, int, int]]:
        """(key, value, stamp) of every entry."""
        return ((k, h >> _VBITS & MAX_VALUE, h >> (_VBITS + _SHIFT)) for k, h in self._held.items())

    def __iter__(self) -> Iterator[Key]:
        return iter(self._held)

    def __len__(self) -> int:
        """Entries held, plus one for a raised floor (so a delta that only raises the floor is not empty)."""
        return len(self._held) + (1 if self._floor else 0)

    def __contains__(self, key: object) -> bool:
        return key in self._held

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
            entry = stamp << _SHIFT | value
            if self._join_entry(key, entry):
                delta._put(key, entry)
        return delta

    def expire(self, floor: int) -> MaxMap:
        """Raise the floor to ``floor`` (Unix ms), dropping every entry stamped before it; return the delta."""
        if not 0 <= floor <= MAX_STAMP:
            raise CRDTMisuse(f"max_map floor must be in [0, 2**42), got {floor}")
        delta = MaxMap()
        if floor > self._floor:
            self._raise_floor(floor)
            delta._raise_floor(floor)
        return delta

    def merge(self, other: MaxMap) -> list[Key]:
        """Join ``other`` (a state or a delta) in place; return the keys whose entry grew."""
        if other._floor > self._floor:
            self._raise_floor(other._floor)
        least = self._floor << (_SHIFT + _VBITS)
        join = self._join_entry
        grown: list[Key] = []
        for key, held in other._held.items():
            if held >= least and join(key, held >> _VBITS):
                grown.append(key)
        return grown

    def _put(self, key: Key, entry: int) -> None:
        """Store ``entry`` as ``key``'s latest change (last in version order)."""
        self._version += 1
        held = self._held
        held.pop(key, None)
        held[key] = entry << _VBITS | self._version

    def _join_entry(self, key: Key, entry: int) -> bool:
        """Join one entry; True if ``key``'s entry changed."""
        mine = self._held.get(key)
        if mine is not None and mine >> _VBITS >= entry:
            return False
        self._put(key, entry)
        return True

    def _raise_floor(self, floor: int) -> None:
        self._floor = floor
        self._version += 1
        self._floor_version = self._version
        least = floor << (_SHIFT + _VBITS)
        held = self._held
        for k in [k for k, h in held.items() if h < least]:
            del held[k]

    def prune(self, drop: Callable[[Key], bool]) -> int:
        """Forget every key for which ``drop(key)`` is true (local retention); return how many."""
        doomed = [k for k in self._held if drop(k)]
        for k in doomed:
            del self._held[k]
        return len(doomed)

    # -- deltas ------------------------------------------------------------------------------

    def delta_since(self, version: int, limit: int | None = None) -> tuple[MaxMap, int]:
        """The join of every change after ``version``, and the version it brings a peer up to.

        With ``limit``, at most that many keys (the oldest changes first; a raised floor counts as one); the
        returned version then covers only what was included, so the caller can send the rest in later rounds.
        ``merge.deltalog`` states what the returned version guarantees; this map keeps the same rules.
        """
        if limit is not None and limit < 0:
            raise CRDTMisuse(f"delta_since limit must be >= 0, got {limit}")
        changed: list[tuple[int, Key | None]] = []  # (version, key), None standing for the floor
        for key, held in reversed(self._held.items()):
            v = held & _VMASK
            if v <= version:
                break
            changed.append((v, key))
        changed.reverse()
        if self._floor_version > version:
            at = bisect_left([v for v, _ in changed], self._floor_version)
            changed.insert(at, (self._floor_version, None))
        if limit is not None and len(changed) > limit:
            del changed[limit:]
            upto = changed[-1][0] if changed else version
        else:
            upto = max(self._version, version)
        delta = MaxMap()
        if any(k is None for _, k in changed):
            delta._raise_floor(self._floor)
        held_now = self._held
        for _, k in changed:
            if k is not None:
                delta._put(k, held_now[k] >> _VBITS)
        return delta, upto

    def copy(self) -> MaxMap:
        out = MaxMap()
        if self._floor:
            out._raise_floor(self._floor)
        for key, held in self._held.items():
            out._put(key, held >> _VBITS)
        return out

    # -- equality and codec ------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MaxMap) or self._floor != other._floor or len(self._held) != len(other._held):
            return False
        theirs = other._held
        for key, held in self._held.items():
            t = theirs.get(key)
            if t is None or t >> _VBITS != held >> _VBITS:
                return False
        return True

    def __hash__(self) -> int:
        raise TypeError("MaxMap is mutable and unhashable")

    def __repr__(self) -> str:
        return f"MaxMap(floor={self._floor}, {dict((k, (v, t)) for k, v, t in self.stamped_items())!r})"

    def encode(self) -> bytes:
        out = bytearray()
        _put_uvarint(out, self._floor)
        _put_uvarint(out, len(self._held))
        for key, held in self._held.items():
            entry = held >> _VBITS
            if isinstance(key, bytes):
                out.append(_KIND_BYTES)
                raw = key
            else:
                out.append(_KIND_STR)
                raw = key.encode()
            _put_uvarint(out, len(raw))
            out += raw
            _put_uvarint(out, entry & MAX_VALUE)
            _put_uvarint(out, entry >> _SHIFT)
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
        if floor:
            out._raise_floor(floor)
        join = out._join_entry
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
                join(key, stamp << _SHIFT | value)
        if pos != end:
            raise DecodeError(f"max_map body: {end - pos} trailing bytes after {count} records")
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
