"""Sealing: the in-memory ``windows`` collection holds open windows only; sealed ones live in SQLite.

A window (stream, emoji, start_s) is *sealed* once ``start_s < now_s - horizon_s``. ``horizon_s`` (default 120 s)
is larger than the accepted-at tolerance of the aggregators (60 s) plus replication slack, so in normal operation
no node writes a window after it was sealed: aggregators count a batch accepted longer ago than the horizon in
the current second instead, and a delta arrives well within it.

- ``seal_windows`` drops sealed windows from a KeyedGCounter. It runs every ``SEAL_EVERY_S`` (a scan of the open
  windows, which are bounded by live activity times the horizon), so memory holds at most horizon + 10 s of windows.
- ``SealedBefore`` is the monotone seal line: it never moves back, even if the wall clock does, so a window that
  left memory is never written again from memory (its slot would restart at zero; see the aggregator).
- ``WindowWriter`` (broadcasters) writes every window and total that grew, each second, to a Store by max, and
  drops sealed windows only after they are on disk. A delta that arrives after its window was sealed (a partition
  longer than the horizon) re-creates the window in memory for at most one step, is written like any other, and
  marks its history bucket changed (``Store.commit(sealed_before_s=...)``) so peers hear of it
  (``region_node.windows.sync``). A failed write keeps everything in memory and is retried next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from reactmesh.merge.clock import Clock
from reactmesh.merge.keyed import Key, KeyedGCounter
from reactmesh.region_node.state import TOTALS, WINDOWS, RegionState

log = logging.getLogger(__name__)

SEAL_EVERY_S = 10.0
"""How often sealed windows leave memory."""
RETENTION_EVERY_S = 60.0
"""How often stored windows older than the retention are deleted."""

Slot = tuple[str, Key, str, int]
SealListener = Callable[[int], object]
"""Called as listener(sealed_before_s) after windows starting before it left memory."""


class WindowSink(Protocol):
    """Where a WindowWriter writes (region_node.aggregator.store.Store)."""

    async def commit(
        self, watermarks: Any, slots: Iterable[Slot], now_ms: int, *, sealed_before_s: int | None = None
    ) -> None: ...

    async def prune_windows(self, before_s: int) -> int: ...


def seal_windows(windows: KeyedGCounter, before_s: int) -> int:
    """Drop every window starting before ``before_s``; return how many."""
    return windows.prune(lambda key: isinstance(key[-1], int) and key[-1] < before_s)


class SealedBefore:
    """The seal line of one node: windows starting before ``value`` are sealed. Only moves forward."""

    def __init__(self, clock: Clock, horizon_s: int) -> None:
        self._clock = clock
        self.horizon_s = horizon_s
        self.value = clock.wall_ms() // 1000 - horizon_s

    def advance(self) -> int:
        """Move the line to now - horizon (never back); return it."""
        line = self._clock.wall_ms() // 1000 - self.horizon_s
        if line > self.value:
            self.value = line
        return self.value


class WindowWriter:
    """Writes a broadcaster's merged windows and totals through to a Store and seals its windows in memory."""

    def __init__(
        self,
        state: RegionState,
        store: WindowSink,
        clock: Clock,
        *,
        horizon_s: int,
        retention_s: int,
        flush_every_s: float = 1.0,
    ) -> None:
        self._state = state
        self._store = store
        self._clock = clock
        self.line = SealedBefore(clock, horizon_s)
        self.retention_s = retention_s
        self.flush_every_s = flush_every_s
        self._dirty: dict[str, dict[Key, None]] = {WINDOWS: {}, TOTALS: {}}
        self._listeners: list[SealListener] = []
        self._next_seal = 0.0
        self._next_retention = 0.0
        self.stats = {"windows_written": 0, "windows_sealed": 0, "late_windows": 0, "write_failures": 0}
        state.add_listener(self._on_merge)

    @property
    def sealed_before_s(self) -> int:
        return self.line.value

    def add_seal_listener(self, listener: SealListener) -> None:
        self._listeners.append(listener)

    def _on_merge(self, collection: str, _: Any, grown: list[Key]) -> None:
        dirty = self._dirty.get(collection)
        if dirty is not None:
            for key in grown:
                dirty[key] = None

    @property
    def dirty(self) -> int:
        """Windows and totals that grew since the last write."""
        return sum(len(d) for d in self._dirty.values())

    async def step(self) -> None:
        """Write what grew; then, when due, seal and apply retention. Raises what the store raised."""
        await self.flush()
        now = self._clock.monotonic()
        if now >= self._next_seal:
            self._next_seal = now + SEAL_EVERY_S
            self.seal()
        if now >= self._next_retention:
            self._next_retention = now + RETENTION_EVERY_S
            await self._store.prune_windows(self._clock.wall_ms() // 1000 - self.retention_s)

    async def flush(self) -> int:
        """Write every window and total that grew since the last flush; return how many slots."""
        dirty, self._dirty = self._dirty, {WINDOWS: {}, TOTALS: {}}
        windows, totals = self._state.windows, self._state.totals
        sealed = self.line.value
        slots: list[Slot] = []
        late = 0
        for key in dirty[WINDOWS]:
            if isinstance(key[-1], int) and key[-1] < sealed:
                late += 1
            for replica, count in windows.slots(key).items():
                slots.append((WINDOWS, key, replica, count))
        for key in dirty[TOTALS]:
            for replica, count in totals.slots(key).items():
                slots.append((TOTALS, key, replica, count))
        if not slots:
            return 0
        try:
            await self._store.commit({}, slots, self._clock.wall_ms(), sealed_before_s=sealed)
        except BaseException:
            self.stats["write_failures"] += 1
            for name, keys in dirty.items():  # written again next time, with whatever grew meanwhile
                self._dirty[name].update(keys)
            raise
        self.stats["windows_written"] += len(dirty[WINDOWS])
        self.stats["late_windows"] += late
        return len(slots)

    def seal(self) -> int:
        """Drop sealed windows from memory, except those not yet written; return how many left."""
        before = self.line.advance()
        pending = self._dirty[WINDOWS]
        windows = self._state.windows
        dropped = windows.prune(lambda key: isinstance(key[-1], int) and key[-1] < before and key not in pending)
        self.stats["windows_sealed"] += dropped
        for listener in self._listeners:
            listener(before)
        return dropped

    async def run(self) -> None:
        """Step every ``flush_every_s`` until cancelled; a failed step is logged and retried."""
        while True:
            await self._clock.sleep(self.flush_every_s)
            try:
                await asyncio.shield(self.step())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("history: writing windows failed (kept in memory, retried)")

    async def close(self) -> None:
        """A last write of what grew (best effort)."""
        with contextlib.suppress(Exception):
            await self.flush()
