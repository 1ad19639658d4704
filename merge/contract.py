"""The contract every CRDT in merge/ keeps, written as Protocols (riak_dt's ``riak_dt.erl`` behaviour).

``CRDT`` is a state-based convergent replicated data type (Shapiro, Preguiça, Baquero and Zawirski,
"A comprehensive study of Convergent and Commutative Replicated Data Types", INRIA RR-7506, 2011):

- ``new()`` is the bottom state; ``value()`` what readers see of the whole state;
- ``merge(other)`` joins a state or a delta into this one, in place — commutative, associative and
  idempotent — and returns what grew (keys for maps, replica ids for a G-counter);
- each type's mutators (``increment``, ``set``, ``close``, ``vote``, ...) return the delta-state they
  applied (Almeida, Shoker and Baquero, "Delta State Replicated Data Types", 2018), so merging that
  delta anywhere equals merging the full state;
- ``encode()`` writes an envelope tagged ``TAG`` (``merge.tags``), ``decode()`` reads one back and
  raises DecodeError for anything else, an unknown version included;
- ``==`` is equality of state, ``copy()`` an independent replica with the same state.

``Replicated`` adds what gossip needs to ship a CRDT incrementally: ``version`` (a local change counter),
``delta_since(version, limit)`` (the join of every change after ``version``, at most ``limit`` keys, and
the version it covers; see ``merge.deltalog``) and ``len()`` (the keys ``limit`` counts).

Each type module states its conformance with a module-level assignment (``_: type[Replicated] =
KeyedGCounter``) that mypy checks; tests/unit/test_contract.py checks the same at runtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Protocol, Self, runtime_checkable

from reactmesh.merge.tags import Tag


@runtime_checkable
class CRDT(Protocol):
    """new / value / merge / copy / encode / decode; mutators are per type and return deltas."""

    TAG: ClassVar[Tag]

    @classmethod
    def new(cls) -> Self: ...

    def value(self) -> object: ...

    def merge(self, other: Self) -> Sequence[object]: ...

    def copy(self) -> Self: ...

    def encode(self) -> bytes: ...

    @classmethod
    def decode(cls, data: bytes) -> Self: ...


@runtime_checkable
class Replicated(CRDT, Protocol):
    """A CRDT with a version log: what ``ReplicaState`` holds and gossip sends as bounded deltas."""

    @property
    def version(self) -> int: ...

    def delta_since(self, version: int, limit: int | None = None) -> tuple[Self, int]: ...

    def __len__(self) -> int: ...
