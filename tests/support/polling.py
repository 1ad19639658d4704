"""Small helpers shared by the test suites."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

T = TypeVar("T")


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


async def settled(check: Callable[[], Awaitable[T]], within: float = 20.0, every: float = 0.1) -> T:
    """Retry the async ``check`` until it returns without AssertionError or a gRPC error, and return its result;
    after ``within`` seconds re-raise its last failure (so the assertion that never held is what the test shows)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            return await check()
        except (AssertionError, grpc.aio.AioRpcError):
            if loop.time() > deadline:
                raise
        await asyncio.sleep(every)
