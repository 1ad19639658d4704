"""Small helpers shared by the test suites."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def eventually(predicate: Callable[[], bool], within: float = 10.0) -> None:
    """Wait until predicate() holds, failing after ``within`` seconds.

    For tests on real sockets and processes: the outcome is asserted, never the timing.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not reached within {within} s")
        await asyncio.sleep(0.01)
