"""The envelope: every CRDT type rejects garbage, truncation, another type's bytes and unknown versions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from reactmesh.merge.codec import envelope_type, open_envelope, parse_body, seal
from reactmesh.merge.errors import DecodeError
from reactmesh.merge.gcounter import GCounter
from reactmesh.merge.hlc import HlcTimestamp
from reactmesh.merge.keyed import KeyedGCounter
from reactmesh.merge.lww import LwwMap
from reactmesh.merge.maxmap import MaxMap
from reactmesh.merge.tags import TAGS
from reactmesh.v1 import crdt_pb2


def sample_gcounter() -> GCounter:
    return GCounter({"eu/1": 3, "us/2": 1})


def sample_keyed() -> KeyedGCounter:
    c = KeyedGCounter()
    c.increment(("s1", "like"), "eu/1", 3)
    c.increment(("s1", "like", 1_700_000_000), "eu/1", 3)
    return c


def sample_lww() -> LwwMap:
    m = LwwMap()
    m.set("alice", 1, HlcTimestamp(10, 0, "eu"))
    m.close(HlcTimestamp(20, 0, "eu"))
    return m


def sample_maxmap() -> MaxMap:
    m = MaxMap()
    m.set(bytes(16), 42)
    return m


TYPES: list[tuple[str, Callable[[], Any], Callable[[bytes], Any]]] = [
    ("gcounter", sample_gcounter, GCounter.decode),
    ("keyed_gcounter", sample_keyed, KeyedGCounter.decode),
    ("lww_map", sample_lww, LwwMap.decode),
    ("max_map", sample_maxmap, MaxMap.decode),
]
every_type = pytest.mark.parametrize(("tag", "sample", "decode"), TYPES, ids=[t[0] for t in TYPES])

GARBAGE = [b"\xff", b"\xff\xff\xff\xff", b"\x0a\x05ab", b"\x0a\x02\xc3\x28", b"\x1a\x7fshort"]


def reseal(data: bytes, *, type_tag: str | None = None, version: int | None = None, body: bytes | None = None) -> bytes:
    env = crdt_pb2.Envelope.FromString(data)
    if type_tag is not None:
        env.type = type_tag
    if version is not None:
        env.version = version
    if body is not None:
        env.body = body
    return env.SerializeToString()


@every_type
def test_each_type_carries_its_tag_and_the_version_it_writes(tag: str, sample: Callable[[], Any], decode: Any) -> None:
    data = sample().encode()
    assert envelope_type(data) == tag
    assert crdt_pb2.Envelope.FromString(data).version == TAGS[tag].writes
    assert decode(data) == sample()


@every_type
@pytest.mark.parametrize("garbage", GARBAGE)
def test_garbage_is_rejected(tag: str, sample: Any, decode: Callable[[bytes], Any], garbage: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(garbage)


@every_type
def test_another_types_envelope_is_rejected_naming_both(tag: str, sample: Any, decode: Callable[[bytes], Any]) -> None:
    for other_tag, other_sample, _ in TYPES:
        if other_tag != tag:
            with pytest.raises(DecodeError, match=f"expected a '{tag}' envelope, got type '{other_tag}'"):
                decode(other_sample().encode())


@every_type
def test_an_unknown_version_is_rejected_naming_it(
    tag: str, sample: Callable[[], Any], decode: Callable[[bytes], Any]
) -> None:
    known = ", ".join(str(v) for v in sorted(TAGS[tag].reads))
    for version in sorted({0, 2, 3, 99} - TAGS[tag].reads):
        with pytest.raises(
            DecodeError, match=rf"'{tag}' encoding version {version} is not supported \(known: {known}\)"
        ):
            decode(reseal(sample().encode(), version=version))


@every_type
def test_a_corrupt_body_is_rejected(tag: str, sample: Callable[[], Any], decode: Callable[[bytes], Any]) -> None:
    with pytest.raises(DecodeError, match=tag):
        decode(reseal(sample().encode(), body=b"\x0a\xff\xff"))


@every_type
def test_every_truncation_inside_the_body_is_rejected(
    tag: str, sample: Callable[[], Any], decode: Callable[[bytes], Any]
) -> None:
    data = sample().encode()
    body_len = len(crdt_pb2.Envelope.FromString(data).body)
    assert body_len < 128  # so the body field's header is two bytes: tag and length
    for cut in range(len(data)):
        if cut == len(data) - body_len - 2:
            continue  # exactly before the body field: see the next test
        with pytest.raises(DecodeError):
            decode(data[:cut])


def test_an_envelope_cut_before_its_body_field_is_rejected_only_by_max_map() -> None:
    """A proto3 envelope cannot tell an absent body from an empty one, so for the protobuf-bodied
    types the cut is indistinguishable from the empty state; MaxMap's body is never empty."""
    for tag, sample, decode in TYPES:
        data = sample().encode()
        body_len = len(crdt_pb2.Envelope.FromString(data).body)
        assert body_len < 128  # so the body field's header is two bytes: tag and length
        cut = data[: len(data) - body_len - 2]
        if tag == "max_map":
            with pytest.raises(DecodeError, match="empty"):
                decode(cut)
        else:
            assert decode(cut) == type(sample())()


def test_open_envelope_returns_version_and_body() -> None:
    data = seal("gcounter", 1, crdt_pb2.GCounterState(replicas=["a"], counts=[1]))
    version, body = open_envelope(data, "gcounter", frozenset({1}))
    assert version == 1
    assert crdt_pb2.GCounterState.FromString(body).counts == [1]


def test_envelope_type_rejects_garbage_and_untagged_envelopes() -> None:
    with pytest.raises(DecodeError, match="not a reactmesh CRDT envelope"):
        envelope_type(b"\xff")
    with pytest.raises(DecodeError, match="no type tag"):
        envelope_type(crdt_pb2.Envelope(version=1).SerializeToString())


def test_parse_body_names_the_type_of_a_corrupt_body() -> None:
    with pytest.raises(DecodeError, match="corrupt 'lww_map' body"):
        parse_body(b"\x0a\xff", crdt_pb2.LwwMapState(), "lww_map")
