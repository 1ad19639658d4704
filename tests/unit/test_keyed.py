"""KeyedGCounter: keys, grown-key reporting, delta extraction per peer, pruning, decoding errors."""

from __future__ import annotations

import pytest

from reactmesh.merge.codec import seal
from reactmesh.merge.errors import CRDTMisuse, DecodeError
from reactmesh.merge.keyed import KeyedGCounter, decode_key, encode_key
from reactmesh.v1 import crdt_pb2

LIKE = ("s1", "like")
LOVE = ("s1", "love")
WINDOW = ("s1", "like", 1_700_000_000)


def keyed_state(body: crdt_pb2.KeyedGCounterState) -> bytes:
    return seal("keyed_gcounter", 1, body)


def test_each_key_is_an_independent_counter() -> None:
    c = KeyedGCounter()
    c.increment(LIKE, "r1", 3)
    c.increment(LIKE, "r2", 2)
    c.increment(LOVE, "r1", 1)
    assert c.value(LIKE) == 5
    assert c.value(LOVE) == 1
    assert c.value(("s2", "like")) == 0
    assert dict(c.items()) == {LIKE: 5, LOVE: 1}
    assert dict(c.slots(LIKE)) == {"r1": 3, "r2": 2}
    assert len(c) == 2 and LIKE in c


def test_increment_delta_carries_the_new_slot_total() -> None:
    c = KeyedGCounter()
    c.increment(LIKE, "r1", 3)
    delta = c.increment(LIKE, "r1", 2)
    assert dict(delta.slots(LIKE)) == {"r1": 5}
    assert len(c.increment(LIKE, "r1", 0)) == 0


def test_merge_reports_only_the_keys_that_grew() -> None:
    a = KeyedGCounter()
    a.increment(LIKE, "r1", 3)
    b = KeyedGCounter()
    b.increment(LIKE, "r1", 1)  # behind a
    b.increment(LOVE, "r2", 1)
    b.increment(WINDOW, "r2", 4)
    assert sorted(a.merge(b), key=str) == sorted([LOVE, WINDOW], key=str)
    assert a.merge(b) == []
    assert a.value(LIKE) == 3


def test_delta_since_returns_only_changes_after_the_acknowledged_version() -> None:
    c = KeyedGCounter()
    c.increment(LIKE, "r1")
    acked = c.version
    c.increment(LOVE, "r1")
    c.increment(WINDOW, "r1", 2)
    delta, upto = c.delta_since(acked)
    assert set(delta.keys()) == {LOVE, WINDOW}
    assert upto == c.version
    assert len(c.delta_since(upto)[0]) == 0


def test_delta_since_with_a_limit_sends_the_oldest_changes_first_and_resumes() -> None:
    c = KeyedGCounter()
    for key in (LIKE, LOVE, WINDOW):
        c.increment(key, "r1")
    c.increment(LIKE, "r1")  # LIKE is now the newest change
    first, upto = c.delta_since(0, limit=2)
    assert list(first.keys()) == [LOVE, WINDOW]
    rest, upto2 = c.delta_since(upto, limit=2)
    assert list(rest.keys()) == [LIKE]
    assert upto2 == c.version


def test_delta_since_with_limit_zero_sends_nothing_and_covers_nothing() -> None:
    c = KeyedGCounter()
    c.increment(LIKE, "r1")
    delta, upto = c.delta_since(0, limit=0)
    assert len(delta) == 0 and upto == 0
    with pytest.raises(CRDTMisuse, match="limit"):
        c.delta_since(0, limit=-1)


def test_prune_forgets_keys_locally_and_they_leave_the_delta_log() -> None:
    c = KeyedGCounter()
    c.increment(WINDOW, "r1")
    c.increment(LIKE, "r1")
    assert c.prune(lambda key: len(key) == 3) == 1
    assert WINDOW not in c
    assert set(c.delta_since(0)[0].keys()) == {LIKE}


def test_subset_and_copy() -> None:
    c = KeyedGCounter()
    c.increment(LIKE, "r1", 2)
    c.increment(LOVE, "r1", 1)
    assert set(c.subset([LIKE, ("absent",)]).keys()) == {LIKE}
    d = c.copy()
    d.increment(LIKE, "r1")
    assert c.value(LIKE) == 2 and d.value(LIKE) == 3
    assert c != d


@pytest.mark.parametrize("key", [("s1", "like"), ("s", 0, -5, ""), ("émoji 👍", 2**70)])
def test_keys_of_str_and_int_parts_round_trip_through_text(key: tuple[str | int, ...]) -> None:
    assert decode_key(encode_key(key)) == key


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ((), "at least one part"),
        (("a\x1fb",), "separator"),
        (("s", True), "neither str nor int"),
        (("s", 1.5), "neither str nor int"),
    ],
)
def test_keys_that_could_not_be_decoded_are_refused_at_encoding(key: tuple[object, ...], message: str) -> None:
    with pytest.raises(CRDTMisuse, match=message):
        encode_key(key)  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "message"), [("", "empty key"), ("x1", "bad key part"), ("iabc", "bad integer")])
def test_decode_key_rejects_text_encode_key_never_produces(text: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_key(text)


def test_round_trip_keeps_every_slot() -> None:
    c = KeyedGCounter()
    c.increment(LIKE, "r1", 2)
    c.increment(LIKE, "r2", 7)
    c.increment(WINDOW, "r2", 1)
    back = KeyedGCounter.decode(c.encode())
    assert back == c
    assert dict(back.slots(LIKE)) == {"r1": 2, "r2": 7}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (crdt_pb2.KeyedGCounterState(replicas=[""], keys=[]), "empty replica id"),
        (
            crdt_pb2.KeyedGCounterState(replicas=["r"], keys=[crdt_pb2.KeyedSlots(key="sa", replica_index=[0])]),
            "differ in length",
        ),
        (
            crdt_pb2.KeyedGCounterState(
                replicas=["r"], keys=[crdt_pb2.KeyedSlots(key="sa", replica_index=[1], counts=[1])]
            ),
            "out of range",
        ),
        (
            crdt_pb2.KeyedGCounterState(
                replicas=["r"], keys=[crdt_pb2.KeyedSlots(key="?", replica_index=[0], counts=[1])]
            ),
            "bad key part",
        ),
    ],
)
def test_decode_rejects_inconsistent_bodies(body: crdt_pb2.KeyedGCounterState, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        KeyedGCounter.decode(keyed_state(body))


def test_decode_drops_keys_without_a_positive_count() -> None:
    body = crdt_pb2.KeyedGCounterState(
        replicas=["r"], keys=[crdt_pb2.KeyedSlots(key="sa", replica_index=[0], counts=[0])]
    )
    decoded = KeyedGCounter.decode(keyed_state(body))
    assert len(decoded) == 0 and decoded.version == 0
