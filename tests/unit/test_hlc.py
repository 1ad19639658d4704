"""HybridLogicalClock and HlcTimestamp: monotonicity, receive ordering, the drift guard, the wire form."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reactmesh.merge.clock import FakeClock
from reactmesh.merge.errors import ClockDriftError, ConfigError, CRDTMisuse, DecodeError
from reactmesh.merge.hlc import MAX_LOGICAL, HlcTimestamp, HybridLogicalClock
from reactmesh.v1 import crdt_pb2

T0 = 1_700_000_000_000


class SteppedClock:
    """A wall clock the test sets by hand, including backwards (NTP steps happen)."""

    def __init__(self, wall_ms: int = T0) -> None:
        self.now_ms = wall_ms

    def wall_ms(self) -> int:
        return self.now_ms

    def monotonic(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("not used")


def stamp(wall_ms: int, logical: int = 0, replica: str = "peer") -> HlcTimestamp:
    return HlcTimestamp(wall_ms, logical, replica)


def test_timestamps_order_by_wall_then_logical_then_replica() -> None:
    assert stamp(1, 9, "z") < stamp(2, 0, "a")
    assert stamp(2, 0, "z") < stamp(2, 1, "a")
    assert stamp(2, 1, "a") < stamp(2, 1, "b")
    assert stamp(2, 1, "a") == stamp(2, 1, "a")
    assert len({stamp(2, 1, "a"), stamp(2, 1, "a")}) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [((-1, 0, "r"), "wall_ms"), ((0, -1, "r"), "logical"), ((0, 2**32, "r"), "logical"), ((0, 0, ""), "replica")],
)
def test_out_of_range_timestamps_are_refused(args: tuple[int, int, str], message: str) -> None:
    with pytest.raises(CRDTMisuse, match=message):
        HlcTimestamp(*args)


def test_proto_round_trip() -> None:
    ts = stamp(T0, 7, "eu/agg-1")
    msg = ts.to_proto()
    assert (msg.wall_ms, msg.logical, msg.replica) == (T0, 7, "eu/agg-1")
    assert HlcTimestamp.from_proto(crdt_pb2.HlcTimestamp.FromString(msg.SerializeToString())) == ts


@pytest.mark.parametrize(
    ("msg", "message"),
    [
        (crdt_pb2.HlcTimestamp(wall_ms=-5, logical=0, replica="r"), "wall_ms"),
        (crdt_pb2.HlcTimestamp(wall_ms=5, logical=0, replica=""), "replica"),
        (crdt_pb2.HlcTimestamp(), "replica"),
    ],
)
def test_from_proto_rejects_invalid_timestamps_with_decode_error(msg: crdt_pb2.HlcTimestamp, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        HlcTimestamp.from_proto(msg)


async def test_now_follows_the_fake_clock_and_counts_events_within_a_millisecond() -> None:
    clock = FakeClock(start_wall_ms=T0)
    hlc = HybridLogicalClock("r1", clock)
    assert hlc.now() == stamp(T0, 0, "r1")
    assert hlc.now() == stamp(T0, 1, "r1")
    await clock.advance(0.002)
    assert hlc.now() == stamp(T0 + 2, 0, "r1")


def test_now_keeps_increasing_when_the_wall_clock_steps_back() -> None:
    clock = SteppedClock()
    hlc = HybridLogicalClock("r1", clock)
    first = hlc.now()
    clock.now_ms -= 1000
    second = hlc.now()
    assert second > first
    assert second == stamp(T0, 1, "r1")


def test_update_orders_the_receive_after_the_send() -> None:
    clock = SteppedClock()
    hlc = HybridLogicalClock("r1", clock)
    ahead = stamp(T0 + 50, 3)
    got = hlc.update(ahead)
    assert got == stamp(T0 + 50, 4, "r1")
    assert hlc.now() == stamp(T0 + 50, 5, "r1")  # the wall clock has not caught up yet
    clock.now_ms = T0 + 60
    assert hlc.now() == stamp(T0 + 60, 0, "r1")


def test_update_with_an_older_stamp_acts_like_a_local_event() -> None:
    clock = SteppedClock()
    hlc = HybridLogicalClock("r1", clock)
    hlc.now()
    assert hlc.update(stamp(T0 - 10, 99)) == stamp(T0, 1, "r1")


def test_update_with_the_same_wall_time_takes_the_larger_logical_part() -> None:
    clock = SteppedClock()
    hlc = HybridLogicalClock("r1", clock)
    hlc.now()
    hlc.now()  # (T0, 1)
    assert hlc.update(stamp(T0, 7)) == stamp(T0, 8, "r1")
    assert hlc.update(stamp(T0, 2)) == stamp(T0, 9, "r1")


def test_update_when_the_wall_clock_is_ahead_of_both_resets_the_logical_part() -> None:
    clock = SteppedClock()
    hlc = HybridLogicalClock("r1", clock)
    hlc.now()
    clock.now_ms += 5
    assert hlc.update(stamp(T0 + 1, 4)) == stamp(T0 + 5, 0, "r1")


def test_a_stamp_too_far_ahead_is_rejected_and_leaves_the_clock_unchanged() -> None:
    clock = SteppedClock()
    hlc = HybridLogicalClock("r1", clock, max_drift_ms=1000)
    hlc.now()
    hlc.update(stamp(T0 + 1000))  # exactly at the bound: accepted
    before = hlc.peek()
    with pytest.raises(ClockDriftError, match="1001 ms ahead") as err:
        hlc.update(stamp(T0 + 1001))
    assert (err.value.received_wall_ms, err.value.local_wall_ms, err.value.max_drift_ms) == (T0 + 1001, T0, 1000)
    assert hlc.peek() == before


def test_logical_overflow_borrows_the_next_millisecond() -> None:
    clock = SteppedClock()
    hlc = HybridLogicalClock("r1", clock)
    got = hlc.update(stamp(T0, MAX_LOGICAL))
    assert got == stamp(T0 + 1, 0, "r1")
    assert got > stamp(T0, MAX_LOGICAL)


def test_a_restarted_clock_resumes_after_its_last_persisted_stamp() -> None:
    clock = SteppedClock(T0 - 5000)  # the wall clock went back across the restart
    last = stamp(T0, 3, "r1")
    hlc = HybridLogicalClock("r1", clock, after=last)
    assert hlc.now() == stamp(T0, 4, "r1")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"replica": ""}, r"hlc\.replica"), ({"replica": "r", "max_drift_ms": -1}, r"hlc\.max_drift_ms")],
)
def test_bad_configuration_is_refused_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        HybridLogicalClock(clock=SteppedClock(), **kwargs)  # type: ignore[arg-type]


events = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.integers(-50, 50)),
        st.tuples(st.just("now"), st.just(0)),
        st.tuples(st.just("recv"), st.integers(-150, 150)),
    ),
    max_size=40,
)


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(events=events, logical=st.integers(0, 5))
def test_stamps_strictly_increase_exceed_what_was_received_and_never_pass_the_time_seen(
    events: list[tuple[str, int]], logical: int
) -> None:
    clock = SteppedClock()
    hlc = HybridLogicalClock("r1", clock, max_drift_ms=100)
    last: HlcTimestamp | None = None
    highest_seen = 0  # greatest physical or accepted remote wall time so far
    for kind, n in events:
        if kind == "tick":
            clock.now_ms = max(0, clock.now_ms + n)
            continue
        highest_seen = max(highest_seen, clock.now_ms)
        if kind == "now":
            got = hlc.now()
        else:
            received = stamp(max(0, clock.now_ms + n), logical)
            if n > 100:
                before = hlc.peek()
                with pytest.raises(ClockDriftError):
                    hlc.update(received)
                assert hlc.peek() == before
                continue
            got = hlc.update(received)
            assert got > received
            highest_seen = max(highest_seen, received.wall_ms)
        assert last is None or got > last
        assert got.wall_ms <= highest_seen
        last = got
