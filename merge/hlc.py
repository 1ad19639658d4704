"""Hybrid logical clock (HLC) and its timestamps.

Kulkarni, Demirbas, Madappa, Avva and Leone, "Logical Physical Clocks and Consistent Snapshots in
Globally Distributed Databases" (OPODIS 2014). A timestamp is (wall_ms, logical, replica):
``wall_ms`` is the largest physical time the clock has heard of, ``logical`` counts events inside
that millisecond, and ``replica`` breaks ties, so timestamps are totally ordered by that tuple and
two clocks with distinct replica ids never issue equal timestamps.

Guarantees of one HybridLogicalClock:

- ``now()`` and ``update()`` return strictly increasing timestamps, even when the wall clock steps
  backwards.
- ``update(m)`` returns a timestamp greater than ``m``: a receive is ordered after its send, so
  e -> f (happened-before) implies stamp(e) < stamp(f).
- ``wall_ms`` never exceeds the greatest physical time this clock has read plus ``max_drift_ms``:
  ``update`` rejects a received timestamp further ahead of the local wall clock than that with
  ClockDriftError and leaves the clock unchanged.
- ``logical`` fits the wire's uint32. A clock that would issue more than 2**32 timestamps inside
  one millisecond borrows the next millisecond instead (order is kept; it never happens in practice).

Equality: field-wise.
"""

from __future__ import annotations

from dataclasses import dataclass

from reactmesh.merge.clock import Clock
from reactmesh.merge.errors import ClockDriftError, ConfigError, CRDTMisuse, DecodeError
from reactmesh.v1 import crdt_pb2

MAX_LOGICAL = 2**32 - 1
MAX_WALL_MS = 2**63 - 1


@dataclass(frozen=True, order=True, slots=True)
class HlcTimestamp:
    """A hybrid logical timestamp; ordered by (wall_ms, logical, replica)."""

    wall_ms: int
    logical: int
    replica: str

    def __post_init__(self) -> None:
        if not 0 <= self.wall_ms <= MAX_WALL_MS:
            raise CRDTMisuse(f"HLC wall_ms must be in [0, 2**63), got {self.wall_ms}")
        if not 0 <= self.logical <= MAX_LOGICAL:
            raise CRDTMisuse(f"HLC logical must be in [0, 2**32), got {self.logical}")
        if not self.replica:
            raise CRDTMisuse("HLC replica id must be a non-empty string")

    def to_proto(self) -> crdt_pb2.HlcTimestamp:
        return crdt_pb2.HlcTimestamp(wall_ms=self.wall_ms, logical=self.logical, replica=self.replica)

    @classmethod
    def from_proto(cls, msg: crdt_pb2.HlcTimestamp) -> HlcTimestamp:
        """The timestamp ``msg`` carries; DecodeError when it is out of range or has no replica."""
        try:
            return cls(msg.wall_ms, msg.logical, msg.replica)
        except CRDTMisuse as exc:
            raise DecodeError(f"bad HLC timestamp: {exc}") from exc

    def __str__(self) -> str:
        return f"{self.wall_ms}.{self.logical}@{self.replica}"


class HybridLogicalClock:
    """Issues HlcTimestamps for one replica from a wall clock (``merge.clock.Clock``)."""

    DEFAULT_MAX_DRIFT_MS = 60_000

    __slots__ = ("_clock", "_logical", "_max_drift_ms", "_replica", "_wall")

    def __init__(
        self,
        replica: str,
        clock: Clock,
        max_drift_ms: int = DEFAULT_MAX_DRIFT_MS,
        after: HlcTimestamp | None = None,
    ) -> None:
        """``after``: a timestamp this replica issued before a restart; every new one is greater."""
        if not replica:
            raise ConfigError("hlc.replica", "a non-empty replica id", replica)
        if max_drift_ms < 0:
            raise ConfigError("hlc.max_drift_ms", "an integer >= 0", max_drift_ms)
        self._replica = replica
        self._clock = clock
        self._max_drift_ms = max_drift_ms
        self._wall = after.wall_ms if after is not None else 0
        self._logical = after.logical if after is not None else 0

    @property
    def replica(self) -> str:
        return self._replica

    @property
    def max_drift_ms(self) -> int:
        return self._max_drift_ms

    def peek(self) -> tuple[int, int]:
        """(wall_ms, logical) of the last timestamp issued; (0, 0) before the first."""
        return self._wall, self._logical

    def now(self) -> HlcTimestamp:
        """A timestamp for a local or send event."""
        pt = self._clock.wall_ms()
        if pt > self._wall:
            return self._issue(pt, 0)
        return self._issue(self._wall, self._logical + 1)

    def update(self, received: HlcTimestamp) -> HlcTimestamp:
        """A timestamp for receiving ``received``: greater than it and than every earlier one.

        Raises ClockDriftError (clock unchanged) when ``received`` is more than ``max_drift_ms``
        ahead of the local wall clock.
        """
        pt = self._clock.wall_ms()
        rw = received.wall_ms
        if rw - pt > self._max_drift_ms:
            raise ClockDriftError(rw, pt, self._max_drift_ms)
        lw = self._wall
        wall = max(lw, rw, pt)
        if wall == lw and wall == rw:
            logical = max(self._logical, received.logical) + 1
        elif wall == lw:
            logical = self._logical + 1
        elif wall == rw:
            logical = received.logical + 1
        else:
            logical = 0
        return self._issue(wall, logical)

    def _issue(self, wall: int, logical: int) -> HlcTimestamp:
        if logical > MAX_LOGICAL:
            wall, logical = wall + 1, 0
        self._wall, self._logical = wall, logical
        return HlcTimestamp(wall, logical, self._replica)

    def __repr__(self) -> str:
        return f"HybridLogicalClock({self._replica!r}, last={self._wall}.{self._logical})"
