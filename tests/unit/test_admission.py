"""The edge's admission controller (edge.admission) on a FakeClock: the in-flight limit follows the commit lag,
grows only while binding, reacts to a stalled aggregator before any ack, and its retry hint scales with the
overload; the config names its fields."""

from __future__ import annotations

import asyncio
import time

import pytest

from reactmesh.edge.admission import BASE_INTERVALS, Admission, ShedConfig
from reactmesh.edge.config import EdgeConfig
from reactmesh.merge.clock import FakeClock
from reactmesh.merge.errors import ConfigError
from reactmesh.region_node import config as node_config
from tests.support.polling import eventually

CONFIG = ShedConfig(target_ms=100, interval_ms=100, initial_limit=100, min_limit=10, retry_after_max_ms=4_000)


class Oldest:
    def __init__(self) -> None:
        self.since: float | None = None

    def __call__(self, now: float) -> float:
        return 0.0 if self.since is None else now - self.since


def admission(config: ShedConfig = CONFIG, *, cap: int = 1_000) -> tuple[Admission, FakeClock, Oldest]:
    clock = FakeClock()
    oldest = Oldest()
    return Admission(config, clock, max_inflight=cap, retry_floor_ms=200, oldest_age=oldest), clock, oldest


async def quiet(a: Admission, clock: FakeClock, lag_s: float, intervals: int) -> None:
    """``intervals`` intervals of light load whose acks took ``lag_s``."""
    for _ in range(intervals):
        a.admit(0)
        a.completed(lag_s)
        await clock.advance(0.1)
    a.admit(0)


async def test_lag_above_target_cuts_the_limit_by_the_gradient_and_never_below_min() -> None:
    a, clock, _ = admission()
    await quiet(a, clock, 0.04, 5)  # base lag 40 ms: the allowed lag is the target, 100 ms
    assert a.limit == 100
    for _ in range(50):
        assert a.admit(10) is None
        a.completed(0.4)  # four times the target
    await clock.advance(0.1)
    a.admit(10)
    assert a.limit == pytest.approx(50)  # the cut is at most half per interval
    a.completed(0.125)
    await clock.advance(0.1)
    a.admit(10)
    assert a.limit == pytest.approx(40)  # 50 * 100/125
    for _ in range(10):
        a.completed(1.0)
        await clock.advance(0.1)
        a.admit(0)
    assert a.limit == 10


async def test_slow_service_raises_the_base_lag_and_stops_the_cuts() -> None:
    a, clock, _ = admission()
    await quiet(a, clock, 0.3, BASE_INTERVALS + 1)  # every commit takes 300 ms, queue or not
    assert a.base_s == pytest.approx(0.3)
    cut_to = a.limit
    await quiet(a, clock, 0.5, 3)  # under twice the base: not the queue's doing
    assert a.limit == cut_to
    await quiet(a, clock, 1.2, 1)  # twice the base exceeded: the queue grew
    assert a.limit == pytest.approx(cut_to * 0.6 / 1.2)


async def test_the_limit_grows_only_while_it_binds() -> None:
    a, clock, _ = admission()
    for _ in range(20):  # light load: 10 in flight of a limit of 100
        a.admit(10)
        a.completed(0.05)
        await clock.advance(0.1)
    assert a.limit == 100
    a.admit(60)  # half the limit reached in this interval
    a.completed(0.05)
    await clock.advance(0.1)
    a.admit(0)
    assert a.limit == pytest.approx(110)  # + sqrt(100)


async def test_growth_stops_at_the_hard_cap() -> None:
    a, clock, _ = admission(ShedConfig(initial_limit=100, min_limit=10), cap=105)
    a.admit(99)
    await clock.advance(0.2)
    a.admit(0)
    assert a.limit == 105


async def test_a_stalled_aggregator_cuts_the_limit_before_any_ack_arrives() -> None:
    a, clock, oldest = admission()
    oldest.since = clock.monotonic()
    for _ in range(100):
        assert a.admit(0) is None
    await clock.advance(0.5)  # no ack for half a second
    assert a.admit(100) is not None
    assert a.limit == 50
    assert a.lag_s == pytest.approx(0.5)
    assert a.retry_after_ms() == 500  # at least the lag


