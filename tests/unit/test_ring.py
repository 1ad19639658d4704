"""The consistent hash ring is deterministic across processes, balanced, and moves ~1/n keys on add."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from hashlib import blake2b

import pytest

from reactmesh.edge.ring import HashRing, ring_hash

NODES = ("10.0.0.1:7100", "10.0.0.2:7100", "10.0.0.3:7100", "10.0.0.4:7100")
N_KEYS = 100_000


def keys(n: int = N_KEYS) -> list[bytes]:
    # Deterministic stand-ins for random 16-byte session ids.
    return [blake2b(i.to_bytes(8, "big"), digest_size=16).digest() for i in range(n)]


def test_lookup_is_deterministic_and_independent_of_node_order() -> None:
    a = HashRing(NODES)
    b = HashRing(reversed(NODES))
    sample = keys(2000)
    assert [a.lookup(k) for k in sample] == [b.lookup(k) for k in sample]


def test_lookup_is_the_same_in_another_process() -> None:
    # A fresh interpreter has a different PYTHONHASHSEED; the ring must not depend on it.
    sample = keys(50)
    script = (
        "import sys; from edge.ring import HashRing; "
        f"r = HashRing({list(NODES)!r}); "
        f"print(','.join(r.lookup(bytes.fromhex(h)) for h in {[k.hex() for k in sample]!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "12345"}
    ).stdout.strip()
    ring = HashRing(NODES)
    assert out.split(",") == [ring.lookup(k) for k in sample]
    assert ring_hash(b"session") == int.from_bytes(blake2b(b"session", digest_size=8).digest(), "big")


@pytest.mark.parametrize(
    "nodes",
    [NODES, tuple(f"agg-{i}.eu.reactmesh:7100" for i in range(4)), tuple(f"127.0.0.1:{p}" for p in range(7101, 7105))],
)
def test_sessions_spread_within_15_percent_of_even_over_4_aggregators(nodes: tuple[str, ...]) -> None:
    ring = HashRing(nodes)
    shares = Counter(ring.lookup(k) for k in keys())
    assert set(shares) == set(nodes)
    even = N_KEYS / len(nodes)
    for node, count in shares.items():
        assert abs(count - even) / even <= 0.15, (node, count / even)


def test_adding_an_aggregator_moves_about_one_fifth_of_sessions_all_to_it() -> None:
    before = HashRing(NODES)
    after = before.with_node("10.0.0.5:7100")
    sample = keys()
    moved = [k for k in sample if before.lookup(k) != after.lookup(k)]
    assert all(after.lookup(k) == "10.0.0.5:7100" for k in moved)
    assert 0.15 <= len(moved) / len(sample) <= 0.25


def test_removing_an_aggregator_moves_only_its_sessions() -> None:
    before = HashRing(NODES)
    after = before.without_node(NODES[0])
    for k in keys(20_000):
        if before.lookup(k) != NODES[0]:
            assert after.lookup(k) == before.lookup(k)
        else:
            assert after.lookup(k) != NODES[0]


def test_ring_needs_a_node() -> None:
    with pytest.raises(ValueError):
        HashRing(())
    assert HashRing(["only:1"]).lookup(b"x" * 16) == "only:1"
