"""Three replicas converge through a hostile network to what a sequential model says.

Each state machine has three replicas that mutate and exchange state only as bytes made by the
real encoder: eager deltas straight from the mutators, ``delta_since`` streams paced by
acknowledgements (which travel the same network), and occasional full-state anti-entropy. The
network reorders, duplicates and drops every kind of message. Invariants hold after every step;
at the end (teardown) full states are exchanged and every replica must equal every other and the
model: plain sums for keyed counters, maxima for MaxMap, for poll votes the latest vote of
each voter stamped before the earliest close (among its K latest votes, the documented bound), and
for ExpiringMap the latest record of each key stamped at or after the highest floor, whose being in
force matches that of the latest record ever written; for CommentSet every comment posted at or above the
highest floor, not deleted, shown once per resend key (the smallest id), the latest pin of each stream, and
the distinct likers of each comment above the floor.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from reactmesh.merge.comments import Comment, CommentSet, Pin, comment_id, floor_for
from reactmesh.merge.expiring import Expiring, ExpiringMap
from reactmesh.merge.hlc import HlcTimestamp, HybridLogicalClock
from reactmesh.merge.keyed import Key, KeyedGCounter
from reactmesh.merge.lww import LwwMap
from reactmesh.merge.maxmap import MaxMap

N = 3
replica_ids = st.integers(0, N - 1)
links = st.sampled_from([(src, dst) for src in range(N) for dst in range(N) if src != dst])
picks = st.integers(0, 10_000)

# (kind, src, dst, payload, upto); kind: "eager" (a mutator's delta), "delta" (delta_since), "ack".
Message = tuple[str, int, int, bytes, int]


class Exchange(RuleBasedStateMachine):
    """Replicas, the lossy network and the delivery rules shared by every CRDT type."""

    def __init__(self) -> None:
        super().__init__()
        self.replicas: list[Any] = [self.new_replica(i) for i in range(N)]
        self.acked = [[0] * N for _ in range(N)]  # acked[src][dst]: version dst acknowledged
        self.wire: list[Message] = []

    # -- per-type hooks ----------------------------------------------------------------------

    def new_replica(self, i: int) -> Any:
        raise NotImplementedError

    def decode(self, data: bytes) -> Any:
        raise NotImplementedError

    def received(self, dst: int, state: Any) -> None:
        """Called with every decoded payload before ``dst`` merges it."""

    def check_replica(self, i: int) -> None:
        raise NotImplementedError

    def check_model(self, state: Any) -> None:
        raise NotImplementedError

    # -- the network -------------------------------------------------------------------------

    def broadcast(self, src: int, delta: Any) -> None:
        payload = delta.encode()
        for dst in range(N):
            if dst != src:
                self.wire.append(("eager", src, dst, payload, 0))

    @rule(link=links, limit=st.none() | st.integers(1, 3))
    def send_unacknowledged_changes(self, link: tuple[int, int], limit: int | None) -> None:
        src, dst = link
        delta, upto = self.replicas[src].delta_since(self.acked[src][dst], limit)
        if upto > self.acked[src][dst]:
            self.wire.append(("delta", src, dst, delta.encode(), upto))

    @precondition(lambda self: self.wire)
    @rule(pick=picks)
    def deliver(self, pick: int) -> None:
        kind, src, dst, payload, upto = self.wire.pop(pick % len(self.wire))
        if kind == "ack":
            self.acked[dst][src] = max(self.acked[dst][src], upto)
            return
        state = self.decode(payload)
        self.received(dst, state)
        self.replicas[dst].merge(state)
        if kind == "delta":
            self.wire.append(("ack", dst, src, b"", upto))

    @precondition(lambda self: self.wire)
    @rule(pick=picks)
    def duplicate(self, pick: int) -> None:
        self.wire.append(self.wire[pick % len(self.wire)])

    @precondition(lambda self: self.wire)
    @rule(pick=picks)
    def drop(self, pick: int) -> None:
        self.wire.pop(pick % len(self.wire))

    @rule(link=links)
    def anti_entropy(self, link: tuple[int, int]) -> None:
        src, dst = link
        state = self.decode(self.replicas[src].encode())
        self.received(dst, state)
        self.replicas[dst].merge(state)

    @invariant()
    def replicas_stay_within_the_model(self) -> None:
        for i in range(N):
            self.check_replica(i)

    def teardown(self) -> None:
        for dst in range(N):
            for src in range(N):
                if src != dst:
                    self.replicas[dst].merge(self.decode(self.replicas[src].encode()))
        first = self.replicas[0]
        for other in self.replicas[1:]:
            assert other == first
        self.check_model(first)


# -- keyed G-counters ---------------------------------------------------------------------------

COUNTER_KEYS: list[Key] = [("s1", "like"), ("s1", "love"), ("s2", "like", 1_700_000_000)]


class KeyedCounterExchange(Exchange):
    def __init__(self) -> None:
        super().__init__()
        self.model: Counter[Key] = Counter()
        self.seen = [dict.fromkeys(COUNTER_KEYS, 0) for _ in range(N)]

    def new_replica(self, i: int) -> KeyedGCounter:
        return KeyedGCounter()

    def decode(self, data: bytes) -> KeyedGCounter:
        return KeyedGCounter.decode(data)

    increments = st.tuples(replica_ids, st.sampled_from(COUNTER_KEYS), st.integers(1, 5))

    @initialize(ops=st.lists(increments, min_size=1, max_size=6))
    def start_with_increments(self, ops: list[tuple[int, Key, int]]) -> None:
        for op in ops:
            self.increment(*op)

    @rule(op=increments)
    def increment_somewhere(self, op: tuple[int, Key, int]) -> None:
        self.increment(*op)

    def increment(self, i: int, key: Key, n: int) -> None:
        self.model[key] += n
        self.broadcast(i, self.replicas[i].increment(key, f"r{i}", n))

    def check_replica(self, i: int) -> None:
        for key in COUNTER_KEYS:
            value = self.replicas[i].value(key)
            assert self.seen[i][key] <= value <= self.model[key]
            self.seen[i][key] = value

    def check_model(self, state: KeyedGCounter) -> None:
        assert {k: state.value(k) for k in COUNTER_KEYS} == {k: self.model[k] for k in COUNTER_KEYS}


# -- max maps -----------------------------------------------------------------------------------

WATERMARK_KEYS: list[bytes | str] = [b"\x01" * 16, b"\x02" * 16, "edge-1"]


class MaxMapExchange(Exchange):
    """Watermarks with stamps and expiry: every replica must end with the model's entries above the highest floor."""

    def __init__(self) -> None:
        super().__init__()
        self.model: dict[bytes | str, tuple[int, int]] = {}
        self.floor = 0

    def new_replica(self, i: int) -> MaxMap:
        return MaxMap()

    def decode(self, data: bytes) -> MaxMap:
        return MaxMap.decode(data)

    writes = st.tuples(replica_ids, st.sampled_from(WATERMARK_KEYS), st.integers(0, 50), st.integers(0, 30))

    @initialize(ops=st.lists(writes, min_size=1, max_size=6))
    def start_with_watermarks(self, ops: list[tuple[int, bytes | str, int, int]]) -> None:
        for op in ops:
            self.raise_watermark(*op)

    @rule(op=writes)
    def raise_watermark_somewhere(self, op: tuple[int, bytes | str, int, int]) -> None:
        self.raise_watermark(*op)

    @rule(i=replica_ids, floor=st.integers(0, 30))
    def expire_somewhere(self, i: int, floor: int) -> None:
        self.floor = max(self.floor, floor)
        self.broadcast(i, self.replicas[i].expire(floor))

    def raise_watermark(self, i: int, key: bytes | str, value: int, stamp: int) -> None:
        if value and stamp >= self.replicas[i].floor:
            self.model[key] = max(self.model.get(key, (0, 0)), (value, stamp), key=lambda e: (e[1], e[0]))
        self.broadcast(i, self.replicas[i].set(key, value, stamp))

    def check_replica(self, i: int) -> None:
        replica = self.replicas[i]
        assert replica.floor <= self.floor
        for key, value, stamp in replica.stamped_items():
            model_value, model_stamp = self.model[key]
            assert stamp >= replica.floor and (stamp, value) <= (model_stamp, model_value)

    def check_model(self, state: MaxMap) -> None:
        expected = {k: e for k, e in self.model.items() if e[1] >= self.floor}
        assert state.floor == self.floor
        assert {k: (v, t) for k, v, t in state.stamped_items()} == expected


