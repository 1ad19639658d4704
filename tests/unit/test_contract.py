"""Every CRDT in merge/ keeps the contract of ``merge.contract``: the members, their call shapes, and
what they promise on a small sample (bottom, round trip through its tag, join, deltas)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Generic, Protocol

import pytest

from reactmesh.merge import tags
from reactmesh.merge.comments import Comment, CommentSet
from reactmesh.merge.contract import CRDT, Replicated
from reactmesh.merge.errors import DecodeError
from reactmesh.merge.expiring import ExpiringMap
from reactmesh.merge.gcounter import GCounter
from reactmesh.merge.hlc import HlcTimestamp
from reactmesh.merge.keyed import KeyedGCounter
from reactmesh.merge.lww import LwwMap
from reactmesh.merge.maxmap import MaxMap
from reactmesh.merge.polls import PollSet, PollSpec
from reactmesh.v1 import crdt_pb2


def sample_gcounter() -> GCounter:
    c = GCounter()
    c.increment("r1", 3)
    c.increment("r2", 1)
    return c


def sample_keyed() -> KeyedGCounter:
    c = KeyedGCounter()
    c.increment(("a", "b"), "r1", 3)
    c.increment(("a", "b", 60), "r2", 2)
    return c


def sample_maxmap() -> MaxMap:
    m = MaxMap()
    m.set(bytes(16), 42)
    m.set("k", 7)
    return m


def sample_lww() -> LwwMap:
    m = LwwMap()
    m.set("k1", 1, HlcTimestamp(10, 0, "x"))
    m.set("k2", 2, HlcTimestamp(11, 0, "x"))
    m.close(HlcTimestamp(20, 0, "x"))
    return m


def sample_expiring() -> ExpiringMap:
    m = ExpiringMap()
    m.set("v1", 60_000, HlcTimestamp(10, 0, "x"), note="spam", actor="mod")
    m.set("v2", 0, HlcTimestamp(12, 0, "y"))
    m.expire(11)
    return m


def sample_pollset() -> PollSet:
    s = PollSet()
    s.create("p1", PollSpec("s1", "Q?", ("a", "b"), HlcTimestamp(5, 0, "x")))
    s.vote("p1", "v1", 1, HlcTimestamp(6, 0, "x"))
    s.close("p1", HlcTimestamp(9, 0, "x"))
    return s


def sample_comments() -> CommentSet:
    s = CommentSet()
    s.add(Comment("0000000000010.0000000000.x", "s1", "v1", "hello", client_key="k"))
    s.delete("0000000000011.0000000000.y")
    s.set_pin("s1", "0000000000010.0000000000.x", HlcTimestamp(12, 0, "x"))
    return s


REPLICATED: list[tuple[type[Any], Callable[[], Any]]] = [
    (KeyedGCounter, sample_keyed),
    (MaxMap, sample_maxmap),
    (LwwMap, sample_lww),
    (PollSet, sample_pollset),
    (ExpiringMap, sample_expiring),
    (CommentSet, sample_comments),
]
EVERY: list[tuple[type[Any], Callable[[], Any]]] = [(GCounter, sample_gcounter), *REPLICATED]

every_type = pytest.mark.parametrize(("cls", "sample"), EVERY, ids=[c.__name__ for c, _ in EVERY])
replicated_types = pytest.mark.parametrize(("cls", "sample"), REPLICATED, ids=[c.__name__ for c, _ in REPLICATED])


def protocol_members(proto: type) -> list[str]:
    """The members a Protocol declares in its body, its bases' included: annotations, methods, properties."""
    names: set[str] = set()
    for base in proto.__mro__:
        if base in (object, Protocol, Generic):
            continue
        names.update(inspect.get_annotations(base))
        for name, value in base.__dict__.items():
            func = value.__func__ if isinstance(value, classmethod) else value
            if isinstance(func, property) or (
                inspect.isfunction(func) and func.__qualname__ == f"{base.__qualname__}.{name}"
            ):
                names.add(name)
    return sorted(names)


def assert_call_shape_fits(proto: type, cls: type, name: str) -> None:
    """``cls.name`` accepts every call the Protocol's ``name`` allows (same positional and keyword arguments)."""
    declared = inspect.getattr_static(proto, name)
    actual = inspect.getattr_static(cls, name)
    if isinstance(declared, property):
        assert isinstance(actual, property), f"{cls.__name__}.{name} must be a property"
        return
    if isinstance(declared, classmethod):
        assert isinstance(actual, classmethod), f"{cls.__name__}.{name} must be a classmethod"
    want = inspect.signature(getattr(proto, name))
    have = inspect.signature(getattr(cls, name))
    params = [p for p in want.parameters.values() if p.name not in ("self", "cls")]
    required = [object() for p in params if p.default is inspect.Parameter.empty]
    if isinstance(declared, classmethod):
        have.bind(*required)
        have.bind(*[object() for _ in params])
    else:
        have.bind(None, *required)
        have.bind(None, *[object() for _ in params])
        have.bind(None, *required, **{p.name: object() for p in params if p.default is not inspect.Parameter.empty})


