"""Time sources: the system clock, and a manual FakeClock for deterministic tests.

Components never call ``time.time()`` or ``asyncio.sleep()`` for their timers directly; they
take a Clock. Tests pass a FakeClock and move time with ``advance()``, so tick and gossip timers
fire exactly when the test says (the idea of trio's MockClock).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable
from typing import Any, Protocol


class Clock(Protocol):
    """What components need of time."""

    def wall_ms(self) -> int:
        """Wall-clock time, Unix milliseconds (may jump; for timestamps and time buckets)."""
        ...

    def monotonic(self) -> float:
        """Monotonic seconds (never jumps; for intervals and rate limits)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds`` of this clock's time."""
        ...


async def sleep_unless(clock: Clock, seconds: float, wakeup: Awaitable[Any]) -> None:
    """Return when ``wakeup`` completes or after ``seconds`` of ``clock``, whichever comes first; the other is
    cancelled (``wakeup`` too, when the time ran out)."""
    waiter = asyncio.ensure_future(wakeup)
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait((waiter, sleeper), return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        sleeper.cancel()


class SystemClock:
    """The real clock."""

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeClock:
    """A clock that moves only when told to.

    ``sleep()`` parks the caller until ``advance()`` moves time past its deadline; ``advance()``
    wakes sleepers in deadline order and yields to the event loop so woken tasks run before it
    returns.
    """

    def __init__(self, start_wall_ms: int = 1_700_000_000_000, start_monotonic: float = 1000.0) -> None:
        self._wall_ms = start_wall_ms
        self._mono = start_monotonic
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._ids = itertools.count()

    def wall_ms(self) -> int:
        return self._wall_ms

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono + max(0.0, seconds), next(self._ids), fut))
        await fut

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking every sleeper whose deadline passes."""
        target = self._mono + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            self._wall_ms += round((deadline - self._mono) * 1000)
            self._mono = deadline
            if not fut.done():
                fut.set_result(None)
            for _ in range(5):  # let the woken task run up to its next await
                await asyncio.sleep(0)
        self._wall_ms += round((target - self._mono) * 1000)
        self._mono = target
        for _ in range(5):
            await asyncio.sleep(0)

    def pending_sleepers(self) -> int:
        """Number of tasks parked in ``sleep()``."""
        return sum(1 for _, _, f in self._sleepers if not f.done())
