"""FakeClock moves only when told, wakes sleepers in deadline order at their deadline; SystemClock is real."""

from __future__ import annotations

import asyncio
import contextlib
import time

from reactmesh.merge.clock import FakeClock, SystemClock


async def test_fake_clock_stands_still_until_advanced() -> None:
    clock = FakeClock(start_wall_ms=5_000, start_monotonic=10.0)
    assert (clock.wall_ms(), clock.monotonic()) == (5_000, 10.0)
    await asyncio.sleep(0)
    assert (clock.wall_ms(), clock.monotonic()) == (5_000, 10.0)
    await clock.advance(1.5)
    assert (clock.wall_ms(), clock.monotonic()) == (6_500, 11.5)


async def test_sleepers_wake_in_deadline_order_seeing_their_own_deadline() -> None:
    clock = FakeClock(start_wall_ms=0, start_monotonic=0.0)
    woke: list[tuple[str, float, int]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic(), clock.wall_ms()))

    tasks = [asyncio.create_task(sleeper("late", 1.0)), asyncio.create_task(sleeper("early", 0.25))]
    await asyncio.sleep(0)
    assert clock.pending_sleepers() == 2
    await clock.advance(0.5)
    assert woke == [("early", 0.25, 250)]
    assert clock.pending_sleepers() == 1
    await clock.advance(0.5)
    assert woke == [("early", 0.25, 250), ("late", 1.0, 1000)]
    assert clock.pending_sleepers() == 0
    await asyncio.gather(*tasks)


async def test_a_woken_task_runs_before_advance_returns_and_can_sleep_again() -> None:
    clock = FakeClock(start_monotonic=0.0)
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            await clock.sleep(0.1)
            ticks.append(round(clock.monotonic(), 6))

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    await clock.advance(0.35)
    assert ticks == [0.1, 0.2, 0.3]
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_zero_and_negative_sleeps_wake_on_the_next_advance() -> None:
    clock = FakeClock()
    done = asyncio.Event()

    async def nap() -> None:
        await clock.sleep(-1)
        await clock.sleep(0)
        done.set()

    task = asyncio.create_task(nap())
    await asyncio.sleep(0)
    assert not done.is_set()
    await clock.advance(0)
    await clock.advance(0)
    assert done.is_set()
    await task


async def test_a_cancelled_sleeper_is_not_counted_and_does_not_break_advance() -> None:
    clock = FakeClock()
    task = asyncio.create_task(clock.sleep(1.0))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.sleep(0)
    assert clock.pending_sleepers() == 0
    await clock.advance(2.0)
    assert task.cancelled()


async def test_system_clock_reads_real_time() -> None:
    clock = SystemClock()
    assert abs(clock.wall_ms() - time.time() * 1000) < 1_000
    first = clock.monotonic()
    await clock.sleep(0)
    assert clock.monotonic() >= first
