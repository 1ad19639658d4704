"""Bounded ``delta_since`` streams, for every type with a version log (the shared ``merge.deltalog``).

A source replica is mutated and merged into at random; between changes a peer that started empty
takes ``delta_since(acked, limit)`` through the codec, merges it and acknowledges ``upto``. At every
round: ``upto`` never falls below the acknowledged version and never passes the source's version,
rounds make progress whenever something is unacknowledged, at most ``limit`` keys travel, and every
change up to ``upto`` is either held by the peer or in a key changed after ``upto``, which a later
round sends (what "covers upto" means). Once the stream is drained the peer equals the source.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reactmesh.merge.polls import PollSet
from tests.property import test_poll_laws as polls
from tests.property.test_crdt_laws import LOGGED, Spec, joined

SPECS = [
    *LOGGED,
    Spec("poll_set", polls.HISTORIES, lambda k: PollSet(history=k), polls.poll_ops, polls.apply, polls.decode),
]
logged_types = pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])

MAX_ROUNDS = 500


class Stream:
    """The peer's side of one acknowledged stream, with the checks every round must pass."""

    def __init__(self, spec: Spec, param: Any, source: Any, limit: int | None) -> None:
        self.spec, self.param, self.source, self.limit = spec, param, source, limit
        self.peer = spec.new(param)
        self.acked = 0
        # (version, copy) of the source after each change, oldest first.
        self.snapshots: list[tuple[int, Any]] = [(0, spec.new(param))]

    def changed(self) -> None:
        self.snapshots.append((self.source.version, self.source.copy()))

    def round(self) -> None:
        before = self.acked
        delta, upto = self.source.delta_since(before, self.limit)
        assert before <= upto <= max(self.source.version, before)
        if self.source.version > before:
            assert upto > before, "a round with unacknowledged changes must make progress"
        else:
            assert upto == before and len(delta) == 0
        if self.limit is not None:
            assert len(delta) <= self.limit
        self.peer.merge(self.spec.decode(self.param, delta.encode()))
        self.acked = upto
        covered = [snap for version, snap in self.snapshots if version <= upto][-1]
        later = self.source.delta_since(upto)[0]
        will_hold = joined(self.peer, later)
        assert joined(will_hold, covered) == will_hold, f"a change up to version {upto} is neither sent nor pending"

    def drain(self) -> None:
        rounds = 0
        while self.acked < self.source.version:
            self.round()
            rounds += 1
            assert rounds <= MAX_ROUNDS
        self.round()


@logged_types
@given(data=st.data())
def test_bounded_delta_streams_into_an_empty_replica_converge_with_monotone_upto(
    spec: Spec, data: st.DataObject
) -> None:
    param = data.draw(spec.params, label="param")
    limit = data.draw(st.one_of(st.none(), st.integers(1, 4)), label="limit")
    source = spec.new(param)
    stream = Stream(spec, param, source, limit)
    steps = st.one_of(
        st.tuples(st.just("op"), spec.op),
        st.tuples(st.just("merge"), spec.states(param)),
        st.tuples(st.just("round"), st.none()),
    )
    for kind, arg in data.draw(st.lists(steps, max_size=25), label="steps"):
        if kind == "op":
            spec.apply(source, arg)
            stream.changed()
        elif kind == "merge":
            source.merge(arg)
            stream.changed()
        else:
            stream.round()
    stream.drain()
    assert stream.peer == source
    assert stream.acked == source.version

    ahead = source.version + data.draw(st.integers(1, 5), label="ahead")
    delta, upto = source.delta_since(ahead, limit)
    assert upto == ahead and len(delta) == 0
