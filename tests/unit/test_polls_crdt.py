"""PollSet: one changeable vote per viewer, closes by host and by deadline, specs, deltas and codec."""

from __future__ import annotations

from collections import Counter

import pytest

from reactmesh.merge.codec import seal
from reactmesh.merge.errors import CRDTMisuse, DecodeError
from reactmesh.merge.hlc import HlcTimestamp
from reactmesh.merge.polls import DEADLINE_REPLICA, PollSet, PollSpec, deadline_stamp
from reactmesh.merge.replica import ReplicaState
from reactmesh.v1 import crdt_pb2

T0 = 1_700_000_000_000


def ts(ms: int, logical: int = 0, replica: str = "a") -> HlcTimestamp:
    return HlcTimestamp(T0 + ms, logical, replica)


def spec(
    stream: str = "s1", closes_in_ms: int = 0, created: HlcTimestamp | None = None, question: str = "Who?"
) -> PollSpec:
    return PollSpec(
        stream, question, ("red", "blue", "green"), created or ts(0), T0 + closes_in_ms if closes_in_ms else 0
    )


def via_wire(delta: PollSet) -> PollSet:
    return PollSet.decode(delta.encode())


def test_a_changed_vote_moves_the_tally_and_the_latest_stamp_wins_in_any_order() -> None:
    a = PollSet()
    a.create("p", spec())
    a.vote("p", "ann", 0, ts(10))
    a.vote("p", "bob", 0, ts(11))
    assert a.tally("p") == (2, 0, 0)
    change = a.vote("p", "ann", 2, ts(20, replica="b"))
    assert a.tally("p") == (1, 0, 1)
    # The same writes delivered backwards to another replica end the same way.
    b = PollSet()
    b.merge(via_wire(change))
    b.merge(via_wire(a))
    assert b == a
    assert b.tally("p") == (1, 0, 1)
    assert b.votes("p").value("ann") == 2  # type: ignore[union-attr]


def test_an_older_vote_arriving_late_does_not_replace_a_newer_one() -> None:
    a = PollSet()
    a.create("p", spec())
    a.vote("p", "ann", 1, ts(50, replica="b"))
    a.merge(via_wire(PollSet().vote("p", "ann", 0, ts(40, replica="c"))))
    assert a.tally("p") == (0, 1, 0)


def test_a_vote_stamped_before_the_close_counts_even_when_it_arrives_after_it() -> None:
    region_a, region_b = PollSet(), PollSet()
    created = region_a.create("p", spec())
    region_b.merge(via_wire(created))
    in_flight = region_b.vote("p", "ann", 1, ts(99, replica="b"))
    late = region_b.vote("p", "bob", 1, ts(101, replica="b"))
    close = region_a.close("p", ts(100))
    region_a.merge(via_wire(in_flight))
    region_a.merge(via_wire(late))
    region_b.merge(via_wire(close))
    for region in (region_a, region_b):
        assert region.tally("p") == (0, 1, 0)
        assert region.value("p").closed_at == ts(100)  # type: ignore[union-attr]
    assert region_a == region_b


def test_a_vote_a_replica_knows_is_after_the_close_is_not_recorded() -> None:
    a = PollSet()
    a.create("p", spec())
    a.close("p", ts(100))
    assert not a.counts("p", ts(100))
    assert len(a.vote("p", "ann", 0, ts(150))) == 0
    assert "ann" not in a.votes("p")  # type: ignore[operator]


def test_after_a_close_a_voter_counts_with_the_last_vote_stamped_before_it() -> None:
    a = PollSet()
    a.create("p", spec())
    a.vote("p", "ann", 0, ts(10))
    a.vote("p", "ann", 2, ts(200))  # a change made where the close was not known yet
    assert a.tally("p") == (0, 0, 1)
    changed = a.merge(via_wire(PollSet().close("p", ts(100, replica="b"))))
    assert changed == ["p"]
    assert a.tally("p") == (1, 0, 0)


def test_the_deadline_close_is_the_same_stamp_everywhere_and_takes_votes_before_closes_at_only() -> None:
    replicas = [PollSet() for _ in range(3)]
    created = replicas[0].create("p", spec(closes_in_ms=1000))
    for r in replicas[1:]:
        r.merge(via_wire(created))
    just_before = replicas[1].vote("p", "ann", 0, HlcTimestamp(T0 + 999, 2**32 - 1, "zzz"))
    in_the_millisecond = PollSet().vote("p", "bob", 1, HlcTimestamp(T0 + 1000, 0, "a"))
    assert not replicas[2].counts("p", HlcTimestamp(T0 + 1000, 0, "a"))
    closes = [r.close_at_deadline("p") for r in replicas]
    assert all(c.closed_at("p") == deadline_stamp(T0 + 1000) for c in closes)
    assert deadline_stamp(T0 + 1000).replica == DEADLINE_REPLICA
    for r in replicas:
        for d in (just_before, in_the_millisecond, *closes):
            r.merge(via_wire(d))
    assert all(r == replicas[0] for r in replicas)
    assert replicas[0].tally("p") == (1, 0, 0)
    assert len(replicas[0].close_at_deadline("p")) == 0  # issuing it again changes nothing


def test_the_earliest_close_wins_whether_host_or_deadline() -> None:
    a = PollSet()
    a.create("p", spec(closes_in_ms=1000))
    a.close("p", ts(500))
    assert len(a.close_at_deadline("p")) == 0
    assert a.closed_at("p") == ts(500)
    b = PollSet()
    b.create("p", spec(closes_in_ms=1000))
    b.close_at_deadline("p")
    assert b.merge(via_wire(a)) == ["p"]
    assert b.closed_at("p") == ts(500)
    assert len(b.close("p", ts(600))) == 0


