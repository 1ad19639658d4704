"""PollSet's join laws with hypothesis, and three replicas converging through a hostile network.

Laws on reachable states: merge is commutative, associative and idempotent; merging the deltas the
mutators return equals merging the full state; encode/decode round-trips; ``delta_since`` whole or
in chunks brings a replica at that version to the current state; ``merge`` reports exactly the
polls whose state changed, and tallies equal a naive recount. The stateful test exchanges only
encoded bytes (eager deltas, acked ``delta_since`` streams, full states) that the network reorders,
duplicates and drops, then requires every replica to equal the sequential model: per poll the
earliest spec, and each voter's latest recorded vote stamped before the earliest close issued.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, precondition, rule

from reactmesh.merge.hlc import HlcTimestamp, HybridLogicalClock
from reactmesh.merge.polls import PollSet, PollSpec
from tests.property.test_crdt_stateful import Exchange, N, SteppedClock, replica_ids

POLL_IDS = ["p1", "p2"]
VOTERS = ["ann", "bob", "cy"]
HISTORIES = st.sampled_from([1, 2, 8])

stamps = st.builds(HlcTimestamp, st.integers(0, 8), st.integers(0, 2), st.sampled_from(["x", "y", "z"]))
specs = st.builds(
    PollSpec,
    st.sampled_from(["s1", "s2"]),
    st.sampled_from(["Q1?", "Q2?"]),
    st.just(("a", "b", "c")),
    stamps,
    st.sampled_from([0, 4, 6]),
)
poll_ops = st.one_of(
    st.tuples(st.just("create"), st.sampled_from(POLL_IDS), specs),
    st.tuples(st.just("vote"), st.sampled_from(POLL_IDS), st.sampled_from(VOTERS), st.integers(0, 3), stamps),
    st.tuples(st.just("close"), st.sampled_from(POLL_IDS), stamps),
    st.tuples(st.just("deadline"), st.sampled_from(POLL_IDS)),
)


def apply(s: PollSet, op: tuple[Any, ...]) -> PollSet:
    if op[0] == "create":
        return s.create(op[1], op[2])
    if op[0] == "vote":
        return s.vote(op[1], op[2], op[3], op[4])
    if op[0] == "close":
        return s.close(op[1], op[2])
    return s.close_at_deadline(op[1])


def build(k: int, ops: list[tuple[Any, ...]]) -> PollSet:
    s = PollSet(history=k)
    for op in ops:
        apply(s, op)
    return s


def states(k: int) -> st.SearchStrategy[PollSet]:
    return st.lists(poll_ops, max_size=12).map(lambda ops: build(k, ops))


def joined(a: PollSet, *others: PollSet) -> PollSet:
    out = a.copy()
    for other in others:
        out.merge(other)
    return out


def decode(k: int, data: bytes) -> PollSet:
    return PollSet.decode(data, history=k)


def naive_tally(s: PollSet, poll_id: str) -> tuple[int, ...]:
    spec, votes = s.spec(poll_id), s.votes(poll_id)
    if spec is None or votes is None:
        return ()
    closed = votes.closed_at
    counted: Counter[int] = Counter()
    for voter in votes.keys():  # noqa: SIM118
        for stamp, option in votes.history(voter):
            if closed is None or stamp < closed:
                counted[option] += 1
                break
    return tuple(counted[i] for i in range(len(spec.options)))


@given(data=st.data())
def test_merge_is_commutative_associative_and_idempotent(data: st.DataObject) -> None:
    k = data.draw(HISTORIES, label="k")
    a, b, c = (data.draw(states(k), label=name) for name in "abc")
    ab = joined(a, b)
    assert ab == joined(b, a)
    assert joined(ab, c) == joined(a, joined(b, c))
    assert joined(a, a) == a
    assert joined(ab, b) == ab
    assert joined(ab, a) == ab


@given(data=st.data())
def test_merging_the_deltas_equals_merging_the_full_state(data: st.DataObject) -> None:
    k = data.draw(HISTORIES, label="k")
    start, other = data.draw(states(k), label="start"), data.draw(states(k), label="other")
    state = start.copy()
    via_deltas = joined(other, start)
    for op in data.draw(st.lists(poll_ops, max_size=12), label="ops"):
        before = state.copy()
        delta = apply(state, op)
        assert joined(before, delta) == state
        via_deltas.merge(decode(k, delta.encode()))
    assert via_deltas == joined(other, state)


@given(data=st.data())
def test_encode_decode_round_trips(data: st.DataObject) -> None:
    k = data.draw(HISTORIES, label="k")
    a = data.draw(states(k), label="a")
    back = decode(k, a.encode())
    assert back == a
    assert len(back) == len(a)
    assert decode(k, back.encode()) == a


@given(data=st.data())
def test_delta_since_whole_or_in_chunks_brings_a_replica_at_that_version_to_the_current_state(
    data: st.DataObject,
) -> None:
    k = data.draw(HISTORIES, label="k")
    replica = data.draw(states(k), label="replica")
    version = replica.version
    peer = replica.copy()
    for _ in range(data.draw(st.integers(0, 3), label="rounds")):
        if data.draw(st.booleans()):
            replica.merge(data.draw(states(k), label="merged"))
        else:
            for op in data.draw(st.lists(poll_ops, max_size=5), label="ops"):
                apply(replica, op)
    delta, upto = replica.delta_since(version)
    assert upto == replica.version
    whole = peer.copy()
    whole.merge(decode(k, delta.encode()))
    assert whole == replica
    limit = data.draw(st.integers(1, 3), label="limit")
    acked, rounds = version, 0
    while acked < replica.version:
        delta, upto = replica.delta_since(acked, limit)
        assert len(delta) <= limit
        assert upto > acked
        peer.merge(decode(k, delta.encode()))
        acked = upto
        rounds += 1
        assert rounds <= 100
    assert peer == replica


@given(data=st.data())
def test_merge_reports_exactly_the_polls_whose_state_changed_and_tallies_stay_exact(data: st.DataObject) -> None:
    k = data.draw(HISTORIES, label="k")
    a, b = data.draw(states(k), label="a"), data.draw(states(k), label="b")
    before = a.copy()
    changed = a.merge(b)
    assert len(changed) == len(set(changed))
    for poll_id in POLL_IDS:
        mine, then = a.votes(poll_id), before.votes(poll_id)
        same = a.spec(poll_id) == before.spec(poll_id) and (
            (mine is None and then is None) or (mine is not None and then is not None and mine == then)
        )
        assert (poll_id in changed) == (not same)
        assert a.tally(poll_id) == naive_tally(a, poll_id)


# -- three replicas through a lossy network ----------------------------------------------------

HISTORY = 2
DEADLINE_MS = 1_700_000_000_010


class PollSetExchange(Exchange):
    def __init__(self) -> None:
        self.clocks = [SteppedClock(1_700_000_000_000 + skew) for skew in (0, 4, -3)]
        self.hlcs = [HybridLogicalClock(f"r{i}", clock) for i, clock in enumerate(self.clocks)]
        super().__init__()
        self.specs: dict[str, list[PollSpec]] = {}
        self.writes: dict[tuple[str, str], set[tuple[HlcTimestamp, int]]] = {}
        self.closes: dict[str, list[HlcTimestamp]] = {}

    def new_replica(self, i: int) -> PollSet:
        return PollSet(history=HISTORY)

    def decode(self, data: bytes) -> PollSet:
        return PollSet.decode(data, history=HISTORY)

    def received(self, dst: int, state: PollSet) -> None:
        latest = state.latest_stamp
        if latest is not None:
            self.hlcs[dst].update(latest)

    @initialize(i=replica_ids, poll=st.sampled_from(POLL_IDS), with_deadline=st.booleans())
    def start_with_a_poll(self, i: int, poll: str, with_deadline: bool) -> None:
        self.create(i, poll, with_deadline)

    @precondition(lambda self: sum(len(v) for v in self.specs.values()) < 4)
    @rule(i=replica_ids, poll=st.sampled_from(POLL_IDS), with_deadline=st.booleans())
    def create(self, i: int, poll: str, with_deadline: bool) -> None:
        spec = PollSpec(
            f"s{i}", f"Q from r{i}?", ("a", "b", "c"), self.hlcs[i].now(), DEADLINE_MS if with_deadline else 0
        )
        self.specs.setdefault(poll, []).append(spec)
        self.broadcast(i, self.replicas[i].create(poll, spec))

    ballots = st.lists(
        st.tuples(replica_ids, st.sampled_from(POLL_IDS), st.sampled_from(VOTERS), st.integers(0, 2)),
        min_size=1,
        max_size=4,
    )

    @rule(votes=ballots)
    def vote_somewhere(self, votes: list[tuple[int, str, str, int]]) -> None:
        for i, poll, voter, option in votes:
            stamp = self.hlcs[i].now()
            replica: PollSet = self.replicas[i]
            if replica.counts(poll, stamp):
                self.writes.setdefault((poll, voter), set()).add((stamp, option))
            self.broadcast(i, replica.vote(poll, voter, option, stamp))

    @precondition(lambda self: sum(len(v) for v in self.closes.values()) < 3)
    @rule(i=replica_ids, poll=st.sampled_from(POLL_IDS))
    def host_close(self, i: int, poll: str) -> None:
        stamp = self.hlcs[i].now()
        self.closes.setdefault(poll, []).append(stamp)
        self.broadcast(i, self.replicas[i].close(poll, stamp))

    @rule(i=replica_ids, poll=st.sampled_from(POLL_IDS))
    def deadline_close(self, i: int, poll: str) -> None:
        replica: PollSet = self.replicas[i]
        spec = replica.spec(poll)
        delta = replica.close_at_deadline(poll)
        if spec is not None and spec.deadline is not None:
            self.closes.setdefault(poll, []).append(spec.deadline)
        self.broadcast(i, delta)

    @rule(i=replica_ids, ms=st.integers(1, 5))
    def tick(self, i: int, ms: int) -> None:
        self.clocks[i].now_ms += ms

    def check_replica(self, i: int) -> None:
        replica: PollSet = self.replicas[i]
        for poll in POLL_IDS:
            spec = replica.spec(poll)
            assert spec is None or spec in self.specs.get(poll, [])
            assert replica.tally(poll) == naive_tally(replica, poll)
            votes = replica.votes(poll)
            if votes is not None:
                for voter in votes.keys():  # noqa: SIM118
                    assert set(votes.history(voter)) <= self.writes[(poll, voter)]

    def check_model(self, state: PollSet) -> None:
        for poll in POLL_IDS:
            specs = self.specs.get(poll, [])
            expected_spec = min(specs, key=PollSpec.order_key) if specs else None
            assert state.spec(poll) == expected_spec
            close = min(self.closes[poll]) if self.closes.get(poll) else None
            assert state.closed_at(poll) == close
            counted: Counter[int] = Counter()
            for (p, _), pairs in self.writes.items():
                if p != poll:
                    continue
                for stamp, option in sorted(pairs, reverse=True)[:HISTORY]:
                    if close is None or stamp < close:
                        counted[option] += 1
                        break
            if expected_spec is not None:
                assert state.tally(poll) == tuple(counted[i] for i in range(3))
        assert N == 3


_PROFILE = settings()
TestPollSetsConvergeThroughALossyNetwork = PollSetExchange.TestCase
TestPollSetsConvergeThroughALossyNetwork.settings = settings(_PROFILE, max_examples=max(30, _PROFILE.max_examples // 3))
