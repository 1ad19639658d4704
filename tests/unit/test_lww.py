"""LwwMap: one vote per voter, changeable until the close; the close wins even when it arrives late."""

from __future__ import annotations

import pytest

from reactmesh.merge.codec import seal
from reactmesh.merge.errors import ConfigError, CRDTMisuse, DecodeError
from reactmesh.merge.hlc import HlcTimestamp
from reactmesh.merge.lww import LwwMap
from reactmesh.v1 import crdt_pb2


def ts(wall_ms: int, replica: str = "eu") -> HlcTimestamp:
    return HlcTimestamp(wall_ms, 0, replica)


def test_the_latest_stamped_vote_counts_whatever_the_arrival_order() -> None:
    a = LwwMap()
    a.set("alice", 1, ts(10))
    a.set("alice", 2, ts(20))
    b = LwwMap()
    b.set("alice", 2, ts(20))
    b.set("alice", 1, ts(10))  # older, arrives later
    assert a.value("alice") == b.value("alice") == 2
    assert a == b


def test_equal_wall_times_are_ordered_by_replica() -> None:
    m = LwwMap()
    m.set("alice", 1, ts(10, "us"))
    m.set("alice", 2, ts(10, "eu"))
    assert m.value("alice") == 1


def test_value_and_tally_reflect_every_counting_vote() -> None:
    m = LwwMap()
    m.set("alice", 1, ts(1))
    m.set("bob", 1, ts(2))
    m.set("carol", 0, ts(3))
    m.set("bob", 0, ts(4))
    assert m.value() == {"alice": 1, "bob": 0, "carol": 0}
    assert m.tally() == {0: 2, 1: 1}
    assert m.value("dave") is None
    assert dict(m.items()) == m.value()


def test_votes_stamped_at_or_after_the_close_do_not_count() -> None:
    m = LwwMap()
    m.set("alice", 1, ts(10))
    m.set("bob", 1, ts(30))
    m.close(ts(20))
    assert m.value() == {"alice": 1}
    assert m.counts(ts(19)) and not m.counts(ts(20))


def test_a_late_arriving_close_restores_the_vote_made_before_it() -> None:
    here = LwwMap()
    here.set("alice", 1, ts(10))
    here.set("alice", 2, ts(30))  # changed after the poll closed elsewhere
    elsewhere = LwwMap()
    elsewhere.close(ts(20, "us"))
    assert here.value("alice") == 2
    assert here.merge(elsewhere) == ["alice"]
    assert here.value("alice") == 1
    assert here.tally() == {1: 1}


def test_merge_reports_the_keys_whose_counting_vote_changed() -> None:
    here = LwwMap()
    here.set("alice", 1, ts(10))
    here.set("bob", 1, ts(30))
    here.set("carol", 0, ts(5))
    there = LwwMap()
    there.set("alice", 2, ts(40))  # a newer vote: changes alice
    there.set("carol", 1, ts(1))  # an older vote: changes nothing
    there.set("dave", 0, ts(3))  # a new voter
    assert sorted(here.merge(there)) == ["alice", "dave"]
    closing = LwwMap()
    closing.close(ts(20))
    assert sorted(here.merge(closing)) == ["alice", "bob"]  # alice back to 1, bob no longer counts
    assert here.value() == {"alice": 1, "carol": 0, "dave": 0}
    assert here.tally() == {1: 1, 0: 2}


def test_the_earliest_close_wins_and_a_later_one_changes_nothing() -> None:
    m = LwwMap()
    assert m.close(ts(50)).closed_at == ts(50)
    assert m.close(ts(40)).closed_at == ts(40)
    delta = m.close(ts(45))
    assert delta.closed_at is None and len(delta) == 0
    assert m.closed_at == ts(40)


def test_a_replica_that_knows_of_the_close_does_not_record_later_votes() -> None:
    m = LwwMap()
    m.set("alice", 1, ts(10))
    m.close(ts(20))
    delta = m.set("alice", 2, ts(25))
    assert len(delta) == 0
    assert m.history("alice") == ((ts(10), 1),)


def test_set_returns_the_written_pair_as_delta_or_nothing_when_it_is_known() -> None:
    m = LwwMap()
    delta = m.set("alice", 1, ts(10))
    assert delta.history("alice") == ((ts(10), 1),)
    assert delta.value() == {"alice": 1}
    assert len(m.set("alice", 1, ts(10))) == 0


def test_history_keeps_the_k_latest_writes() -> None:
    m = LwwMap(history=2)
    for wall, option in ((10, 1), (20, 2), (30, 3)):
        m.set("alice", option, ts(wall))
    assert m.history("alice") == ((ts(30), 3), (ts(20), 2))
    assert len(m.set("alice", 0, ts(5))) == 0  # older than everything kept: no change
    assert m.history_limit == 2


