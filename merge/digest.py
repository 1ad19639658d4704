"""Bucketed state digests for anti-entropy.

A collection's keys are split into ``n`` buckets by a stable 64-bit hash of the key; a bucket's
digest is the XOR of one 64-bit hash per (key, value) entry, so it does not depend on iteration
order and two replicas agree on a bucket's digest iff (barring a 2**-64 collision) they hold the
same entries there. A peer that sees a differing bucket answers with its whole sub-state for that
bucket, which the other side merges — a join, so a repair can never do harm.

Supported: KeyedGCounter and MaxMap. Other collections are repaired by deltas and full state only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from reactmesh.merge.keyed import KeyedGCounter, encode_key
from reactmesh.merge.maxmap import MaxMap


def _h(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def supports(coll: object) -> bool:
    return isinstance(coll, KeyedGCounter | MaxMap)


def _entries(coll: KeyedGCounter | MaxMap) -> Iterator[tuple[object, bytes, bytes]]:
    if isinstance(coll, KeyedGCounter):
        for key in coll.keys():  # noqa: SIM118 - KeyedGCounter is not iterable
            slots = coll.slots(key)
            value = ";".join(f"{r}={c}" for r, c in sorted(slots.items()) if c)
            yield key, encode_key(key).encode(), value.encode()
    else:
        for k, v, t in coll.stamped_items():
            kb = k if isinstance(k, bytes) else b"s" + k.encode()
            yield k, kb, f"{v}@{t}".encode()


def bucket_hashes(coll: KeyedGCounter | MaxMap, n: int) -> list[int]:
    """The digest of each of ``n`` buckets."""
    out = [0] * n
    for _, kb, vb in _entries(coll):
        out[_h(kb) % n] ^= _h(kb + b"\x00" + vb)
    return out


def bucket_subset(coll: KeyedGCounter | MaxMap, n: int, buckets: set[int]) -> KeyedGCounter | MaxMap:
    """The sub-state of ``coll`` holding the keys of ``buckets``."""
    if isinstance(coll, KeyedGCounter):
        keys = [key for key, kb, _ in _entries(coll) if _h(kb) % n in buckets]
        return coll.subset(keys)  # type: ignore[arg-type]
    out = MaxMap()
    out.expire(coll.floor)  # the repair carries the floor, so a peer behind on expiry catches up too
    for k, v, t in coll.stamped_items():
        kb = k if isinstance(k, bytes) else b"s" + k.encode()
        if _h(kb) % n in buckets:
            out.set(k, v, stamp=t)
    return out
