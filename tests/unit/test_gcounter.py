"""GCounter: per-replica slots, max-merge, deltas, misuse and decoding errors."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from reactmesh.merge.codec import seal
from reactmesh.merge.errors import CRDTMisuse, DecodeError
from reactmesh.merge.gcounter import GCounter
from reactmesh.v1 import crdt_pb2


def test_value_is_the_sum_of_every_replicas_slot() -> None:
    c = GCounter()
    c.increment("eu/1", 3)
    c.increment("us/1", 4)
    c.increment("eu/1")
    assert c.value() == 8
    assert dict(c.slots) == {"eu/1": 4, "us/1": 4}


def test_increment_returns_the_replicas_new_total_as_delta() -> None:
    c = GCounter({"a": 5})
    delta = c.increment("a", 2)
    assert delta == GCounter({"a": 7})
    assert c.increment("b", 0) == GCounter()  # nothing changed, nothing to send


def test_merge_keeps_the_maximum_of_each_slot_so_replays_do_not_double_count() -> None:
    a = GCounter({"x": 3, "y": 1})
    b = GCounter({"x": 2, "y": 5, "z": 1})
    a.merge(b)
    a.merge(b)
    assert dict(a.slots) == {"x": 3, "y": 5, "z": 1}
    assert a.value() == 9


def test_a_stale_delta_does_not_move_a_slot_back() -> None:
    c = GCounter()
    old = c.increment("a", 1)
    c.increment("a", 1)
    c.merge(old)
    assert c.value() == 2


def test_zero_slots_are_not_kept_and_do_not_affect_equality() -> None:
    assert GCounter({"a": 0}) == GCounter()
    assert GCounter({"a": 0}).encode() == GCounter().encode()


def test_copy_is_independent() -> None:
    a = GCounter({"a": 1})
    b = a.copy()
    b.increment("a")
    assert a.value() == 1 and b.value() == 2


def test_gcounters_are_unhashable() -> None:
    with pytest.raises(TypeError):
        hash(GCounter())


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.increment("a", -1), "only grows"),
        (lambda c: c.increment("", 1), "non-empty"),
        (lambda c: GCounter({"a": -2}), "negative count"),
        (lambda c: GCounter({"": 1}), "non-empty"),
    ],
)
def test_misuse_is_refused_with_crdt_misuse(call: Callable[[GCounter], object], message: str) -> None:
    with pytest.raises(CRDTMisuse, match=message):
        call(GCounter())


def test_encoding_is_deterministic_and_round_trips() -> None:
    a = GCounter({"b": 2, "a": 1})
    b = GCounter({"a": 1, "b": 2})
    assert a.encode() == b.encode()
    assert GCounter.decode(a.encode()) == a


def test_decode_rejects_a_body_whose_lists_differ_in_length() -> None:
    data = seal("gcounter", 1, crdt_pb2.GCounterState(replicas=["a", "b"], counts=[1]))
    with pytest.raises(DecodeError, match="differ in length"):
        GCounter.decode(data)


def test_decode_rejects_an_empty_replica_id() -> None:
    data = seal("gcounter", 1, crdt_pb2.GCounterState(replicas=[""], counts=[1]))
    with pytest.raises(DecodeError, match="empty replica id"):
        GCounter.decode(data)


def test_decode_joins_a_replica_listed_twice() -> None:
    data = seal("gcounter", 1, crdt_pb2.GCounterState(replicas=["a", "a"], counts=[4, 2]))
    assert GCounter.decode(data) == GCounter({"a": 4})