def test_conflicting_specs_resolve_to_the_earliest_created_everywhere() -> None:
    early = spec(created=ts(5, replica="b"), question="Early?")
    late = spec(created=ts(7), question="Late?", stream="s2")
    a, b = PollSet(), PollSet()
    da, db = a.create("p", late), b.create("p", early)
    a.merge(via_wire(db))
    b.merge(via_wire(da))
    assert a == b
    assert a.spec("p") == early
    assert a.polls_of("s1") == ["p"] and a.polls_of("s2") == []
    assert len(a.create("p", late)) == 0


def test_votes_arriving_before_the_spec_are_kept_and_show_once_it_arrives() -> None:
    a = PollSet()
    a.merge(via_wire(PollSet().vote("p", "ann", 1, ts(10, replica="c"))))
    assert a.value("p") is None and a.tally("p") == ()
    assert a.value() == {}
    a.merge(via_wire(PollSet().create("p", spec())))
    assert a.tally("p") == (0, 1, 0)


def test_merge_reports_every_poll_whose_state_changed_including_hidden_history() -> None:
    a = PollSet()
    a.create("p", spec())
    a.create("q", spec())
    a.vote("p", "ann", 1, ts(20))
    older = PollSet().vote("p", "ann", 0, ts(10, replica="b"))  # retained, not counted
    assert a.merge(via_wire(older)) == ["p"]
    assert a.tally("p") == (0, 1, 0)
    assert a.merge(via_wire(older)) == []
    assert a.merge(via_wire(a.copy())) == []


def test_tallies_follow_thousands_of_vote_changes_exactly() -> None:
    a = PollSet()
    a.create("p", spec())
    last: dict[str, int] = {}
    for i in range(3000):
        voter, option = f"v{i % 700}", (i * 7) % 3
        a.vote("p", voter, option, ts(i))
        last[voter] = option
    counted = Counter(last.values())
    assert a.tally("p") == tuple(counted[i] for i in range(3))


def test_len_counts_heads_and_voters_and_a_close_alone_is_a_unit() -> None:
    a = PollSet()
    a.create("p", spec())
    a.vote("p", "ann", 0, ts(1))
    a.vote("p", "bob", 0, ts(2))
    assert len(a) == 3
    close = a.close("p", ts(3))
    assert len(close) == 1
    state = ReplicaState({"polls": PollSet()})
    state.merge("polls", via_wire(a))
    parts, _ = state.delta_since({"polls": state.collections["polls"].version - 1})
    assert [name for name, _ in parts] == ["polls"]  # the close-only delta is not dropped as empty


def test_delta_since_sends_only_changed_voters_in_bounded_chunks() -> None:
    a = PollSet()
    a.create("p", spec())
    for i in range(50):
        a.vote("p", f"v{i}", i % 3, ts(i))
    acked = a.version
    a.vote("p", "v7", 2, ts(100))
    a.vote("p", "v8", 2, ts(101))
    delta, upto = a.delta_since(acked)
    assert upto == a.version
    assert len(delta) == 2 and set(delta.votes("p").keys()) == {"v7", "v8"}  # type: ignore[union-attr]
    peer = PollSet()
    version = 0
    rounds = 0
    while version < a.version:
        chunk, version = a.delta_since(version, limit=7)
        assert len(chunk) <= 7
        peer.merge(via_wire(chunk))
        rounds += 1
    assert peer == a and rounds == 8
    with pytest.raises(CRDTMisuse):
        a.delta_since(0, -1)


def test_polls_of_lists_a_streams_polls_oldest_first() -> None:
    a = PollSet()
    a.create("late", spec(created=ts(9)))
    a.create("early", spec(created=ts(1)))
    a.create("other", spec(stream="s2"))
    assert a.polls_of("s1") == ["early", "late"]
    assert a.polls_of("nope") == []


def test_encode_decode_round_trips_and_keeps_the_history_bound() -> None:
    a = PollSet(history=2)
    a.create("p", spec(closes_in_ms=500))
    for i in range(5):
        a.vote("p", "ann", i % 3, ts(i))
    a.vote("q", "bob", 1, ts(9))
    a.close("r", ts(10))
    back = PollSet.decode(a.encode(), history=2)
    assert back == a
    assert back.latest_stamp == a.latest_stamp == ts(10)
    assert len(back.votes("p").history("ann")) == 2  # type: ignore[union-attr]


def test_decode_rejects_other_types_unknown_versions_and_garbage() -> None:
    with pytest.raises(DecodeError, match="poll_set"):
        PollSet.decode(crdt_pb2.Envelope(type="lww_map", version=1).SerializeToString())
    with pytest.raises(DecodeError, match="version 2"):
        PollSet.decode(crdt_pb2.Envelope(type="poll_set", version=2).SerializeToString())
    with pytest.raises(DecodeError):
        PollSet.decode(b"\xff\x00garbage")
    no_stamp = crdt_pb2.PollSetState(polls=[crdt_pb2.PollEntry(poll_id="p", spec=crdt_pb2.PollSpec(stream_id="s"))])
    with pytest.raises(DecodeError, match="created stamp"):
        PollSet.decode(seal("poll_set", 1, no_stamp))
    with pytest.raises(DecodeError, match="empty poll id"):
        PollSet.decode(seal("poll_set", 1, crdt_pb2.PollSetState(polls=[crdt_pb2.PollEntry()])))


def test_mutators_refuse_empty_ids() -> None:
    a = PollSet()
    with pytest.raises(CRDTMisuse):
        a.vote("p", "", 0, ts(1))
    with pytest.raises(CRDTMisuse):
        a.vote("", "ann", 0, ts(1))
    with pytest.raises(CRDTMisuse):
        a.vote("p", "ann", 2**63, ts(1))
    assert len(a) == 0 and list(a) == []
