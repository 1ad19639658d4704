"""MaxMap: watermarks only rise, bytes and str keys, the documented binary body and its rejections."""

from __future__ import annotations

import pytest

from reactmesh.merge.errors import CRDTMisuse, DecodeError
from reactmesh.merge.maxmap import MAX_KEY_BYTES, MAX_VALUE, MaxMap
from reactmesh.v1 import crdt_pb2

SESSION = bytes(range(16))


def max_map_envelope(body: bytes) -> bytes:
    return crdt_pb2.Envelope(type="max_map", version=1, body=body).SerializeToString()


def test_set_only_raises_a_key_and_returns_what_changed() -> None:
    m = MaxMap()
    assert m.set(SESSION, 5) == MaxMap.decode(m.encode())
    assert len(m.set(SESSION, 3)) == 0  # lower: no change, nothing to send
    assert m.get(SESSION) == 5
    delta = m.set(SESSION, 9)
    assert delta.value() == {SESSION: 9}
    assert m.get(b"unknown") == 0 and m.get(b"unknown", -1) == -1


def test_zero_is_the_bottom_and_is_never_stored() -> None:
    m = MaxMap()
    assert len(m.set("k", 0)) == 0
    assert len(m) == 0 and "k" not in m and m == MaxMap()


def test_bytes_and_str_keys_are_different_keys() -> None:
    m = MaxMap()
    m.set(b"a", 1)
    m.set("a", 2)
    assert m.value() == {b"a": 1, "a": 2}
    assert MaxMap.decode(m.encode()).value() == {b"a": 1, "a": 2}


def test_merge_takes_the_maximum_and_reports_the_keys_that_grew() -> None:
    a = MaxMap()
    a.set(b"s1", 10)
    a.set(b"s2", 1)
    b = MaxMap()
    b.set(b"s1", 4)
    b.set(b"s2", 7)
    b.set(b"s3", 2)
    assert a.merge(b) == [b"s2", b"s3"]
    assert a.merge(b) == []
    assert a.value() == {b"s1": 10, b"s2": 7, b"s3": 2}
    assert sorted(a) == [b"s1", b"s2", b"s3"]


def test_delta_since_and_its_limit() -> None:
    m = MaxMap()
    m.set(b"s1", 1)
    acked = m.version
    m.set(b"s2", 1)
    m.set(b"s3", 1)
    m.set(b"s2", 2)
    delta, upto = m.delta_since(acked)
    assert delta.value() == {b"s3": 1, b"s2": 2} and upto == m.version
    first, upto = m.delta_since(acked, limit=1)
    assert first.value() == {b"s3": 1}
    rest, upto = m.delta_since(upto, limit=1)
    assert rest.value() == {b"s2": 2} and upto == m.version
    assert m.delta_since(acked, limit=0) == (MaxMap(), acked)
    with pytest.raises(CRDTMisuse, match="limit"):
        m.delta_since(0, limit=-1)


def test_prune_forgets_keys_locally() -> None:
    m = MaxMap()
    m.set(b"old", 3)
    m.set(b"new", 4)
    assert m.prune(lambda key: key == b"old") == 1
    assert m.value() == {b"new": 4}
    assert m.delta_since(0)[0].value() == {b"new": 4}


def test_copy_is_independent() -> None:
    m = MaxMap()
    m.set("a", 1)
    c = m.copy()
    c.set("a", 2)
    assert m.get("a") == 1 and c.get("a") == 2


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (b"k", -1, r"\[0, 2\*\*63\)"),
        (b"k", MAX_VALUE + 1, r"\[0, 2\*\*63\)"),
        (7, 1, "bytes or str"),
        (b"x" * (MAX_KEY_BYTES + 1), 1, "1025 bytes"),
        ("é" * (MAX_KEY_BYTES // 2 + 1), 1, "1026 bytes"),
        ("\ud800", 1, "UTF-8"),
    ],
)
def test_misuse_is_refused(key: object, value: int, message: str) -> None:
    with pytest.raises(CRDTMisuse, match=message):
        MaxMap().set(key, value)  # type: ignore[arg-type]


def test_the_body_is_the_documented_binary_form() -> None:
    m = MaxMap()
    m.set(b"\x01\x02", 300, stamp=5)
    m.set("é", 1)
    env = crdt_pb2.Envelope.FromString(m.encode())
    assert (env.type, env.version) == ("max_map", 2)
    assert env.body == bytes([0, 2, 0, 2, 1, 2, 0xAC, 0x02, 5, 1, 2, 0xC3, 0xA9, 1, 0])
    assert MaxMap.decode(MaxMap().encode()) == MaxMap()
    assert crdt_pb2.Envelope.FromString(MaxMap().encode()).body == b"\x00\x00"


def test_version_1_bodies_are_still_read_as_unstamped_entries() -> None:
    env = crdt_pb2.Envelope(type="max_map", version=1, body=bytes([2, 0, 2, 1, 2, 0xAC, 0x02, 1, 2, 0xC3, 0xA9, 1]))
    m = MaxMap.decode(env.SerializeToString())
    assert m.value() == {b"\x01\x02": 300, "é": 1} and m.stamp(b"\x01\x02") == 0 and m.floor == 0


def test_round_trip_of_extreme_values_and_keys() -> None:
    m = MaxMap()
    m.set(b"", MAX_VALUE)
    m.set(b"\xff" * MAX_KEY_BYTES, 1)
    m.set("👍", 2**35)
    assert MaxMap.decode(m.encode()) == m


def test_a_key_repeated_in_one_body_keeps_its_maximum() -> None:
    body = bytes([2, 0, 1, 0x61, 5, 0, 1, 0x61, 3])
    assert MaxMap.decode(max_map_envelope(body)).value() == {b"a": 5}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"\x80", "truncated inside a varint"),
        (bytes([2, 0, 1, 0x61, 5]), "2 records announced, 1 found"),
        (bytes([1, 0, 3, 0x61]), "truncated inside the key"),
        (bytes([1, 0, 1, 0x61]), "truncated inside a varint"),
        (bytes([1, 7, 1, 0x61, 1]), "unknown key kind 7"),
        (bytes([1, 1, 1, 0xFF, 1]), "not UTF-8"),
        (bytes([1, 0, 0x81, 0x08]), "1025-byte key"),
        (bytes([1, 0, 0]) + b"\xff" * 9 + b"\x01", "exceeds 2\\*\\*63 - 1"),
        (bytes([1, 0, 0]) + b"\xff" * 10 + b"\x01", "longer than 10 bytes"),
        (bytes([1, 0, 1, 0x61, 5, 0]), "1 trailing bytes"),
        (bytes([0xFF] * 9 + [0x7F]), "records announced"),
    ],
)
def test_decode_rejects_malformed_bodies_naming_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        MaxMap.decode(max_map_envelope(body))
