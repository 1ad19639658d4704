"""Bytes held per session watermark and per counter slot (tracemalloc, deterministic): the compact representations
of MaxMap and KeyedGCounter stay compact. The bounds are the measured figures plus a margin; the representations
they replaced (a dict per key plus a delta-log dict) cost about twice as much and fail them."""

from __future__ import annotations

import gc
import os
import sys
import tracemalloc
from collections.abc import Callable

from reactmesh.merge.keyed import KeyedGCounter
from reactmesh.merge.maxmap import MaxMap

N = 20_000
STAMP = 1_764_000_000_000
REPLICA = "a/agg-0~0123456789abcdef"


def bytes_per(n: int, fill: Callable[[], object]) -> float:
    """Python bytes allocated by ``fill()`` (whose result is kept alive until measured), per item."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = fill()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return (after - before) / n


def test_a_session_watermark_costs_at_most_100_bytes_besides_its_id() -> None:
    ids = [os.urandom(16) for _ in range(N)]
    m = MaxMap()

    def fill() -> object:
        for i, s in enumerate(ids):
            m.set(s, i + 1_000, stamp=STAMP + i)  # seqs and stamps beyond the small-int cache
        return m

    assert bytes_per(N, fill) <= 100  # measured 77 at 20,000 keys (a dict slot and one 48-byte int)


def test_a_single_replica_slot_costs_at_most_170_bytes_key_tuple_included() -> None:
    # Interned before measuring: a stream's name is interned once, and the interpreter's intern table doubling
    # inside the measured block (when, depends on how much else is interned) would be billed to these slots.
    streams = [sys.intern(f"stream-{i}") for i in range(N // 6)]
    emojis = [sys.intern(e) for e in ("like", "love", "haha", "wow", "sad", "fire")]

    def fill() -> object:
        totals = KeyedGCounter()
        for s in streams:
            for e in emojis:
                totals.increment((s, e), REPLICA, 1_000)
        return totals

    # Measured 142 at 19,998 keys: a dict slot, the (stream, emoji) tuple and one 44-byte int; strings shared.
    assert bytes_per(len(streams) * len(emojis), fill) <= 170


def test_each_further_replica_slot_of_a_key_costs_at_most_16_bytes() -> None:
    keys = [(f"stream-{i}", "like") for i in range(N)]
    replicas = [f"{r}/agg-0~0123456789abcdef" for r in "abcdef"]
    one = KeyedGCounter()
    six = KeyedGCounter()
    for k in keys:
        one.increment(k, replicas[0], 1_000)
        for r in replicas:
            six.increment(k, r, 1_000)
    # Decoded, so each key is written once (re-inserting a changed key leaves a dict slot to the next resize).
    one_bytes, six_bytes = one.encode(), six.encode()
    extra = (
        bytes_per(N, lambda: KeyedGCounter.decode(six_bytes)) - bytes_per(N, lambda: KeyedGCounter.decode(one_bytes))
    ) / 5
    assert extra <= 16  # measured 13.6: 96 bits per slot in the key's int