def test_the_protocols_declare_the_shared_interface() -> None:
    assert protocol_members(CRDT) == ["TAG", "copy", "decode", "encode", "merge", "new", "value"]
    assert protocol_members(Replicated) == sorted([*protocol_members(CRDT), "__len__", "delta_since", "version"])


@every_type
def test_every_type_satisfies_the_crdt_protocol(cls: type[Any], sample: Callable[[], Any]) -> None:
    assert isinstance(sample(), CRDT)
    for name in protocol_members(CRDT):
        if name != "TAG":
            assert_call_shape_fits(CRDT, cls, name)


@replicated_types
def test_every_logged_type_satisfies_the_replicated_protocol(cls: type[Any], sample: Callable[[], Any]) -> None:
    assert isinstance(sample(), Replicated)
    for name in protocol_members(Replicated):
        if name != "TAG":
            assert_call_shape_fits(Replicated, cls, name)


def test_gcounter_is_a_crdt_but_not_replicated_by_gossip() -> None:
    assert not isinstance(GCounter(), Replicated)


def test_a_type_missing_a_member_fails_the_runtime_check() -> None:
    class NoDeltas:
        TAG = tags.MAX_MAP

        @classmethod
        def new(cls) -> NoDeltas:
            return cls()

        def value(self) -> int:
            return 0

        def merge(self, other: NoDeltas) -> list[str]:
            return []

        def copy(self) -> NoDeltas:
            return NoDeltas()

        def encode(self) -> bytes:
            return b""

        @classmethod
        def decode(cls, data: bytes) -> NoDeltas:
            return cls()

        def __len__(self) -> int:
            return 0

    assert isinstance(NoDeltas(), CRDT)
    assert not isinstance(NoDeltas(), Replicated)


@every_type
def test_new_is_the_bottom_and_merging_it_changes_nothing(cls: type[Any], sample: Callable[[], Any]) -> None:
    bottom = cls.new()
    assert bottom == cls()
    assert bottom.merge(cls.new()) == []
    a = sample()
    assert a.merge(cls.new()) == []
    assert a == sample()
    grown = bottom.merge(sample())
    assert grown and bottom == a


@every_type
def test_merge_returns_what_grew_and_is_idempotent(cls: type[Any], sample: Callable[[], Any]) -> None:
    a = sample()
    assert a.merge(sample()) == []
    assert a.merge(a.copy()) == []
    assert a == sample()


@every_type
def test_copy_is_equal_and_independent(cls: type[Any], sample: Callable[[], Any]) -> None:
    a = sample()
    assert a.copy() == a and a.copy() is not a
    empty = cls.new()
    grown = empty.copy()
    grown.merge(a)
    assert grown == a and empty == cls.new()


@every_type
def test_encode_writes_the_tag_of_the_table_and_decode_reads_it_back(cls: type[Any], sample: Callable[[], Any]) -> None:
    tag = cls.TAG
    assert tags.TAGS[tag.type] is tag
    assert tag.type == cls.TYPE
    env = crdt_pb2.Envelope.FromString(sample().encode())
    assert (env.type, env.version) == (tag.type, tag.writes)
    assert cls.decode(sample().encode()) == sample()


@every_type
def test_decode_rejects_every_version_the_table_does_not_list(cls: type[Any], sample: Callable[[], Any]) -> None:
    env = crdt_pb2.Envelope.FromString(sample().encode())
    for version in (0, max(cls.TAG.reads) + 1, 2**32 - 1):
        env.version = version
        with pytest.raises(DecodeError, match=f"version {version} is not supported"):
            cls.decode(env.SerializeToString())


@replicated_types
def test_delta_since_zero_is_the_whole_state_and_covers_the_version(cls: type[Any], sample: Callable[[], Any]) -> None:
    a = sample()
    delta, upto = a.delta_since(0)
    assert delta == a
    assert upto == a.version > 0
    assert len(a.delta_since(upto)[0]) == 0


def test_the_tag_table_has_one_entry_per_type_and_no_reused_type_string() -> None:
    classes = [cls for cls, _ in EVERY]
    assert sorted(tags.TAGS) == sorted(cls.TAG.type for cls in classes)
    assert len({cls.TAG.type for cls in classes}) == len(classes)


def test_a_tag_must_read_the_version_it_writes() -> None:
    with pytest.raises(ValueError, match="writes version 2 but does not read it"):
        tags.Tag("x", writes=2)
    with pytest.raises(ValueError, match="non-empty"):
        tags.Tag("")
