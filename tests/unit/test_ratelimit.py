"""Per-viewer token buckets on a FakeClock: burst, refill, partial grants, isolation, bounded memory."""

from __future__ import annotations

from reactmesh.edge.ratelimit import RateLimiter
from reactmesh.merge.clock import FakeClock


def test_new_viewer_gets_the_full_burst_then_nothing() -> None:
    limiter = RateLimiter(FakeClock(), rate_per_s=10, burst=50, max_viewers=100)
    assert limiter.take("v", 30) == 30
    assert limiter.take("v", 30) == 20
    assert limiter.take("v", 1) == 0


async def test_bucket_refills_at_the_rate_and_caps_at_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock, rate_per_s=10, burst=50, max_viewers=100)
    assert limiter.take("v", 50) == 50
    await clock.advance(0.25)
    assert limiter.take("v", 10) == 2  # 2.5 tokens: whole taps only, the half carries over
    await clock.advance(0.05)
    assert limiter.take("v", 10) == 1
    await clock.advance(3600)
    assert limiter.tokens("v") == 50
    assert limiter.take("v", 1000) == 50


def test_partial_grant_never_exceeds_the_request() -> None:
    limiter = RateLimiter(FakeClock(), rate_per_s=1, burst=5, max_viewers=10)
    assert limiter.take("v", 3) == 3
    assert limiter.take("v", 3) == 2
    assert limiter.take("v", 0) == 0


def test_viewers_have_separate_buckets() -> None:
    limiter = RateLimiter(FakeClock(), rate_per_s=1, burst=5, max_viewers=10)
    assert limiter.take("a", 5) == 5
    assert limiter.take("b", 5) == 5
    assert limiter.take("a", 1) == 0


def test_least_recently_used_viewer_is_evicted_and_memory_stays_bounded() -> None:
    limiter = RateLimiter(FakeClock(), rate_per_s=1, burst=5, max_viewers=3)
    for viewer in ("a", "b", "c"):
        limiter.take(viewer, 5)
    limiter.take("a", 1)  # a is now the most recent
    limiter.take("d", 1)
    assert len(limiter) == 3
    assert "b" not in limiter
    assert {"a", "c", "d"} <= {v for v in ("a", "b", "c", "d") if v in limiter}
    assert limiter.evictions == 1
    for i in range(1000):
        limiter.take(f"x{i}", 1)
    assert len(limiter) == 3


async def test_eviction_of_an_idle_viewer_loses_nothing() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock, rate_per_s=10, burst=50, max_viewers=1)
    limiter.take("a", 50)
    await clock.advance(5.0)  # burst / rate: a's bucket is full again
    limiter.take("b", 1)
    assert "a" not in limiter
    assert limiter.take("a", 60) == 50
