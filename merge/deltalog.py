"""The per-key version log behind every ``delta_since`` in merge/.

A replica stamps each change with a local version, 1, 2, 3, ... (``touch`` for a change to a key,
``tick`` for one the type tracks apart from its keys, such as LwwMap's close marker). The log keeps,
for every key, only the version of its latest change, ordered by that version, so a key costs one
dict entry however often it changes. ``since(v, limit)`` names the keys changed after v, oldest
change first, and the version ``upto`` that those keys cover. A delta-state replica (Almeida,
Shoker and Baquero, "Delta State Replicated Data Types", 2018) sends a peer the sub-state of those
keys — the join of every delta after v — and records ``upto`` once the peer acknowledges it.

What ``upto`` guarantees, for a log at version V asked ``since(v, limit)``:

- every change stamped in (v, upto] is in the current state of a named key, or of a key changed
  again after ``upto`` (which a later ``since(upto)`` names), or of a key since ``forget``-ten, or
  was a ``tick`` (which the type itself ships when its version falls in (v, upto]);
- when nothing is cut, ``upto = max(V, v)``: a caller ahead of this log (a peer that acknowledged
  a version of a collection since replaced) is never sent back below what it acknowledged;
- when ``limit`` cuts the changed keys, ``upto`` is the version of the last key included, which is
  > v unless ``limit`` is 0 (then nothing is included and ``upto = v``).

So ``upto >= v`` always, a caller that feeds each ``upto`` back in sees it rise monotonically, and
with ``limit >= 1`` each call that finds a change moves strictly forward.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

from reactmesh.merge.errors import CRDTMisuse

K = TypeVar("K", bound=Hashable)


class DeltaLog(Generic[K]):
    """Key -> version of its latest change, oldest first, and the replica's version counter."""

    __slots__ = ("_stamps", "_version")

    def __init__(self) -> None:
        # A plain dict, re-inserted on every touch, stays ordered by version and costs less per key
        # than an OrderedDict.
        self._stamps: dict[K, int] = {}
        self._version = 0

    @property
    def version(self) -> int:
        """The version of the latest change; 0 for a log that saw none."""
        return self._version

    def touch(self, key: K) -> int:
        """Stamp a change to ``key`` with the next version; return that version."""
        self._version += 1
        stamps = self._stamps
        stamps.pop(key, None)
        stamps[key] = self._version
        return self._version

    def tick(self) -> int:
        """Take the next version for a change that belongs to no key; return it."""
        self._version += 1
        return self._version

    def forget(self, key: K) -> None:
        """Drop ``key`` (its state was removed locally); the version does not move."""
        self._stamps.pop(key, None)

    def stamp(self, key: K) -> int | None:
        """The version of ``key``'s latest change, None if the log does not hold it."""
        return self._stamps.get(key)

    def since(self, version: int, limit: int | None = None) -> tuple[list[K], int]:
        """The keys changed after ``version`` (oldest change first, at most ``limit``) and the version they cover.

        See the module docstring for what the returned version guarantees. CRDTMisuse for a negative limit.
        """
        if limit is not None and limit < 0:
            raise CRDTMisuse(f"delta_since limit must be >= 0, got {limit}")
        changed: list[tuple[K, int]] = []
        for key, v in reversed(self._stamps.items()):
            if v <= version:
                break
            changed.append((key, v))
        changed.reverse()
        if limit is not None and len(changed) > limit:
            del changed[limit:]
            upto = changed[-1][1] if changed else version
        else:
            upto = max(self._version, version)
        return [key for key, _ in changed], upto

    def __len__(self) -> int:
        return len(self._stamps)

    def __contains__(self, key: object) -> bool:
        return key in self._stamps

    def __iter__(self) -> Iterator[K]:
        """Every key held, oldest change first."""
        return iter(self._stamps)
