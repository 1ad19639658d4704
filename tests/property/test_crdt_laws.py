"""The join laws of every CRDT type, checked with hypothesis on reachable states.

For GCounter, KeyedGCounter, LwwMap (with a small and the default history bound), MaxMap, ExpiringMap and CommentSet:
merge is commutative, associative and idempotent; merging the deltas a mutator returns equals
merging the full state; encode/decode round-trips; and, for the types with a change log,
``delta_since(v)`` (whole or in limited chunks) brings a replica that had the state at v to the
current state. Merge's return value is checked against what actually changed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reactmesh.merge.comments import Comment, CommentSet, comment_id, floor_for
from reactmesh.merge.expiring import ExpiringMap
from reactmesh.merge.gcounter import GCounter
from reactmesh.merge.hlc import HlcTimestamp
from reactmesh.merge.keyed import Key, KeyedGCounter
from reactmesh.merge.lww import LwwMap
from reactmesh.merge.maxmap import MaxMap

REPLICAS = ["r1", "r2", "r3"]

# -- strategies ---------------------------------------------------------------------------------

gcounter_ops = st.tuples(st.sampled_from(REPLICAS), st.integers(0, 50))

KEYED_KEYS: list[Key] = [("s1", "like"), ("s1", "love"), ("s2", "like"), ("s2", "like", 1_700_000_000), ("s3",)]
keyed_ops = st.tuples(st.sampled_from(KEYED_KEYS), st.sampled_from(REPLICAS), st.integers(0, 20))

stamps = st.builds(HlcTimestamp, st.integers(0, 6), st.integers(0, 2), st.sampled_from(["x", "y", "z"]))
lww_ops = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(["v1", "v2", "v3"]), st.integers(0, 3), stamps),
    st.tuples(st.just("close"), stamps),
)

MAXMAP_KEYS: list[bytes | str] = [b"s1", b"s2", "s1", "watermark", b"\x00\xff" * 8]
maxmap_ops = st.one_of(
    st.tuples(
        st.just("set"),
        st.sampled_from(MAXMAP_KEYS),
        st.one_of(st.integers(0, 300), st.just(2**63 - 1)),
        st.integers(0, 40),
    ),
    st.tuples(st.just("expire"), st.integers(0, 40)),
)

# Stamps with wall times 0..6 and untils up to 9: records in and out of force, floors at and past stamps.
expiring_ops = st.one_of(
    st.tuples(
        st.just("set"),
        st.sampled_from(["viewer-1", "viewer-2", "stream-x"]),
        st.integers(0, 9),
        stamps,
        st.sampled_from(["", "spam", "abuse"]),
    ),
    st.tuples(st.just("expire"), st.integers(0, 8)),
)

# Comments: ids from stamps with wall times 0..6, a resend key shared by some, deletes, pins and floors.
comment_stamps = st.builds(HlcTimestamp, st.integers(0, 6), st.integers(0, 1), st.sampled_from(["x", "y"]))
comment_ops = st.one_of(
    st.tuples(
        st.just("add"),
        comment_stamps,
        st.sampled_from(["s1", "s2"]),
        st.sampled_from(["v1", "v2"]),
        st.sampled_from(["hi", "yo"]),
        st.sampled_from(["", "k1"]),
    ),
    st.tuples(st.just("delete"), comment_stamps),
    st.tuples(st.just("pin"), st.sampled_from(["s1", "s2"]), comment_stamps, st.sampled_from(["", "a", "b"])),
    st.tuples(st.just("like"), comment_stamps, st.sampled_from(["v1", "v2", "v3"])),
    st.tuples(st.just("expire"), st.integers(0, 5)),
)


def apply_comments(m: CommentSet, op: tuple[Any, ...]) -> CommentSet:
    if op[0] == "add":
        _, stamp, stream, viewer, text, key = op
        return m.add(Comment(comment_id(stamp), stream, viewer, text, client_key=key))
    if op[0] == "delete":
        return m.delete(comment_id(op[1]))
    if op[0] == "pin":
        return m.set_pin(op[1], op[3], op[2])
    if op[0] == "like":
        return m.like(comment_id(op[1]), op[2])
    return m.expire(floor_for(op[1]))


def apply_gcounter(c: GCounter, op: tuple[str, int]) -> GCounter:
    return c.increment(*op)


def apply_keyed(c: KeyedGCounter, op: tuple[Key, str, int]) -> KeyedGCounter:
    return c.increment(*op)


def apply_lww(m: LwwMap, op: tuple[Any, ...]) -> LwwMap:
    if op[0] == "set":
        return m.set(op[1], op[2], op[3])
    return m.close(op[1])


def apply_expiring(m: ExpiringMap, op: tuple[Any, ...]) -> ExpiringMap:
    if op[0] == "set":
        return m.set(op[1], op[2], op[3], note=op[4], actor=op[3].replica)
    return m.expire(op[1])


def apply_maxmap(m: MaxMap, op: tuple[Any, ...]) -> MaxMap:
    if op[0] == "set":
        return m.set(op[1], op[2], stamp=op[3])
    return m.expire(op[1])


@dataclass(frozen=True)
class Spec:
    """One CRDT type: how to make a replica (``params`` draws its construction parameter, the same
    for every replica of one example), one mutation, and its decoder."""

    name: str
    params: st.SearchStrategy[Any]
    new: Callable[[Any], Any]
    op: st.SearchStrategy[Any]
    apply: Callable[[Any, Any], Any]
    decode: Callable[[Any, bytes], Any]
    has_log: bool = True

    def states(self, param: Any) -> st.SearchStrategy[Any]:
        return st.lists(self.op, max_size=10).map(lambda ops: self.build(param, ops))

    def build(self, param: Any, ops: list[Any]) -> Any:
        state = self.new(param)
        for op in ops:
            self.apply(state, op)
        return state


SPECS = [
    Spec(
        "gcounter",
        st.none(),
        lambda _: GCounter(),
        gcounter_ops,
        apply_gcounter,
        lambda _, b: GCounter.decode(b),
        False,
    ),
    Spec(
        "keyed_gcounter",
        st.none(),
        lambda _: KeyedGCounter(),
        keyed_ops,
        apply_keyed,
        lambda _, b: KeyedGCounter.decode(b),
    ),
    # History bounds 1 and 2 make eviction common; 8 is the default.
    Spec("lww_map", st.sampled_from([1, 2, 8]), LwwMap, lww_ops, apply_lww, lambda k, b: LwwMap.decode(b, history=k)),
    Spec("max_map", st.none(), lambda _: MaxMap(), maxmap_ops, apply_maxmap, lambda _, b: MaxMap.decode(b)),
    Spec(
        "expiring_map",
        st.none(),
        lambda _: ExpiringMap(),
        expiring_ops,
        apply_expiring,
        lambda _, b: ExpiringMap.decode(b),
    ),
    Spec(
        "comment_set",
        st.none(),
        lambda _: CommentSet(),
        comment_ops,
        apply_comments,
        lambda _, b: CommentSet.decode(b),
    ),
]
LOGGED = [s for s in SPECS if s.has_log]

every_type = pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
logged_types = pytest.mark.parametrize("spec", LOGGED, ids=[s.name for s in LOGGED])


def joined(a: Any, *others: Any) -> Any:
    out = a.copy()
    for other in others:
        out.merge(other)
    return out


# -- the laws -----------------------------------------------------------------------------------


@every_type
@given(data=st.data())
def test_merge_is_commutative_associative_and_idempotent(spec: Spec, data: st.DataObject) -> None:
    param = data.draw(spec.params, label="param")
    a, b, c = (data.draw(spec.states(param), label=name) for name in "abc")
    ab = joined(a, b)
    assert ab == joined(b, a)
    assert joined(ab, c) == joined(a, joined(b, c))
    assert joined(a, a) == a
    assert joined(ab, b) == ab
    assert joined(ab, a) == ab


@every_type
@given(data=st.data())
def test_merging_the_deltas_equals_merging_the_full_state(spec: Spec, data: st.DataObject) -> None:
    param = data.draw(spec.params, label="param")
    start = data.draw(spec.states(param), label="start")
    other = data.draw(spec.states(param), label="other")
    ops = data.draw(st.lists(spec.op, max_size=10), label="ops")
    state = start.copy()
    via_deltas = joined(other, start)
    for op in ops:
        before = state.copy()
        delta = spec.apply(state, op)
        assert joined(before, delta) == state  # the mutation is exactly a join with its delta
        via_deltas.merge(spec.decode(param, delta.encode()))
    assert via_deltas == joined(other, state)


@every_type
@given(data=st.data())
def test_encode_decode_round_trips(spec: Spec, data: st.DataObject) -> None:
    param = data.draw(spec.params, label="param")
    a = data.draw(spec.states(param), label="a")
    back = spec.decode(param, a.encode())
    assert back == a
    assert spec.decode(param, back.encode()) == a


@logged_types
@given(data=st.data())
def test_delta_since_whole_or_in_chunks_brings_a_replica_at_that_version_to_the_current_state(
    spec: Spec, data: st.DataObject
) -> None:
    param = data.draw(spec.params, label="param")
    replica = data.draw(spec.states(param), label="replica")
    version = replica.version
    peer = replica.copy()  # what a peer holds after acknowledging `version`
    for _ in range(data.draw(st.integers(0, 3), label="rounds")):
        if data.draw(st.booleans()):
            replica.merge(data.draw(spec.states(param), label="merged"))
        else:
            for op in data.draw(st.lists(spec.op, max_size=5), label="ops"):
                spec.apply(replica, op)

    delta, upto = replica.delta_since(version)
    assert upto == replica.version
    whole = peer.copy()
    whole.merge(spec.decode(param, delta.encode()))
    assert whole == replica

    limit = data.draw(st.integers(1, 3), label="limit")
    acked = version
    rounds = 0
    while acked < replica.version:
        delta, upto = replica.delta_since(acked, limit)
        assert len(delta) <= limit
        assert upto > acked  # every round makes progress
        peer.merge(spec.decode(param, delta.encode()))
        acked = upto
        rounds += 1
        assert rounds <= 100
    assert peer == replica


# -- what merge reports -------------------------------------------------------------------------


@given(a=SPECS[1].states(None), b=SPECS[1].states(None))
def test_keyed_merge_reports_exactly_the_keys_that_grew_and_nothing_shrinks(a: KeyedGCounter, b: KeyedGCounter) -> None:
    before = {k: a.value(k) for k in KEYED_KEYS}
    grown = a.merge(b)
    after = {k: a.value(k) for k in KEYED_KEYS}
    assert all(after[k] >= before[k] for k in KEYED_KEYS)
    assert set(grown) == {k for k in KEYED_KEYS if after[k] > before[k]}
    assert len(grown) == len(set(grown))


@given(a=SPECS[3].states(None), b=SPECS[3].states(None))
def test_maxmap_merge_is_the_floored_join_and_reports_exactly_the_entries_that_grew(a: MaxMap, b: MaxMap) -> None:
    def entries(m: MaxMap) -> dict[bytes | str, tuple[int, int]]:
        return {k: (v, t) for k, v, t in m.stamped_items()}

    mine, theirs = entries(a), entries(b)
    floor = max(a.floor, b.floor)
    # Entries are (value, stamp) here and join by (stamp, value): the later write wins.
    joined = {
        k: max(mine.get(k, (0, 0)), theirs.get(k, (0, 0)), key=lambda e: (e[1], e[0])) for k in set(mine) | set(theirs)
    }
    expected = {k: e for k, e in joined.items() if e[1] >= floor}
    grown = a.merge(b)
    assert a.floor == floor and entries(a) == expected
    assert set(grown) == {k for k, e in expected.items() if mine.get(k) != e}
    assert len(grown) == len(set(grown))


def naive_lww_value(m: LwwMap) -> dict[str, int]:
    """The counting values by the definition: greatest retained pair stamped before the close."""
    out: dict[str, int] = {}
    for key in m:
        for stamp, value in sorted(m.history(key), reverse=True):
            if m.closed_at is None or stamp < m.closed_at:
                out[key] = value
                break
    return out


@given(data=st.data())
def test_lww_merge_reports_exactly_the_keys_whose_counting_value_changed(data: st.DataObject) -> None:
    k = data.draw(SPECS[2].params, label="k")
    a, b = data.draw(SPECS[2].states(k), label="a"), data.draw(SPECS[2].states(k), label="b")
    before = a.value()
    tally_before = a.tally()
    changed = a.merge(b)
    after = a.value()
    assert after == naive_lww_value(a)
    assert a.tally() == dict(Counter(after.values()))
    assert set(changed) == {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
    # The incremental contract: adjust the old tally by the reported keys only.
    tally = Counter(tally_before)
    for key in changed:
        if key in before:
            tally[before[key]] -= 1
        if key in after:
            tally[after[key]] += 1
    assert +tally == Counter(a.tally())


@given(ops=st.lists(lww_ops, max_size=20))
def test_lww_history_is_the_top_k_of_all_recorded_writes_and_close_is_the_earliest(ops: list[Any]) -> None:
    m = LwwMap(history=3)
    recorded: dict[str, set[tuple[HlcTimestamp, int]]] = {}
    closes: list[HlcTimestamp] = []
    for op in ops:
        if op[0] == "set":
            if m.counts(op[3]):
                recorded.setdefault(op[1], set()).add((op[3], op[2]))
            m.set(op[1], op[2], op[3])
        else:
            closes.append(op[1])
            m.close(op[1])
    assert m.closed_at == (min(closes) if closes else None)
    for key, pairs in recorded.items():
        assert list(m.history(key)) == sorted(pairs, reverse=True)[:3]
    assert m.value() == naive_lww_value(m)
