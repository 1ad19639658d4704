"""A node's replicated state: named CRDT collections, read as deltas and merged from peers.

``totals`` (keys (stream, emoji)) and ``windows`` (keys (stream, emoji, window_start_s)) are
KeyedGCounters. The gossip protocol reads ``delta_since(versions)`` for each peer and merges what
peers send with ``merge_part``; listeners hear which keys grew, which is how the broadcaster learns
true deltas. Only committed state may enter a ReplicaState that others read: an aggregator merges
its own increments here after they are durable, never before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from merge.errors import DecodeError
from merge.keyed import Key, KeyedGCounter

TOTALS = "totals"
WINDOWS = "windows"
COLLECTIONS = (TOTALS, WINDOWS)

Listener = Callable[[str, KeyedGCounter, list[Key]], None]
"""Called as listener(collection, merged_state, grown_keys) after every merge that grew keys."""


class ReplicaState:
    """The CRDT collections of one node."""

    def __init__(self) -> None:
        self.collections: dict[str, KeyedGCounter] = {name: KeyedGCounter() for name in COLLECTIONS}
        self._listeners: list[Listener] = []

    @property
    def totals(self) -> KeyedGCounter:
        return self.collections[TOTALS]

    @property
    def windows(self) -> KeyedGCounter:
        return self.collections[WINDOWS]

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def versions(self) -> dict[str, int]:
        return {name: c.version for name, c in self.collections.items()}

    def delta_since(
        self, versions: Mapping[str, int], limit_keys: int | None = None
    ) -> tuple[list[tuple[str, bytes]], dict[str, int]]:
        """Encoded parts holding every change after ``versions``, and the versions they cover.

        ``limit_keys`` bounds the keys per collection, so one round's bandwidth is bounded.
        """
        parts: list[tuple[str, bytes]] = []
        upto: dict[str, int] = {}
        for name, coll in self.collections.items():
            since = versions.get(name, 0)
            if coll.version <= since:
                upto[name] = since
                continue
            delta, upto[name] = coll.delta_since(since, limit_keys)
            if len(delta):
                parts.append((name, delta.encode()))
        return parts, upto

    def merge(self, collection: str, delta: KeyedGCounter) -> list[Key]:
        """Merge a decoded delta or state into ``collection``; return the keys that grew."""
        coll = self.collections.get(collection)
        if coll is None:
            raise DecodeError(f"unknown collection {collection!r} (known: {', '.join(self.collections)})")
        grown = coll.merge(delta)
        if grown:
            for listener in self._listeners:
                listener(collection, coll, grown)
        return grown

    def merge_part(self, collection: str, envelope: bytes) -> list[Key]:
        """Decode and merge one gossip part; DecodeError for garbage or an unknown collection."""
        if collection not in self.collections:
            raise DecodeError(f"unknown collection {collection!r} (known: {', '.join(self.collections)})")
        return self.merge(collection, KeyedGCounter.decode(envelope))