def test_a_voter_with_k_votes_after_the_close_no_longer_counts() -> None:
    # The documented bound: the earlier vote was forgotten before the close was known.
    m = LwwMap(history=2)
    m.set("alice", 1, ts(10))
    m.set("alice", 2, ts(30))
    m.set("alice", 3, ts(40))
    closing = LwwMap()
    closing.close(ts(20))
    assert m.merge(closing) == ["alice"]
    assert m.value() == {}


def test_two_values_with_the_same_stamp_resolve_the_same_way_everywhere() -> None:
    a = LwwMap()
    a.set("alice", 1, ts(10))
    b = LwwMap()
    b.set("alice", 2, ts(10))
    ab, ba = a.copy(), b.copy()
    ab.merge(b)
    ba.merge(a)
    assert ab == ba and ab.value("alice") == ba.value("alice") == 2


def test_delta_since_carries_changed_keys_and_the_close_marker() -> None:
    m = LwwMap()
    m.set("alice", 1, ts(10))
    acked = m.version
    m.set("bob", 2, ts(11))
    m.close(ts(50))
    delta, upto = m.delta_since(acked)
    assert list(delta.keys()) == ["bob"]
    assert delta.closed_at == ts(50)
    assert upto == m.version
    empty, same = m.delta_since(upto)
    assert len(empty) == 0 and empty.closed_at is None and same == upto


def test_delta_since_with_a_limit_includes_the_close_only_within_the_covered_range() -> None:
    m = LwwMap()
    m.set("alice", 1, ts(10))
    m.set("bob", 1, ts(11))
    m.close(ts(50))
    m.set("carol", 1, ts(12))
    first, upto = m.delta_since(0, limit=1)
    assert list(first.keys()) == ["alice"] and first.closed_at is None
    second, upto = m.delta_since(upto, limit=1)
    assert list(second.keys()) == ["bob"] and second.closed_at is None
    third, upto = m.delta_since(upto, limit=1)
    assert list(third.keys()) == ["carol"] and third.closed_at == ts(50)
    assert upto == m.version
    nothing, upto0 = m.delta_since(0, limit=0)
    assert len(nothing) == 0 and nothing.closed_at is None and upto0 == 0


def test_latest_stamp_is_the_greatest_of_writes_and_close() -> None:
    m = LwwMap()
    assert m.latest_stamp() is None
    m.set("alice", 1, ts(10))
    m.close(ts(5))
    assert m.latest_stamp() == ts(10)


def test_copy_is_independent_and_equal() -> None:
    m = LwwMap()
    m.set("alice", 1, ts(10))
    c = m.copy()
    assert c == m and c.tally() == m.tally()
    c.set("alice", 2, ts(20))
    assert m.value("alice") == 1


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("", 1, "non-empty"), ("alice", 2**63, "int64"), ("alice", -(2**63) - 1, "int64")],
)
def test_misuse_is_refused(key: str, value: int, message: str) -> None:
    with pytest.raises(CRDTMisuse, match=message):
        LwwMap().set(key, value, ts(1))


def test_a_history_bound_below_one_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"lww_map\.history"):
        LwwMap(history=0)


def test_round_trip_keeps_history_close_and_tallies() -> None:
    m = LwwMap()
    m.set("alice", 1, ts(10))
    m.set("alice", -3, ts(30, "us"))
    m.set("bob", 2, HlcTimestamp(12, 7, "eu"))
    m.close(ts(20))
    back = LwwMap.decode(m.encode())
    assert back == m
    assert back.value() == {"alice": 1, "bob": 2}
    assert back.tally() == m.tally()
    assert LwwMap.decode(LwwMap().encode()) == LwwMap()


def test_decode_keeps_the_k_latest_pairs_of_a_longer_body() -> None:
    m = LwwMap(history=8)
    for wall in range(8):
        m.set("alice", wall, ts(wall))
    assert LwwMap.decode(m.encode(), history=2).history("alice") == ((ts(7), 7), (ts(6), 6))


def lww_body(*entries: crdt_pb2.LwwEntry, closed_at: crdt_pb2.HlcTimestamp | None = None) -> bytes:
    return seal("lww_map", 1, crdt_pb2.LwwMapState(entries=entries, closed_at=closed_at))


GOOD_STAMP = crdt_pb2.HlcTimestamp(wall_ms=1, logical=0, replica="eu")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (lww_body(crdt_pb2.LwwEntry(key="", value=1, stamp=GOOD_STAMP)), "empty key"),
        (lww_body(crdt_pb2.LwwEntry(key="alice", value=1)), "'alice' has no stamp"),
        (
            lww_body(crdt_pb2.LwwEntry(key="alice", value=1, stamp=crdt_pb2.HlcTimestamp(wall_ms=1))),
            "bad HLC timestamp.*replica",
        ),
        (
            lww_body(closed_at=crdt_pb2.HlcTimestamp(wall_ms=-1, replica="eu")),
            "bad HLC timestamp.*wall_ms",
        ),
    ],
)
def test_decode_rejects_entries_it_cannot_trust(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        LwwMap.decode(data)