# -- poll votes ---------------------------------------------------------------------------------

VOTERS = ["alice", "bob", "carol"]
HISTORY = 2  # small, so that the bound is exercised


class SteppedClock:
    """A wall clock the test moves by hand (all a HybridLogicalClock reads)."""

    def __init__(self, wall_ms: int) -> None:
        self.now_ms = wall_ms

    def wall_ms(self) -> int:
        return self.now_ms

    def monotonic(self) -> float:
        return self.now_ms / 1000

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("not used by these tests")


class PollExchange(Exchange):
    def __init__(self) -> None:
        # Skewed wall clocks, so that stamp order differs from the order of the test's steps.
        self.clocks = [SteppedClock(1_700_000_000_000 + skew) for skew in (0, 4, -3)]
        self.hlcs = [HybridLogicalClock(f"r{i}", clock) for i, clock in enumerate(self.clocks)]
        super().__init__()
        self.writes: dict[str, set[tuple[HlcTimestamp, int]]] = {}
        self.closes: list[HlcTimestamp] = []

    def new_replica(self, i: int) -> LwwMap:
        return LwwMap(history=HISTORY)

    def decode(self, data: bytes) -> LwwMap:
        return LwwMap.decode(data, history=HISTORY)

    def received(self, dst: int, state: LwwMap) -> None:
        latest = state.latest_stamp()
        if latest is not None:
            self.hlcs[dst].update(latest)

    ballots = st.lists(st.tuples(replica_ids, st.sampled_from(VOTERS), st.integers(0, 2)), min_size=1, max_size=4)

    @initialize(votes=ballots)
    def start_with_votes(self, votes: list[tuple[int, str, int]]) -> None:
        for vote in votes:
            self.vote(*vote)

    @rule(votes=ballots)
    def vote_somewhere(self, votes: list[tuple[int, str, int]]) -> None:
        for vote in votes:
            self.vote(*vote)

    def vote(self, i: int, voter: str, option: int) -> None:
        stamp = self.hlcs[i].now()
        replica = self.replicas[i]
        if replica.counts(stamp):  # a replica that knows of the close refuses the vote
            self.writes.setdefault(voter, set()).add((stamp, option))
        self.broadcast(i, replica.set(voter, option, stamp))

    @precondition(lambda self: len(self.closes) < 2)
    @rule(i=replica_ids)
    def close(self, i: int) -> None:
        stamp = self.hlcs[i].now()
        self.closes.append(stamp)
        self.broadcast(i, self.replicas[i].close(stamp))

    @rule(i=replica_ids, ms=st.integers(1, 5))
    def tick(self, i: int, ms: int) -> None:
        self.clocks[i].now_ms += ms

    def check_replica(self, i: int) -> None:
        replica: LwwMap = self.replicas[i]
        closed = replica.closed_at
        if self.closes:
            assert closed is None or closed >= min(self.closes)
        else:
            assert closed is None
        votes = replica.value()
        assert sum(replica.tally().values()) == len(votes) <= len(self.writes)
        for voter in replica:
            assert set(replica.history(voter)) <= self.writes[voter]  # nothing invented
        for voter, option in votes.items():
            counted = [(s, v) for s, v in replica.history(voter) if closed is None or s < closed]
            assert counted and counted[0][1] == option

    def model(self) -> dict[str, int]:
        close = min(self.closes) if self.closes else None
        out: dict[str, int] = {}
        for voter, pairs in self.writes.items():
            for stamp, option in sorted(pairs, reverse=True)[:HISTORY]:
                if close is None or stamp < close:
                    out[voter] = option
                    break
        return out

    def check_model(self, state: LwwMap) -> None:
        assert state.closed_at == (min(self.closes) if self.closes else None)
        expected = self.model()
        assert state.value() == expected
        assert state.tally() == dict(Counter(expected.values()))


