"""ExpiringMap's own promises beyond the join laws: lifting, bounds, the floor, and its deltas."""

from __future__ import annotations

import pytest

from reactmesh.merge.codec import seal
from reactmesh.merge.errors import CRDTMisuse, DecodeError
from reactmesh.merge.expiring import MAX_DURATION_MS, ExpiringMap
from reactmesh.merge.hlc import HlcTimestamp
from reactmesh.v1 import crdt_pb2

T0 = 1_700_000_000_000


def at(ms: int, replica: str = "a") -> HlcTimestamp:
    return HlcTimestamp(T0 + ms, 0, replica)


def test_a_later_lift_beats_an_earlier_mute_in_either_merge_order() -> None:
    mute, lift = ExpiringMap(), ExpiringMap()
    mute.set("v", T0 + 60_000, at(0, "a"), note="spam", actor="mod-a")
    lift.set("v", 0, at(5, "b"), actor="mod-b")
    for first, second in ((mute, lift), (lift, mute)):
        m = first.copy()
        m.merge(second)
        assert m.in_force("v", T0 + 10) is None
        assert m.get("v") is not None and m.get("v").actor == "mod-b"  # type: ignore[union-attr]


def test_a_record_is_in_force_only_before_its_until() -> None:
    m = ExpiringMap()
    m.set("v", T0 + 100, at(0))
    assert m.in_force("v", T0 + 99) is not None
    assert m.in_force("v", T0 + 100) is None
    assert [k for k, _ in m.items_in_force(T0 + 50)] == ["v"]


def test_records_longer_than_the_bound_are_refused_when_written_and_when_decoded() -> None:
    m = ExpiringMap()
    with pytest.raises(CRDTMisuse, match="until_ms"):
        m.set("v", T0 + MAX_DURATION_MS + 1, at(0))
    with pytest.raises(CRDTMisuse, match="non-empty"):
        m.set("", T0 + 1, at(0))
    body = crdt_pb2.ExpiringMapState()
    body.entries.add(key="v", stamp=at(0).to_proto(), until_ms=T0 + MAX_DURATION_MS + 1)
    with pytest.raises(DecodeError, match="until_ms"):
        ExpiringMap.decode(seal("expiring_map", 1, body))
    with pytest.raises(DecodeError, match="version 2"):
        ExpiringMap.decode(seal("expiring_map", 2, body))


def test_the_floor_drops_older_entries_everywhere_and_they_never_come_back() -> None:
    a, b = ExpiringMap(), ExpiringMap()
    old = a.set("old", T0 + 10, at(0))
    a.set("new", T0 + 500, at(200))
    b.merge(a.expire(T0 + 100))  # b hears of the floor before the entry it drops
    assert list(a) == ["new"] and a.floor_ms == T0 + 100
    b.merge(old)
    assert "old" not in b
    delta, _ = a.delta_since(0)
    assert delta.floor_ms == T0 + 100 and list(delta) == ["new"]


def test_memory_follows_the_keys_written_since_the_floor() -> None:
    m = ExpiringMap()
    for i in range(10_000):
        m.set(f"v{i % 50}", T0 + i + 10, at(i))
        if i % 100 == 0:
            m.expire(T0 + i - 20)
    assert len(m) <= 50
    assert len(m._by_stamp) <= 2 * len(m) + 65