async def test_shed_batches_get_a_hint_scaled_by_the_overload_within_floor_and_cap() -> None:
    a, clock, _ = admission()
    assert a.retry_after_ms() == 200  # the floor
    for _ in range(100):
        a.admit(0)
    for _ in range(900):
        assert a.admit(100) is not None  # ten offered per admitted
    await clock.advance(0.1)
    hint = a.admit(1_000)  # (the limit grew: it was binding with no lag)
    assert hint == 2_000  # floor * 10
    assert a.statistics()["batches_shed"] == 901
    for _ in range(3000):
        a.admit(1_000)
    await clock.advance(0.1)
    assert a.admit(1_000) == 4_000  # capped


async def test_disabled_shedding_admits_everything_below_the_hard_cap() -> None:
    a, clock, _ = admission(ShedConfig(enabled=False), cap=50)
    a.completed(10.0)
    await clock.advance(1.0)
    assert a.admit(49) is None
    assert a.admit(50) == 200
    assert a.limit == 50


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="initial_limit"):
        ShedConfig(min_limit=100, initial_limit=10)
    with pytest.raises(ConfigError, match="target_ms"):
        ShedConfig(target_ms=0)
    with pytest.raises(ConfigError, match=r"shedding\.target"):
        EdgeConfig.from_mapping({"region": "a", "aggregators": ["127.0.0.1:1"], "shedding": {"target": 5}})
    config = EdgeConfig.from_mapping(
        {"region": "a", "aggregators": ["127.0.0.1:1"], "shedding": {"target_ms": 250, "enabled": False}}
    )
    assert config.shedding == ShedConfig(target_ms=250, enabled=False)


def test_the_edge_shedding_table_of_a_node_file_becomes_the_edge_configs_shedding() -> None:
    edge = {"listen": "127.0.0.1:1", "aggregators": ["127.0.0.1:2"], "shedding": {"target_ms": 80, "min_limit": 8}}
    parsed = node_config.from_mapping({"region": "a", "edge": edge}, env={})
    assert parsed.edge is not None
    assert parsed.edge.config.shedding == ShedConfig(target_ms=80, min_limit=8)
    for bad, field_name in (
        ({"bogus": 1}, "edge.shedding.bogus"),
        ({"target_ms": -1}, "edge.shedding.target_ms"),
        (3, "edge.shedding"),
    ):
        with pytest.raises(ConfigError) as info:
            node_config.from_mapping({"region": "a", "edge": {**edge, "shedding": bad}}, env={})
        assert info.value.field == field_name


async def test_the_edges_own_loop_lag_cuts_the_limit_with_no_commit_lag() -> None:
    a, clock, _ = admission(ShedConfig(target_ms=100, queue_target_ms=20, initial_limit=100, min_limit=10))
    a.admit(0)
    a.completed(0.01)  # commits are quick...
    for _ in range(4):
        a.observe_loop_lag(0.08)  # ...but batches wait 80 ms for the edge's CPU
    await clock.advance(0.1)
    a.admit(0)
    assert a.loop_lag_s == pytest.approx(0.08)
    assert a.limit == 50  # pressure 4: the cut is at most half


async def test_the_loop_lag_probe_measures_a_blocked_loop_and_stops_when_batches_stop() -> None:
    a, _, _ = admission()
    a.start_probe(period_s=0.01, idle_s=0.05)
    try:
        a.admit(0)  # a batch wakes the probe
        await asyncio.sleep(0.015)
        time.sleep(0.1)  # noqa: ASYNC251 (the loop is blocked on purpose: the next timer runs ~0.1 s late)
        await asyncio.sleep(0.02)
        assert a._loop_n >= 1 and a._loop_sum >= 0.08
        probe = a._probe
        assert probe is not None
        await eventually(lambda: probe.idle)  # no batch for idle_s: no timer left
        assert probe._handle is None
    finally:
        a.stop_probe()
