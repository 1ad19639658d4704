"""A node's replicated state: named CRDT collections, read as deltas and merged from peers.

The caller names the collections and supplies each one (any ``merge.contract.Replicated``), e.g.
``ReplicaState({"counts": KeyedGCounter(), "seen": MaxMap()})``; merge/ knows no application's names.
The gossip protocol reads ``delta_since(versions)`` for each peer and merges what peers send with
``merge_part``; listeners hear which keys grew, which is how a consumer learns true deltas.

Only committed state may enter a ReplicaState that others read: a node merges its own changes here
after they are durable, never before (a G-counter slot must never go back).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

from reactmesh.merge.contract import Replicated
from reactmesh.merge.errors import DecodeError

__all__ = ["Listener", "ReplicaState", "Replicated"]

R = TypeVar("R", bound=Replicated)

Listener = Callable[[str, Any, Any], None]
"""Called as listener(collection, merged_state, grown_keys) after every merge that grew keys."""


class ReplicaState:
    """The CRDT collections of one node, by name."""

    def __init__(self, collections: Mapping[str, Replicated]) -> None:
        for name in collections:
            if not name:
                raise ValueError("a collection needs a non-empty name")
        self.collections: dict[str, Replicated] = dict(collections)
        self._listeners: list[Listener] = []

    def collection(self, name: str, kind: type[R]) -> R:
        """The collection ``name``, which must be a ``kind``; KeyError if absent, TypeError if another type."""
        coll = self.collections[name]
        if not isinstance(coll, kind):
            raise TypeError(f"collection {name!r} holds {type(coll).__name__}, not {kind.__name__}")
        return coll

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def versions(self) -> dict[str, int]:
        return {name: c.version for name, c in self.collections.items()}

    def delta_since(
        self,
        versions: Mapping[str, int],
        limit_keys: int | None = None,
        only: Collection[str] | None = None,
    ) -> tuple[list[tuple[str, bytes]], dict[str, int]]:
        """Encoded parts holding every change after ``versions``, and the versions they cover.

        ``limit_keys`` bounds the keys per collection, so one message's size is bounded;
        ``only`` restricts the collections considered.
        """
        parts: list[tuple[str, bytes]] = []
        upto: dict[str, int] = dict(versions)
        for name, coll in self.collections.items():
            if only is not None and name not in only:
                continue
            since = versions.get(name, 0)
            if coll.version <= since:
                continue
            delta, upto[name] = coll.delta_since(since, limit_keys)
            if len(delta):
                parts.append((name, delta.encode()))
        return parts, upto

    def decode_part(self, collection: str, envelope: bytes) -> Replicated:
        """Decode one gossip part for ``collection``; DecodeError for garbage or an unknown collection."""
        coll = self.collections.get(collection)
        if coll is None:
            raise DecodeError(f"unknown collection {collection!r} (known: {', '.join(self.collections)})")
        return type(coll).decode(envelope)

    def merge(self, collection: str, delta: Any) -> Sequence[Any]:
        """Merge a decoded delta or state into ``collection``; return the keys that grew."""
        coll = self.collections.get(collection)
        if coll is None:
            raise DecodeError(f"unknown collection {collection!r} (known: {', '.join(self.collections)})")
        if type(delta) is not type(coll):
            raise TypeError(f"collection {collection!r} holds {type(coll).__name__}, not {type(delta).__name__}")
        grown = coll.merge(delta)
        if grown:
            for listener in self._listeners:
                listener(collection, coll, grown)
        return grown

    def merge_part(self, collection: str, envelope: bytes) -> Sequence[Any]:
        """Decode and merge one gossip part; DecodeError for garbage or an unknown collection."""
        return self.merge(collection, self.decode_part(collection, envelope))