class ExpiringExchange(Exchange):
    """Mutes written and lifted in three regions with skewed clocks; each writer raises the floor to its own
    clock minus the longest duration it writes, the rule ``merge.expiring`` says is safe."""

    KEYS = ("viewer-1", "viewer-2", "stream-x")
    LONGEST_MS = 20

    def __init__(self) -> None:
        self.clocks = [SteppedClock(1_700_000_000_000 + skew) for skew in (0, 4, -3)]
        self.hlcs = [HybridLogicalClock(f"r{i}", clock) for i, clock in enumerate(self.clocks)]
        super().__init__()
        self.writes: dict[str, set[Expiring]] = {}
        self.floor = 0

    def new_replica(self, i: int) -> ExpiringMap:
        return ExpiringMap()

    def decode(self, data: bytes) -> ExpiringMap:
        return ExpiringMap.decode(data)

    def received(self, dst: int, state: ExpiringMap) -> None:
        latest = state.latest_stamp()
        if latest is not None:
            self.hlcs[dst].update(latest)

    @rule(i=replica_ids, key=st.sampled_from(KEYS), duration=st.integers(0, LONGEST_MS))
    def write(self, i: int, key: str, duration: int) -> None:
        stamp = self.hlcs[i].now()
        until = stamp.wall_ms + duration if duration else 0  # 0: lift
        self.writes.setdefault(key, set()).add(Expiring(stamp, until, "", f"r{i}"))
        self.broadcast(i, self.replicas[i].set(key, until, stamp, actor=f"r{i}"))

    @rule(i=replica_ids)
    def expire(self, i: int) -> None:
        floor = self.clocks[i].now_ms - self.LONGEST_MS
        self.floor = max(self.floor, floor)
        self.broadcast(i, self.replicas[i].expire(floor))

    @rule(i=replica_ids, ms=st.integers(1, 8))
    def tick(self, i: int, ms: int) -> None:
        self.clocks[i].now_ms += ms

    def check_replica(self, i: int) -> None:
        replica: ExpiringMap = self.replicas[i]
        assert replica.floor_ms <= self.floor
        for key, record in replica.value().items():
            assert record in self.writes[key]  # nothing invented
            assert record.stamp.wall_ms >= replica.floor_ms

    def check_model(self, state: ExpiringMap) -> None:
        assert state.floor_ms == self.floor
        expected = {}
        for key, records in self.writes.items():
            kept = [r for r in records if r.stamp.wall_ms >= self.floor]
            if kept:
                expected[key] = max(kept)
        assert state.value() == expected
        now = max(clock.now_ms for clock in self.clocks)
        for key, records in self.writes.items():
            assert (state.in_force(key, now) is not None) == max(records).in_force(now)


