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
no queue in front of it. The allowed lag is ``max(target_ms, 2 * base)``. Two signals:

- the commit lag, against the allowed lag;

- the edge's own queue: while batches arrive, a timer on the edge's event loop measures how late it runs (the
  *loop lag*: work waiting for the edge's CPU, which batches not yet read wait behind too, and which no
  in-flight count sees). Its mean over the interval is compared with ``queue_target_ms``. Loop lag is
  always queueing, so it has no base.
- the ack backlog: an ack the aggregator has sent waits in its stream's queue until the edge writes it to the
  client (writes cost the edge CPU, per ack). Such acks count as in flight, and their mean wait over the
  interval is compared with ``queue_target_ms`` too.
- the inbound wait: how much longer than its stream's quickest batch a batch took from its client's close
  (``client_time_ms``) to the edge's read. Batches that wait for an edge that cannot read them fast enough
  queue in the transport's buffers, where neither the loop nor an in-flight count sees them; relative to the
  same stream's minimum, the client's clock skew cancels. Its mean over the interval is compared with
  ``inbound_target_ms``.

The pressure is the largest of lag / allowed lag and each other signal over its target, and

- pressure above 1: ``limit *= max(0.5, 1 / pressure)`` (never below ``min_limit``). Lag that the
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

import asyncio
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
    queue_target_ms: int = 40
    inbound_target_ms: int = 100
    interval_ms: int = 100
    initial_limit: int = 1_000
    min_limit: int = 64
    retry_after_max_ms: int = 5_000

    def __post_init__(self) -> None:
        boolean("enabled", self.enabled)
        int_in("target_ms", self.target_ms, 1, 600_000)
        int_in("queue_target_ms", self.queue_target_ms, 1, 600_000)
        int_in("inbound_target_ms", self.inbound_target_ms, 1, 600_000)
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
        self._loop_target = config.queue_target_ms / 1000
        self._loop_sum = 0.0
        self._loop_n = 0
        self.loop_lag_s = 0.0
        self._inbound_target = config.inbound_target_ms / 1000
        self._write_sum = 0.0
        self._write_n = 0
        self.write_wait_s = 0.0
        self._inbound_sum = 0.0
        self._inbound_n = 0
        self.inbound_s = 0.0
        self._offered_total = 0
        self._probe: _LoopLagProbe | None = None
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
        probe = self._probe
        if probe is not None and probe.idle:
            probe.wake()
        if inflight > self._peak:
            self._peak = inflight
        if inflight < self.limit:
            self._admitted += 1
            return None
        self.shed += 1
        return self.retry_after_ms()

    def observe_inbound(self, wait_s: float) -> None:
        """One batch read ``wait_s`` later than its stream's quickest (see the module docstring)."""
        self._inbound_sum += wait_s
        self._inbound_n += 1

    def observe_write_wait(self, wait_s: float) -> None:
        """One ack waited ``wait_s`` between the aggregator's answer and its write to the client."""
        self._write_sum += wait_s
        self._write_n += 1

    def observe_loop_lag(self, lag_s: float) -> None:
        """One measurement of how late the edge's event loop ran a timer."""
        self._loop_sum += lag_s
        self._loop_n += 1

    def start_probe(self, period_s: float = 0.02, idle_s: float = 1.0) -> None:
        """Measure the running loop's lag every ``period_s`` while batches arrive (it stops ``idle_s`` after the
        last one and starts again with the next: an idle edge runs no timer)."""
        if self._probe is None and self._config.enabled:
            self._probe = _LoopLagProbe(self, period_s, idle_s)

    def stop_probe(self) -> None:
        if self._probe is not None:
            self._probe.stop()
            self._probe = None

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
        self.loop_lag_s = self._loop_sum / self._loop_n if self._loop_n else 0.0
        self._offered_total += self._offered
        limit = self.limit
        self.inbound_s = self._inbound_sum / self._inbound_n if self._inbound_n else 0.0
        self.write_wait_s = self._write_sum / self._write_n if self._write_n else 0.0
        pressure = max(
            lag / max(self._target, 2 * self.base_s),
            self.loop_lag_s / self._loop_target,
            self.write_wait_s / self._loop_target,
            self.inbound_s / self._inbound_target,
        )
        if pressure > 1:
            limit = max(self._min, limit * max(0.5, 1 / pressure))
            self.decreases += 1
        elif self._peak >= limit / 2:
            limit = min(self._max, limit + max(math.sqrt(limit), limit / 10))
        self.limit = limit
        self._started = now
        self._lag_sum = 0.0
        self._lag_n = 0
        self._loop_sum = 0.0
        self._loop_n = 0
        self._inbound_sum = 0.0
        self._inbound_n = 0
        self._write_sum = 0.0
        self._write_n = 0
        self._admitted = 0
        self._offered = 0
        self._peak = 0

    def statistics(self) -> dict[str, int]:
        """Counters and the controller's state (lag in whole ms, overload in hundredths)."""
        return {
            "admission_limit": int(self.limit),
            "admission_lag_ms": round(self.lag_s * 1000),
            "admission_base_lag_ms": round(self.base_s * 1000),
            "admission_loop_lag_ms": round(self.loop_lag_s * 1000),
            "admission_inbound_ms": round(self.inbound_s * 1000),
            "admission_write_wait_ms": round(self.write_wait_s * 1000),
            "admission_overload_pct": round(self.overload * 100),
            "batches_shed": self.shed,
            "admission_decreases": self.decreases,
        }


class _LoopLagProbe:
    """A timer on the running loop, every ``period_s`` while the Admission sees batches; reports its lateness."""

    def __init__(self, admission: Admission, period_s: float, idle_s: float) -> None:
        self._admission = admission
        self._loop = asyncio.get_running_loop()
        self._period = period_s
        self._idle_ticks = max(1, round(idle_s / period_s))
        self._quiet = 0
        self._seen = -1
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self.idle = True

    def wake(self) -> None:
        self.idle = False
        self._quiet = 0
        self._schedule()

    def _schedule(self) -> None:
        self._due = self._loop.time() + self._period
        self._handle = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        admission = self._admission
        admission.observe_loop_lag(max(0.0, self._loop.time() - self._due))
        seen = admission._offered_total + admission._offered
        self._quiet = self._quiet + 1 if seen == self._seen else 0
        self._seen = seen
        if self._quiet >= self._idle_ticks:
            self._handle = None
            self.idle = True
            return
        self._schedule()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.idle = True
