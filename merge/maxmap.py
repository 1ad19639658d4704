"""A map of max-registers: key (bytes or str) -> the largest non-negative integer written.

For values that only rise, such as the highest sequence number applied per sender: the join of two
maps is the key-wise maximum (a max-register per key, the simplest state-based CRDT of Shapiro et
al. 2011), which is commutative, associative and idempotent. 0 is the bottom: a key never written
and a key at 0 are the same, so zeros are never stored. ``set`` returns the delta (Almeida et al.,
"Delta State Replicated Data Types", 2018), and ``delta_since(v)`` the join of every change after
the local version v, read from a ``merge.deltalog.DeltaLog``.

Keys are ``bytes`` (such as 16-byte ids) or ``str``, of at most MAX_KEY_BYTES bytes (UTF-8 for str);
``b"a"`` and ``"a"`` are different keys. Values are at most 2**63 - 1 (SQLite's INTEGER).
Equality: the same keys with the same values.

Encoding (type "max_map", version 1). No protobuf message fits bytes keys, so the envelope body
is a compact binary form, about 20 bytes per 16-byte key::

    body   := count:uvarint record{count}
    record := kind:u8 (0 = bytes key, 1 = UTF-8 str key) key_len:uvarint key:byte{key_len} value:uvarint

(uvarint: protobuf's base-128 varint, at most 10 bytes.) The body is never empty, so an envelope
truncated before its body is rejected. ``decode`` rejects a missing count, truncated records, an
unknown kind, invalid UTF-8, oversized keys or values, and trailing bytes with DecodeError; a key
repeated within one body keeps its maximum.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import ClassVar

from reactmesh.merge import tags
from reactmesh.merge.codec import open_as, seal_as
from reactmesh.merge.contract import Replicated
from reactmesh.merge.deltalog import DeltaLog
from reactmesh.merge.errors import CRDTMisuse, DecodeError
from reactmesh.merge.tags import Tag

Key = bytes | str

MAX_KEY_BYTES = 1024
MAX_VALUE = 2**63 - 1

_KIND_BYTES = 0
_KIND_STR = 1


class MaxMap:
    """key -> max non-negative int; merge = key-wise max; missing keys read as 0."""

    TAG: ClassVar[Tag] = tags.MAX_MAP
    TYPE: ClassVar[str] = TAG.type

    __slots__ = ("_log", "_values")

    def __init__(self) -> None:
        self._values: dict[Key, int] = {}
        self._log: DeltaLog[Key] = DeltaLog()

    @classmethod
    def new(cls) -> MaxMap:
        return cls()

    # -- reading -----------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """Local change counter; pass it back to ``delta_since`` later."""
        return self._log.version

    def get(self, key: Key, default: int = 0) -> int:
        return self._values.get(key, default)

    def value(self) -> dict[Key, int]:
        return dict(self._values)

    def keys(self) -> Iterable[Key]:
        return self._values.keys()

    def items(self) -> Iterator[tuple[Key, int]]:
        return iter(self._values.items())

    def __iter__(self) -> Iterator[Key]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    # -- mutating ----------------------------------------------------------------------------

    def set(self, key: Key, value: int) -> MaxMap:
        """Raise ``key`` to ``value`` if that is higher; return the delta (empty if nothing changed)."""
        _check_key(key)
        if not 0 <= value <= MAX_VALUE:
            raise CRDTMisuse(f"max_map value must be in [0, 2**63), got {value}")
        delta = MaxMap()
        if value > self._values.get(key, 0):
            self._values[key] = value
            self._log.touch(key)
            delta._values[key] = value
        return delta

    def merge(self, other: MaxMap) -> list[Key]:
        """Join ``other`` (a state or a delta) in place; return the keys whose value grew."""
        grown: list[Key] = []
        mine = self._values
        for key, value in other._values.items():
            if value > mine.get(key, 0):
                mine[key] = value
                self._log.touch(key)
                grown.append(key)
        return grown

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
            delta._values[key] = values[key]
        return delta, upto

    def copy(self) -> MaxMap:
        out = MaxMap()
        for key, value in self._values.items():
            out._values[key] = value
            out._log.touch(key)
        return out

    # -- equality and codec ------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MaxMap) and self._values == other._values

    def __hash__(self) -> int:
        raise TypeError("MaxMap is mutable and unhashable")

    def __repr__(self) -> str:
        return f"MaxMap({self._values!r})"

    def encode(self) -> bytes:
        out = bytearray()
        _put_uvarint(out, len(self._values))
        for key, value in self._values.items():
            if isinstance(key, bytes):
                out.append(_KIND_BYTES)
                raw = key
            else:
                out.append(_KIND_STR)
                raw = key.encode()
            _put_uvarint(out, len(raw))
            out += raw
            _put_uvarint(out, value)
        return seal_as(self.TAG, bytes(out))

    @classmethod
    def decode(cls, data: bytes) -> MaxMap:
        body = open_as(data, cls.TAG)
        if not body:
            raise DecodeError("max_map body is empty (no record count): truncated?")
        count, pos = _get_uvarint(body, 0)
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
            if value > values.get(key, 0):
                values[key] = value
        if pos != end:
            raise DecodeError(f"max_map body: {end - pos} trailing bytes after {count} records")
        for key in values:
            out._log.touch(key)
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
