"""Per-viewer token buckets with bounded memory.

Each viewer has a bucket of at most ``burst`` tokens refilling at ``rate_per_s`` on a monotonic clock;
one tap costs one token. ``take(viewer, n)`` grants ``min(n, whole tokens available)``: a batch is
never refused outright, the excess taps are dropped and the ack says how many were counted.

At most ``max_viewers`` buckets are kept, least recently used evicted first. An evicted viewer comes
back with a full bucket, which is exactly what it would have had if it stayed idle for
``burst / rate_per_s`` seconds; so eviction is lossless for every viewer idle that long, and the bound
only softens the limit for viewers churned out by a larger population of more recent ones.
"""

from __future__ import annotations

from collections import OrderedDict

from reactmesh.merge.clock import Clock

# Refill is computed from float time differences; a token short by rounding error is still a token.
_EPSILON = 1e-9


class RateLimiter:
    """Token buckets keyed by viewer id; O(1) per ``take``."""

    __slots__ = ("_buckets", "_burst", "_clock", "_max_viewers", "_rate", "evictions")

    def __init__(self, clock: Clock, rate_per_s: float, burst: int, max_viewers: int) -> None:
        if rate_per_s <= 0 or burst < 1 or max_viewers < 1:
            raise ValueError("rate_per_s > 0, burst >= 1 and max_viewers >= 1 are required")
        self._clock = clock
        self._rate = float(rate_per_s)
        self._burst = float(burst)
        self._max_viewers = max_viewers
        # viewer -> [tokens, monotonic time of last refill]
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()
        self.evictions = 0

    def take(self, viewer: str, n: int) -> int:
        """Spend up to ``n`` tokens of ``viewer``'s bucket; returns how many were granted (0..n)."""
        now = self._clock.monotonic()
        bucket = self._buckets.get(viewer)
        if bucket is None:
            tokens = self._burst
            bucket = [tokens, now]
            self._buckets[viewer] = bucket
            if len(self._buckets) > self._max_viewers:
                self._buckets.popitem(last=False)
                self.evictions += 1
        else:
            self._buckets.move_to_end(viewer)
            tokens = bucket[0] + (now - bucket[1]) * self._rate
            if tokens > self._burst:
                tokens = self._burst
        granted = n if n <= tokens else int(tokens + _EPSILON)
        if granted > n:
            granted = n
        bucket[0] = tokens - granted
        bucket[1] = now
        return granted

    def tokens(self, viewer: str) -> float:
        """Tokens ``viewer`` could spend now (for tests and admin views); does not touch LRU order."""
        bucket = self._buckets.get(viewer)
        if bucket is None:
            return self._burst
        return min(self._burst, bucket[0] + (self._clock.monotonic() - bucket[1]) * self._rate)

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, viewer: object) -> bool:
        return viewer in self._buckets
