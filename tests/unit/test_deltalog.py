"""DeltaLog: which keys ``since`` names, in what order, and the version ``upto`` they cover — the one
implementation behind every type's ``delta_since``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from reactmesh.merge.deltalog import DeltaLog
from reactmesh.merge.errors import CRDTMisuse
from reactmesh.merge.hlc import HlcTimestamp
from reactmesh.merge.keyed import KeyedGCounter
from reactmesh.merge.lww import LwwMap
from reactmesh.merge.maxmap import MaxMap
from reactmesh.merge.polls import PollSet, PollSpec


def log_of(*keys: str) -> DeltaLog[str]:
    log: DeltaLog[str] = DeltaLog()
    for key in keys:
        log.touch(key)
    return log


def test_touch_stamps_increasing_versions_and_keeps_only_the_latest_per_key() -> None:
    log = log_of("a", "b", "a")
    assert log.version == 3
    assert (log.stamp("a"), log.stamp("b"), log.stamp("c")) == (3, 2, None)
    assert list(log) == ["b", "a"]
    assert len(log) == 2 and "a" in log


def test_since_names_the_keys_changed_after_a_version_oldest_first() -> None:
    log = log_of("a", "b", "c", "a")
    assert log.since(0) == (["b", "c", "a"], 4)
    assert log.since(2) == (["c", "a"], 4)
    assert log.since(4) == ([], 4)


def test_a_cut_covers_up_to_the_last_key_included() -> None:
    log = log_of("a", "b", "c", "d")
    assert log.since(0, limit=2) == (["a", "b"], 2)
    assert log.since(2, limit=2) == (["c", "d"], 4)
    assert log.since(1, limit=10) == (["b", "c", "d"], 4)


def test_limit_zero_names_nothing_and_covers_nothing_new() -> None:
    log = log_of("a", "b")
    assert log.since(0, limit=0) == ([], 0)
    assert log.since(1, limit=0) == ([], 1)


def test_upto_never_goes_below_the_callers_version() -> None:
    log = log_of("a", "b")
    assert log.since(7) == ([], 7)
    assert log.since(7, limit=1) == ([], 7)


def test_a_tick_moves_the_version_without_naming_a_key() -> None:
    log = log_of("a")
    assert log.tick() == 2
    assert log.since(1) == ([], 2)
    log.touch("b")
    assert log.since(0, limit=1) == (["a"], 1)
    assert log.since(1, limit=1) == (["b"], 3)


def test_forget_drops_a_key_and_keeps_the_version() -> None:
    log = log_of("a", "b")
    log.forget("a")
    log.forget("never")
    assert log.version == 2
    assert log.since(0) == (["b"], 2)
    assert len(log) == 1


def test_a_negative_limit_is_misuse() -> None:
    with pytest.raises(CRDTMisuse, match="limit must be >= 0"):
        log_of("a").since(0, limit=-1)


def test_the_log_has_no_per_instance_dict() -> None:
    with pytest.raises(AttributeError):
        DeltaLog().extra = 1  # type: ignore[attr-defined]


T = HlcTimestamp


def keyed() -> KeyedGCounter:
    c = KeyedGCounter()
    c.increment(("a",), "r", 1)
    c.increment(("b",), "r", 1)
    return c


def maxmap() -> MaxMap:
    m = MaxMap()
    m.set("a", 1)
    m.set("b", 2)
    return m


def lww() -> LwwMap:
    m = LwwMap()
    m.set("a", 1, T(1, 0, "x"))
    m.close(T(5, 0, "x"))
    return m


def pollset() -> PollSet:
    s = PollSet()
    s.create("p", PollSpec("s", "Q?", ("a", "b"), T(1, 0, "x")))
    s.vote("p", "v", 0, T(2, 0, "x"))
    return s


EVERY_LOGGED: list[Callable[[], Any]] = [keyed, maxmap, lww, pollset]


@pytest.mark.parametrize("make", EVERY_LOGGED, ids=["keyed_gcounter", "max_map", "lww_map", "poll_set"])
def test_every_type_answers_a_caller_ahead_of_it_with_nothing_and_its_own_version(make: Callable[[], Any]) -> None:
    state = make()
    ahead = state.version + 5
    for limit in (None, 0, 1):
        delta, upto = state.delta_since(ahead, limit)
        assert len(delta) == 0
        assert upto == ahead