class CommentExchange(Exchange):
    """Comments posted (some resent under one client key), deleted and pinned in three regions, with floors."""

    def __init__(self) -> None:
        self.clocks = [SteppedClock(1_700_000_000_000 + skew) for skew in (0, 4, -3)]
        self.hlcs = [HybridLogicalClock(f"r{i}", clock) for i, clock in enumerate(self.clocks)]
        super().__init__()
        self.posted: dict[str, Comment] = {}
        self.deleted: set[str] = set()
        self.pins: dict[str, Pin] = {}
        self.liked: dict[str, set[str]] = {}
        self.floor = ""

    def new_replica(self, i: int) -> CommentSet:
        return CommentSet()

    def decode(self, data: bytes) -> CommentSet:
        return CommentSet.decode(data)

    def received(self, dst: int, state: CommentSet) -> None:
        latest = state.latest_stamp()
        if latest is not None:
            self.hlcs[dst].update(latest)

    @rule(i=replica_ids, viewer=st.sampled_from(["v1", "v2"]), key=st.sampled_from(["", "k1", "k2"]))
    def post(self, i: int, viewer: str, key: str) -> None:
        c = Comment(comment_id(self.hlcs[i].now()), "s1", viewer, "hello", client_key=key)
        self.posted[c.comment_id] = c
        self.broadcast(i, self.replicas[i].add(c))

    @precondition(lambda self: self.posted)
    @rule(i=replica_ids, pick=picks)
    def delete(self, i: int, pick: int) -> None:
        cid = sorted(self.posted)[pick % len(self.posted)]
        self.deleted.add(cid)
        self.broadcast(i, self.replicas[i].delete(cid))

    @precondition(lambda self: self.posted)
    @rule(i=replica_ids, pick=picks, viewer=st.sampled_from(["v1", "v2", "v3"]))
    def like(self, i: int, pick: int, viewer: str) -> None:
        cid = sorted(self.posted)[pick % len(self.posted)]
        self.liked.setdefault(cid, set()).add(viewer)
        self.broadcast(i, self.replicas[i].like(cid, viewer))

    @rule(i=replica_ids, stream=st.sampled_from(["s1", "s2"]), pinned=st.sampled_from(["", "a"]))
    def pin(self, i: int, stream: str, pinned: str) -> None:
        stamp = self.hlcs[i].now()
        pin = Pin(stamp, pinned)
        if stream not in self.pins or self.pins[stream] < pin:
            self.pins[stream] = pin
        self.broadcast(i, self.replicas[i].set_pin(stream, pinned, stamp))

    @rule(i=replica_ids)
    def expire(self, i: int) -> None:
        floor = floor_for(self.clocks[i].now_ms - 10)
        self.floor = max(self.floor, floor)
        self.broadcast(i, self.replicas[i].expire(floor))

    @rule(i=replica_ids, ms=st.integers(1, 8))
    def tick(self, i: int, ms: int) -> None:
        self.clocks[i].now_ms += ms

    def check_replica(self, i: int) -> None:
        replica: CommentSet = self.replicas[i]
        assert replica.floor_id <= self.floor
        for cid, c in replica.value().items():
            assert self.posted[cid] == c and cid >= replica.floor_id and not replica.deleted(cid)

    def check_model(self, state: CommentSet) -> None:
        assert state.floor_id == self.floor
        kept = {cid: c for cid, c in self.posted.items() if cid >= self.floor}
        first: dict[tuple[str, str, str], str] = {}
        for cid, c in sorted(kept.items()):
            if c.resend_key is not None:
                first.setdefault(c.resend_key, cid)
        expected = {
            cid: c
            for cid, c in kept.items()
            if cid not in self.deleted and (c.resend_key is None or first[c.resend_key] == cid)
        }
        assert state.value() == expected
        for stream, pin in self.pins.items():
            assert state.pin(stream) == pin
        for cid, viewers in self.liked.items():
            assert state.likes(cid) == (len(viewers) if cid >= self.floor else 0)


# Each example is a run of up to 50 steps, so a third of the profile's examples keeps the suite
# within seconds; the "thorough" profile scales this up too.
_PROFILE = settings()
RUNS = settings(_PROFILE, max_examples=max(30, _PROFILE.max_examples // 3))

TestKeyedCountersConvergeThroughALossyNetwork = KeyedCounterExchange.TestCase
TestKeyedCountersConvergeThroughALossyNetwork.settings = RUNS
TestMaxMapsConvergeThroughALossyNetwork = MaxMapExchange.TestCase
TestMaxMapsConvergeThroughALossyNetwork.settings = RUNS
TestPollVotesConvergeThroughALossyNetwork = PollExchange.TestCase
TestPollVotesConvergeThroughALossyNetwork.settings = RUNS
TestExpiringMapsConvergeThroughALossyNetwork = ExpiringExchange.TestCase
TestExpiringMapsConvergeThroughALossyNetwork.settings = RUNS
TestCommentsConvergeThroughALossyNetwork = CommentExchange.TestCase
TestCommentsConvergeThroughALossyNetwork.settings = RUNS
