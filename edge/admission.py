"""Admission: how much forwarded-but-unacknowledged work an edge lets in, adapted to the commit lag it sees.

Past capacity a queue grows somewhere, and every batch in it waits. The edge sheds instead: a batch that
would exceed the current *limit* on in-flight batches is answered RETRY with a ``retry_after_ms`` hint, and
nothing of it is counted (the client keeps it and resends it later; its taps coalesce meanwhile). Admitted
batches then see a short queue, so their ack latency stays near what a commit costs.

The limit is a gradient concurrency limit (after TCP Vegas and Netflix's concurrency-limits "gradient"
limiters), steered by the commit lag: the time from forwarding an entry to the aggregator's ack after its
commit. Once per ``interval_ms`` (evaluated lazily on the next admission: no timer, so an idle edge costs
nothing) the controller takes the interval's lag, the mean lag of the entries acked in it or the age of the
oldest entry still waiting if that is larger (a stalled aggregator shows before any ack does). It also keeps
the *base* lag, the smallest interval lag of the last ``BASE_INTERVALS`` intervals: what a commit costs with
no queue in front of it. The allowed lag is ``max(target_ms, 2 * base)``, and

- lag above the allowed lag: ``limit *= max(0.5, allowed / lag)`` (never below ``min_limit``). Lag that the
  queue causes comes down with the limit; lag that slow service causes (a CPU-starved aggregator, a slow
  disk) raises the base instead, and the limit is not cut for it: shedding cannot make a commit cheaper, and
  cutting further would only lose throughput;
- otherwise, if the limit was binding (in-flight reached half of it): ``limit += max(sqrt(limit), limit /
  10)``, at most the edge's hard cap ``max_inflight_entries``. A limit that is not binding does not grow, so a
  spike meets the limit the last busy period left, not one inflated by a quiet hour.

The hint tells a shed client when it is worth coming back: at least the floor (``EdgeConfig.retry_after_ms``)
times the offered-to-admitted ratio of the last interval (at 2x overload the shed half is spread over two
floors, at 10x over ten), at least the current lag, at most ``retry_after_max_ms``; the SDK adds jitter
(``edge.backoff``). Guarantees: admission is decided before anything is forwarded, so a shed batch is never
partly counted; the limit always lies in [min_limit, max_inflight_entries].
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from reactmesh.merge.checks import boolean, int_in
from reactmesh.merge.clock import Clock
from reactmesh.merge.errors import ConfigError

__all__ = ["BASE_INTERVALS", "Admission", "ShedConfig"]

BASE_INTERVALS = 30
"""The base lag is the smallest interval lag over this many intervals (3 s at the default interval)."""


@dataclass(frozen=True)
class ShedConfig:
    """The edge's load shedding (the ``[edge.shedding]`` table); see the module docstring.

    ``enabled`` false admits everything up to the hard cap (``max_inflight_entries``), as before shedding.
    """

    enabled: bool = True
    target_ms: int = 150
    interval_ms: int = 100
    initial_limit: int = 1_000
    min_limit: int = 64
    retry_after_max_ms: int = 5_000

    def __post_init__(self) -> None:
        boolean("enabled", self.enabled)
        int_in("target_ms", self.target_ms, 1, 600_000)
        int_in("interval_ms", self.interval_ms, 1, 60_000)
        int_in("min_limit", self.min_limit, 1, 2**31)
        int_in("initial_limit", self.initial_limit, self.min_limit, 2**31)
        int_in("retry_after_max_ms", self.retry_after_max_ms, 1, 2**32 - 1)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ShedConfig:
        """Build from a parsed table; unknown keys are errors naming ``shedding.<key>``."""
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise ConfigError(f"shedding.{key}", f"one of {sorted(known)}", data[key])
        return cls(**data)


OldestAge = Callable[[float], float]
"""Seconds the oldest forwarded, unacknowledged entry has waited at monotonic time ``now`` (0 if none)."""


class Admission:
    """The in-flight limit of one edge. ``admit(inflight)`` per batch, ``completed(latency_s)`` per ack."""

    def __init__(
        self,
        config: ShedConfig,
        clock: Clock,
        *,
        max_inflight: int,
        retry_floor_ms: int,
        oldest_age: OldestAge,
    ) -> None:
        self._config = config
        self._clock = clock
        self._max = max_inflight
        self._min = min(config.min_limit, max_inflight)
        self._target = config.target_ms / 1000
        self._interval = config.interval_ms / 1000
        self._floor = retry_floor_ms
        self._cap = max(config.retry_after_max_ms, retry_floor_ms)
        self._oldest_age = oldest_age
        self.limit = float(min(config.initial_limit, max_inflight)) if config.enabled else float(max_inflight)
        self._started = clock.monotonic()
        self._lag_sum = 0.0
        self._lag_n = 0
        self._admitted = 0
        self._offered = 0
        self._peak = 0
        self.lag_s = 0.0
        self.base_s = 0.0
        self._recent: deque[float] = deque(maxlen=BASE_INTERVALS)  # lags of intervals with acks
        self.overload = 1.0  # offered / admitted over the last interval
        self.shed = 0
        self.decreases = 0

    def admit(self, inflight: int) -> int | None:
        """None to admit one more batch with ``inflight`` already forwarded, else the retry hint in ms."""
        if not self._config.enabled:
            return None if inflight < self._max else self.retry_after_ms()
        now = self._clock.monotonic()
        if now - self._started >= self._interval:
            self._update(now)
        self._offered += 1
        if inflight > self._peak:
            self._peak = inflight
        if inflight < self.limit:
            self._admitted += 1
            return None
        self.shed += 1
        return self.retry_after_ms()

    def completed(self, latency_s: float) -> None:
        """One forwarded entry was acked after ``latency_s`` seconds (its commit lag)."""
        self._lag_sum += latency_s
        self._lag_n += 1

    def retry_after_ms(self) -> int:
        """The hint for a batch refused now."""
        hint = max(self._floor * self.overload, self.lag_s * 1000)
        return int(min(self._cap, max(self._floor, hint)))

    def _update(self, now: float) -> None:
        lag = self._lag_sum / self._lag_n if self._lag_n else 0.0
        lag = max(lag, self._oldest_age(now))
        self.lag_s = lag
        self.base_s = min(self._recent) if self._recent else 0.0  # of the intervals before this one
        if self._lag_n:
            self._recent.append(lag)
        self.overload = self._offered / max(self._admitted, 1) if self._offered else 1.0
        limit = self.limit
        allowed = max(self._target, 2 * self.base_s)
        if lag > allowed:
            limit = max(self._min, limit * max(0.5, allowed / lag))
            self.decreases += 1
        elif self._peak >= limit / 2:
            limit = min(self._max, limit + max(math.sqrt(limit), limit / 10))
        self.limit = limit
        self._started = now
        self._lag_sum = 0.0
        self._lag_n = 0
        self._admitted = 0
        self._offered = 0
        self._peak = 0

    def statistics(self) -> dict[str, int]:
        """Counters and the controller's state (lag in whole ms, overload in hundredths)."""
        return {
            "admission_limit": int(self.limit),
            "admission_lag_ms": round(self.lag_s * 1000),
            "admission_base_lag_ms": round(self.base_s * 1000),
            "admission_overload_pct": round(self.overload * 100),
            "batches_shed": self.shed,
            "admission_decreases": self.decreases,
        }
